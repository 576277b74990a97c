// libFuzzer target: a SentencePiece tokenizer.model (then text after the separator) through
// model::load_tokenizer, encode and decode, as every verb loads model.path/tokenizer.model. Ids
// must lie inside the vocabulary and decode must take any id the encoder gives.
#include <mmtune/core/errors.h>
#include <mmtune/model/tokenizer.h>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  const auto parts = fuzz::split(data, size, 2);
  const std::string path = fuzz::write_file("tokenizer.model", parts[0]);
  std::unique_ptr<model::Tokenizer> tok;
  try {
    tok = model::load_tokenizer(path);
  } catch (const Error&) {
    return 0;
  }
  const auto ids = tok->encode(parts[1], true, true);
  for (int64_t id : ids)
    if (id < 0 || id >= tok->vocab_size()) fuzz::finding("an id outside the vocabulary");
  (void)tok->decode(ids);
  model::StreamDecoder stream(*tok);
  for (int64_t id : ids) (void)stream.push(id);
  (void)stream.flush();
  for (int64_t id : {tok->bos_id(), tok->eos_id(), tok->pad_id()}) (void)tok->id_to_piece(id);
  return 0;
}
