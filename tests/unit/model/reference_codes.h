// The quantized parity tests' references (quant_reference.py, clip_reference.py --quantize): running
// one, and comparing the stored codes it wrote ("q.<module path>.qweight" / ".scales") with the
// model's own, bit for bit.
#pragma once

#include <gtest/gtest.h>

#include <mmtune/io/safetensors.h>
#include <mmtune/model/layers.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "test_utils.h"

namespace mmtune::model::testing_codes {

/// Runs scripts/reference/<script> with `args` and `--out <dir>/ref.safetensors`; the file it wrote,
/// or nullptr (and a test failure with its stderr) when it failed.
inline std::shared_ptr<const io::SafetensorsFile> run_reference(const testing::TempDir& dir, const std::string& script,
                                                                std::vector<std::string> args) {
  const std::string out = dir.path() + "/ref.safetensors";
  std::vector<std::string> argv{testing::kPython, std::string(testing::kSourceDir) + "/scripts/reference/" + script};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--out", out});
  const auto r = testing::run_process(argv, {}, std::chrono::seconds(120));
  if (r.exit_code != 0) {
    ADD_FAILURE() << script << " exited " << r.exit_code << ": " << r.err;
    return nullptr;
  }
  return io::SafetensorsFile::open(out);
}

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
