// libFuzzer target: a Hugging Face tokenizer.json (Llama-3's byte-level BPE), then text after the
// separator, through model::load_tokenizer, encode, decode and the streaming decoder. Ids must lie
// inside the vocabulary; any id the encoder gives must decode.
#include <string>

#include <mmtune/core/errors.h>
#include <mmtune/model/tokenizer.h>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  const auto parts = fuzz::split(data, size, 2);
  const std::string path = fuzz::write_file("tokenizer.json", parts[0]);
  std::unique_ptr<model::Tokenizer> tok;
  try {
    tok = model::load_tokenizer(path);
  } catch (const Error&) {
    return 0;
  }
  const auto ids = tok->encode(parts[1], true, true);
  for (int64_t id : ids)
    if (id < 0 || id >= tok->vocab_size())
      fuzz::finding("id " + std::to_string(id) + " outside the vocabulary of " + std::to_string(tok->vocab_size()));
  (void)tok->decode(ids);
  model::StreamDecoder stream(*tok);
  for (int64_t id : ids) (void)stream.push(id);
  (void)stream.flush();
  return 0;
}
