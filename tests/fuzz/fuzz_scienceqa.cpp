// libFuzzer target: ScienceQA's problems.json, pid_splits.json and captions.json (three parts,
// separated) through data::read_scienceqa for the train split with captions, as training reads
// data.format: scienceqa: every field is read, checked and rendered into prompts (QCM-LEA).
#include <mmtune/core/errors.h>
#include <mmtune/data/scienceqa.h>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  const auto parts = fuzz::split(data, size, 3);
  fuzz::write_file("sqa/problems.json", parts[0]);
  fuzz::write_file("sqa/pid_splits.json", parts[1]);
  fuzz::write_file("sqa/captions.json", parts[2]);
  data::ScienceQAOptions o;
  o.root = fuzz::scratch_dir() + "/sqa";
  o.captions_file = "captions.json";
  o.use_caption = true;
  o.prompt_format = data::parse_prompt_format("CQM-LEA");
  o.check_images = (size % 2) == 0;  // both ways: images required (none exist) or not checked
  o.skip_bad_samples = (size % 3) == 0;
  try {
    const auto d = data::read_scienceqa(o, "train");
    for (const auto& e : d.examples)
      if (e.prompt.empty() || e.answer_index >= static_cast<int64_t>(e.choices.size()))
        fuzz::finding("a ScienceQA example without a prompt or with an answer outside its choices");
  } catch (const Error&) {
  }
  return 0;
}
