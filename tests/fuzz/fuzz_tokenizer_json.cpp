// libFuzzer target: a Hugging Face tokenizer.json (Llama-3's byte-level BPE), then text after the
// separator (fuzz_tokenizer.h: load, encode, decode, stream; ids inside the vocabulary).
#include "fuzz_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return mmtune::fuzz::check_tokenizer("tokenizer.json", data, size);
}
