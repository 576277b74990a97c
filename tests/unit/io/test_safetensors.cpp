// safetensors reading and writing, against the Python safetensors package both ways, and every
// kind of broken file giving its named error (never a crash).
#include <gtest/gtest.h>

#include <mmtune/io/safetensors.h>

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "test_utils.h"

namespace mmtune::io {
namespace {

using mmtune::testing::TempDir;
using nlohmann::json;

std::string oracle() { return std::string(testing::kSourceDir) + "/scripts/reference/safetensors_oracle.py"; }

// Compares a tensor with {"dtype", "shape", "values"} from the oracle.
void expect_matches(const torch::Tensor& t, const json& e, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(t.sizes().vec(), e["shape"].get<std::vector<int64_t>>());
  const torch::Tensor values = t.to(torch::kFloat64).flatten().contiguous();
  const auto expected = e["values"].get<std::vector<double>>();
  ASSERT_EQ(values.numel(), static_cast<int64_t>(expected.size()));
  for (int64_t i = 0; i < values.numel(); ++i) EXPECT_EQ(values[i].item<double>(), expected[i]) << "index " << i;
}

TEST(Safetensors, ReadsWhatThePythonLibraryWrites) {
  TempDir d;
  const auto r = testing::run_process({testing::kPython, oracle(), "write", d.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json expected = json::parse(testing::read_text(d.path() + "/expected.json"));
  const auto f = SafetensorsFile::open(d.path() + "/dtypes.safetensors");
  EXPECT_EQ(f->metadata().at("note"), "ünïcode");
  EXPECT_EQ(f->names().size(), expected["dtypes"].size());
  for (const auto& [name, e] : expected["dtypes"].items()) expect_matches(f->tensor(name), e, name);
  EXPECT_EQ(f->tensor("bf16").scalar_type(), torch::kBFloat16);
  EXPECT_EQ(f->tensor("bool").scalar_type(), torch::kBool);
  const auto ck = SafetensorsCheckpoint::open(d.path() + "/sharded");
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"lm_head.weight", "model.a.weight", "model.b.weight"}));
  for (const auto& [name, e] : expected["sharded"].items()) expect_matches(ck.tensor(name), e, name);
}

TEST(Safetensors, ThePythonLibraryReadsWhatWeWrite) {
  TempDir d;
  const std::vector<std::pair<std::string, torch::Tensor>> tensors{
      {"w", torch::randn({4, 3})},
      {"t", torch::randn({3, 4}).t()},  // non-contiguous view
      {"h", torch::randn({5}).to(torch::kBFloat16)},
      {"i", torch::arange(7, torch::kLong)},
      {"b", torch::tensor({true, false})},
      {"e", torch::zeros({0, 2})}};
  save_safetensors(d.path() + "/ours.safetensors", tensors, {{"family", "lora"}});
  const auto r = testing::run_process({testing::kPython, oracle(), "read", d.path() + "/ours.safetensors"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json got = json::parse(r.out);
  EXPECT_EQ(got["metadata"]["family"], "lora");
  for (const auto& [name, t] : tensors) expect_matches(t, got["tensors"][name], name);
  // and back through our reader, bit for bit
  const auto f = SafetensorsFile::open(d.path() + "/ours.safetensors");
  for (const auto& [name, t] : tensors) EXPECT_TRUE(torch::equal(f->tensor(name), t.contiguous())) << name;
  // the data section starts 8-byte aligned
  const std::string bytes = testing::read_text(d.path() + "/ours.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
}

// A file with the given header text (length prefix computed) and `data_bytes` zero bytes after it.
std::string file_with(const TempDir& d, const std::string& header, size_t data_bytes, const std::string& name = "f.safetensors") {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return d.write(name, s + header + std::string(data_bytes, '\0'));
}

SafetensorsProblem problem_of(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "the error names the file";
    EXPECT_NE(std::string(e.what()).find(problem_name(e.problem())), std::string::npos);
    return e.problem();
  }
  ADD_FAILURE() << "expected a SafetensorsError for " << path;
  return SafetensorsProblem::kIo;
}

TEST(Safetensors, EveryBrokenFileGivesItsNamedError) {
  using P = SafetensorsProblem;
  TempDir d;
  EXPECT_EQ(problem_of(d.path() + "/missing.safetensors"), P::kNotFound);
  EXPECT_EQ(problem_of(d.write("short", "abc")), P::kTruncated);
  std::string huge(8, '\0');
  huge[4] = 1;  // header length 2^32
  EXPECT_EQ(problem_of(d.write("huge", huge + "{}")), P::kHeaderTooLarge);
  std::string past(8, '\0');
  past[0] = 100;  // 100-byte header, 2 bytes present
  EXPECT_EQ(problem_of(d.write("past", past + "{}")), P::kTruncated);
  EXPECT_EQ(problem_of(file_with(d, "{not json", 0, "a")), P::kBadHeaderJson);
  EXPECT_EQ(problem_of(file_with(d, "[1, 2]", 0, "b")), P::kBadHeaderJson);
  EXPECT_EQ(problem_of(file_with(d, R"({"x": {"dtype": "F32", "shape": [1]}})", 4, "c")), P::kBadHeaderJson);
  EXPECT_EQ(problem_of(file_with(d, R"({"x": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})", 4, "d")), P::kBadHeaderJson);
  EXPECT_EQ(problem_of(file_with(d, R"({"__metadata__": {"a": 1}})", 0, "e")), P::kBadHeaderJson);
  EXPECT_EQ(problem_of(file_with(d, R"({"x": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}})", 4, "f")), P::kUnknownDtype);
  EXPECT_EQ(problem_of(file_with(d, R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4, "g")), P::kBadShape);
  EXPECT_EQ(problem_of(file_with(d, R"({"x": {"dtype": "U8", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}})", 4, "h")), P::kBadShape);
  EXPECT_EQ(problem_of(file_with(d, R"({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8, "i")), P::kOffsetsOutOfRange);
  EXPECT_EQ(problem_of(file_with(d, R"({"x": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", 8, "j")), P::kOffsetsOutOfRange);
  EXPECT_EQ(problem_of(file_with(d, R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12, "k")), P::kOverlap);
  EXPECT_EQ(problem_of(file_with(d, R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8, "l")), P::kSizeMismatch);
  // a valid one for contrast
  EXPECT_NO_THROW(SafetensorsFile::open(file_with(d, R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 8, "ok")));
}

TEST(Safetensors, CheckpointDirectoriesExplainWhatIsWrong) {
  using P = SafetensorsProblem;
  TempDir d;
  std::filesystem::create_directories(d.path() + "/pickles");
  d.write("pickles/pytorch_model.bin", "x");
  try {
    SafetensorsCheckpoint::open(d.path() + "/pickles");
    FAIL();
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.problem(), P::kNotFound);
    EXPECT_NE(e.hint().find("convert_meta_llama.py"), std::string::npos);
  }
  std::filesystem::create_directories(d.path() + "/idx");
  d.write("idx/model.safetensors.index.json", R"({"weight_map": {"a": "model-00001.safetensors"}})");
  try {
    SafetensorsCheckpoint::open(d.path() + "/idx");
    FAIL();
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.problem(), P::kBadIndex);
  }
  save_safetensors(d.path() + "/idx/model-00001.safetensors", {{"b", torch::zeros({1})}});
  try {
    SafetensorsCheckpoint::open(d.path() + "/idx");  // the index names a tensor the shard lacks
    FAIL();
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.problem(), P::kBadIndex);
  }
  const auto f = SafetensorsFile::open(d.path() + "/idx/model-00001.safetensors");
  try {
    f->tensor("nope");
    FAIL();
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.problem(), P::kMissingTensor);
  }
}

TEST(Safetensors, WriterIsAtomicAndRejectsDuplicates) {
  TempDir d;
  std::filesystem::create_directories(d.path() + "/target.safetensors");  // a directory where the file should go
  EXPECT_THROW(save_safetensors(d.path() + "/target.safetensors", {{"a", torch::zeros({2})}}), SafetensorsError);
  EXPECT_THROW(save_safetensors(d.path() + "/dup.safetensors", {{"a", torch::zeros({2})}, {"a", torch::ones({2})}}),
               SafetensorsError);
  std::set<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(d.path())) left.insert(e.path().filename().string());
  EXPECT_EQ(left, (std::set<std::string>{"target.safetensors"})) << "no temporary or partial file left behind";
}

TEST(Safetensors, TensorsKeepTheMappingAlive) {
  TempDir d;
  save_safetensors(d.path() + "/a.safetensors", {{"x", torch::arange(6, torch::kFloat32)}});
  torch::Tensor t;
  {
    auto f = SafetensorsFile::open(d.path() + "/a.safetensors");
    t = f->tensor("x");
  }  // the file object is gone; the tensor still views valid memory
  EXPECT_TRUE(torch::equal(t, torch::arange(6, torch::kFloat32)));
}

}  // namespace
}  // namespace mmtune::io
