#include "config_against_weights.h"

#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

#include <c10/util/ArrayRef.h>

namespace mmtune::model {

void ConfigAgainstWeights::expect(const std::string& name, const std::vector<int64_t>& want, const char* keys) {
  if (!ckpt_.contains(name)) return;
  const auto got = ckpt_.tensor(name).sizes().vec();
  if (got != want)
    problems_.push_back(cat(name, " is ", c10::IntArrayRef(got), " in the weights, ", c10::IntArrayRef(want),
                            " by config.json's ", keys));
}

void ConfigAgainstWeights::throw_if_any() const {
  if (problems_.empty()) return;
  throw CheckpointError(ckpt_.path(), "config.json does not match the weights: " + join(problems_, "; "),
                        "config.json and the safetensors files must describe the same model");
}

}  // namespace mmtune::model
