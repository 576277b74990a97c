// The stored codes of a quantized model against a reference's (quant_reference.py,
// clip_reference.py --quantize): each "q.<module path>.qweight" / ".scales" tensor the reference
// wrote must equal the module's own, bit for bit.
#pragma once

#include <gtest/gtest.h>

#include <mmtune/io/safetensors.h>
#include <mmtune/model/layers.h>

#include <string>

namespace mmtune::model::testing_codes {

/// Compares every q.* tensor of `ref` with the quantized Projection it names under `root`;
/// returns how many were compared (a missing or unquantized projection is a test failure).
inline int64_t expect_reference_codes(torch::nn::Module& root, const io::SafetensorsFile& ref) {
  int64_t compared = 0;
  for (const auto& name : ref.names()) {
    if (name.rfind("q.", 0) != 0) continue;
    const std::string path = name.substr(2, name.rfind('.') - 2);
    const std::string which = name.substr(name.rfind('.') + 1);
    auto* proj = find_projection(root, path);
    if (!proj || !proj->quantized()) {
      ADD_FAILURE() << path << " is not a quantized projection";
      continue;
    }
    const auto& mine = proj->quantized_weight();
    EXPECT_TRUE(torch::equal(which == "qweight" ? mine.qweight : mine.scales, ref.tensor(name))) << name << " differs";
    ++compared;
  }
  return compared;
}

}  // namespace mmtune::model::testing_codes
