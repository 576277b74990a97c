// scripts/convert_llama2c.py checked against an independent implementation: transformers, loading
// the converted stories260K, must reproduce llama2.c's published greedy text byte for byte
// (scripts/reference/check_stories260k.py). A wrong wq/wk permutation or a swapped w1/w3 garbles
// it within a few words. Broken inputs end in one "error: ... hint: ..." message, not a traceback.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_convert_llama2c {

const std::string kStories = std::string(kSharedDir) + "/models/stories260K";

ProcessResult convert(const std::string& bin, const std::string& out) {
  return run_process({kPython, std::string(kSourceDir) + "/scripts/convert_llama2c.py", bin,
                      "--tokenizer", kStories + "/tok512.model", "--out", out});
}

TEST(ConvertLlama2c, TransformersReproducesLlama2cGreedyStories260K) {
  const auto r =
      run_process({kPython, std::string(kSourceDir) + "/scripts/reference/check_stories260k.py",
                   "--shared", kSharedDir},
                  {}, std::chrono::seconds(110));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST(ConvertLlama2c, BrokenInputsFailWithAHint) {
  TempDir d;
  const std::string weights = read_text(kStories + "/stories260K.bin");
  auto expect_error = [&](const std::string& name, const std::string& bytes,
                          const std::string& needle) {
    const std::string bin = bytes.empty() ? d.path() + "/" + name : d.write(name, bytes);
    const std::string out = d.path() + "/out-" + name;
    const auto r = convert(bin, out);
    EXPECT_EQ(r.exit_code, 1) << name << ": " << r.out << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << name << ": " << r.err;
    EXPECT_NE(r.err.find("hint:"), std::string::npos) << name << ": " << r.err;
    EXPECT_EQ(r.err.find("Traceback"), std::string::npos) << name << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(out)) << name << ": a failed conversion left " << out;
  };
  expect_error("missing.bin", "", "not found");
  expect_error("truncated.bin", weights.substr(0, 28 + 4 * 1000), "truncated");
  expect_error("ragged.bin", weights.substr(0, weights.size() - 2), "whole number of float32s");
  expect_error("tiny.bin", weights.substr(0, 10), "too short");
  expect_error("v1.bin", "24ka" + weights.substr(4), "legacy");  // magic 0x616b3432, little-endian
  expect_error("trailing.bin", weights + std::string(64, '\0'), "trailing");
}

}  // namespace test_convert_llama2c
}  // namespace mmtune::testing
