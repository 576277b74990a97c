// config.json against the weights' own shapes, read from the safetensors headers before anything is
// allocated (load_llama, load_clip_vision): a vocab_size of 1e12, 1e9 layers or an intermediate_size
// of -60 must be an error naming the file, not an abort in LibTorch's allocator or the OOM killer.
// The full per-tensor check is load_weights', after the model is built.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mmtune/io/safetensors.h>

namespace mmtune::model {

class ConfigAgainstWeights {
 public:
  explicit ConfigAgainstWeights(const io::SafetensorsCheckpoint& ckpt) : ckpt_(ckpt) {}

  /// Tensor `name` must have shape `want` (config.json's `keys`, e.g. "vocab_size x hidden_size");
  /// a tensor the file lacks is skipped (load_weights lists the missing ones).
  void expect(const std::string& name, const std::vector<int64_t>& want, const char* keys);
  /// Any other disagreement, in words.
  void problem(std::string text) { problems_.push_back(std::move(text)); }
  /// CheckpointError naming the checkpoint with every disagreement, or nothing.
  void throw_if_any() const;

 private:
  const io::SafetensorsCheckpoint& ckpt_;
  std::vector<std::string> problems_;
};

}  // namespace mmtune::model
