// The body the two tokenizer targets share (fuzz_sentencepiece, fuzz_tokenizer_json): the file
// `name` from the input's first part through text::load_tokenizer (as every verb loads
// model.path's tokenizer), then the second part encoded, decoded and streamed. Ids must lie inside
// the vocabulary; decode must take any id the encoder gives and the special ids.
#pragma once

#include <string>

#include <mmtune/core/errors.h>
#include <mmtune/text/tokenizer.h>

#include "fuzz_common.h"

namespace mmtune::fuzz {

inline int check_tokenizer(const std::string& name, const uint8_t* data, size_t size) {
  const auto parts = split(data, size, 2);
  const std::string path = write_file(name, parts[0]);
  std::unique_ptr<text::Tokenizer> tok;
  try {
    tok = text::load_tokenizer(path);
  } catch (const Error&) {
    return 0;
  }
  try {
    // A file that loads can still fail on text (fuzz_sentencepiece: a model whose scores SentencePiece
    // cannot search encodes with an error status): an mmtune::Error is the expected outcome, as for load.
    const auto ids = tok->encode(parts[1], true, true);
    for (int64_t id : ids)
      if (id < 0 || id >= tok->vocab_size())
        finding("id " + std::to_string(id) + " outside the vocabulary of " + std::to_string(tok->vocab_size()));
    (void)tok->decode(ids);
    text::StreamDecoder stream(*tok);
    for (int64_t id : ids) (void)stream.push(id);
    (void)stream.flush();
    for (int64_t id : {tok->bos_id(), tok->eos_id(), tok->pad_id()}) (void)tok->id_to_piece(id);
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace mmtune::fuzz
