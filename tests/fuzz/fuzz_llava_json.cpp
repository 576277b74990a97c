// libFuzzer target: a LLaVA-format conversation file (data.format: llava_json) through
// data::read_llava_json, rendered with the Vicuna template, as training and eval read it.
#include <mmtune/core/errors.h>
#include <mmtune/data/llava_json.h>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  data::LlavaJsonOptions o;
  o.json_path = fuzz::write_file("llava/data.json", std::string_view(reinterpret_cast<const char*>(data), size));
  o.chat_template = data::Template::kVicunaV1;
  o.skip_bad_samples = (size % 2) == 0;  // images never exist here: both the error and the skip path
  try {
    (void)data::read_llava_json(o);
  } catch (const Error&) {
  }
  return 0;
}
