// safetensors reading and writing: a bit-exact round trip, parity with the Python `safetensors`
// package both ways (scripts/reference/safetensors_oracle.py), every kind of broken file giving its
// named SafetensorsError (never a crash), checkpoint directories, and the writer's atomicity.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include <mmtune/io/safetensors.h>

#include "test_utils.h"

namespace mmtune::io {
namespace test_safetensors {

namespace fs = std::filesystem;
using mmtune::testing::TempDir;
using nlohmann::json;
using P = SafetensorsProblem;

std::string oracle() { return std::string(testing::kSourceDir) + "/scripts/reference/safetensors_oracle.py"; }

// Same dtype, shape and bytes (NaN payloads and -0.0 included, which torch::equal would miss).
void expect_bit_identical(const torch::Tensor& got, const torch::Tensor& want, const std::string& name) {
  SCOPED_TRACE(name);
  ASSERT_EQ(got.scalar_type(), want.scalar_type());
  ASSERT_EQ(got.sizes(), want.sizes());
  const torch::Tensor a = got.contiguous(), b = want.contiguous();
  if (a.numel() > 0) {
    EXPECT_EQ(std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()), 0);
  }
}

// Compares a tensor with the oracle's {"dtype", "shape", "values" (float64, flattened)}.
void expect_matches(const torch::Tensor& t, const json& e, const std::string& name) {
  SCOPED_TRACE(name);
  const std::map<torch::Dtype, std::string> py{{torch::kFloat32, "float32"}, {torch::kFloat16, "float16"},
                                               {torch::kBFloat16, "bfloat16"}, {torch::kFloat64, "float64"},
                                               {torch::kInt64, "int64"},       {torch::kInt32, "int32"},
                                               {torch::kInt16, "int16"},       {torch::kInt8, "int8"},
                                               {torch::kUInt8, "uint8"},       {torch::kBool, "bool"}};
  EXPECT_EQ(py.at(t.scalar_type()), e.at("dtype").get<std::string>());
  EXPECT_EQ(t.sizes().vec(), e.at("shape").get<std::vector<int64_t>>());
  const torch::Tensor values = t.to(torch::kFloat64).flatten().contiguous();  // exact for every dtype used
  const auto expected = e.at("values").get<std::vector<double>>();
  ASSERT_EQ(values.numel(), static_cast<int64_t>(expected.size()));
  for (int64_t i = 0; i < values.numel(); ++i) EXPECT_EQ(values[i].item<double>(), expected[i]) << "index " << i;
}

// Every dtype, a scalar, an empty tensor, a non-contiguous and an offset view; with `specials` the
// floats include inf and NaN (which the oracle's JSON cannot carry), else only -0.0 and a subnormal.
std::vector<std::pair<std::string, torch::Tensor>> every_kind_of_tensor(bool specials_too = true) {
  torch::manual_seed(3);
  const double inf = std::numeric_limits<double>::infinity();
  const auto specials = specials_too ? torch::tensor({0.0, -0.0, 1.5, inf, -inf, std::nan(""), 1e-40})
                                     : torch::tensor({0.0, -0.0, 1.5, -3.25, 1e-40});
  return {{"f32", torch::cat({torch::randn({9}), specials.to(torch::kFloat32)})},
          {"f16", specials.to(torch::kFloat16)},
          {"bf16", torch::randn({2, 3}).to(torch::kBFloat16)},
          {"f64", specials},
          {"i64", torch::tensor({std::numeric_limits<int64_t>::min(), int64_t{0}, int64_t{1} << 40})},
          {"i32", torch::tensor({-7, 0, 2147483647}, torch::kInt32)},
          {"i16", torch::tensor({-300, 300}, torch::kInt16)},
          {"i8", torch::tensor({-128, 127}, torch::kInt8)},
          {"u8", torch::tensor({0, 255}, torch::kUInt8)},
          {"bool", torch::tensor({true, false, true})},
          {"scalar", torch::tensor(2.5)},
          {"empty", torch::zeros({0, 3})},
          {"transposed", torch::arange(12, torch::kFloat32).reshape({3, 4}).t()},  // [4, 3], non-contiguous
          {"narrowed", torch::arange(10, torch::kInt64).narrow(0, 3, 4)}};         // [4], storage offset 3
}

uint64_t header_length(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  return n;
}

TEST(Safetensors, RoundTripIsBitIdenticalForEveryDtype) {
  TempDir d;
  const auto tensors = every_kind_of_tensor();
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"note", "ünïcode"}};
  save_safetensors(d.path() + "/all.safetensors", tensors, metadata);
  const auto f = SafetensorsFile::open(d.path() + "/all.safetensors");
  EXPECT_EQ(f->metadata(), metadata);
  EXPECT_EQ(f->names().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    expect_bit_identical(f->tensor(name), t, name);
    EXPECT_EQ(f->info(name).dtype, t.scalar_type()) << name;
    EXPECT_EQ(f->info(name).shape, t.sizes().vec()) << name;
    EXPECT_TRUE(f->tensor(name).device().is_cpu());
  }
}

TEST(Safetensors, WriterPadsTheHeaderAndSortsEntriesLikePython) {
  TempDir d;
  save_safetensors(d.path() + "/a.safetensors", {{"b", torch::ones({3})}, {"a", torch::ones({1}, torch::kInt8)}},
                   {{"k", "v"}});
  const std::string bytes = testing::read_text(d.path() + "/a.safetensors");
  const uint64_t n = header_length(bytes);
  EXPECT_EQ((8 + n) % 8, 0u) << "the data section starts 8-byte aligned";
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}')) << "padded with spaces only";
  EXPECT_LT(header.find("\"a\""), header.find("\"b\""));
  const json h = json::parse(header);
  EXPECT_EQ(h.at("a").at("data_offsets"), json({0, 1}));
  EXPECT_EQ(h.at("b").at("data_offsets"), json({1, 13}));
  EXPECT_EQ(h.at("__metadata__"), json({{"k", "v"}}));
  EXPECT_EQ(bytes.size(), 8 + n + 13);
}

TEST(Safetensors, TensorsAreZeroCopyViewsThatKeepTheMappingAlive) {
  TempDir d;
  save_safetensors(d.path() + "/a.safetensors", {{"x", torch::arange(6, torch::kFloat32)}, {"e", torch::zeros({0})}});
  torch::Tensor t, e;
  {
    const auto f = SafetensorsFile::open(d.path() + "/a.safetensors");
    t = f->tensor("x");
    EXPECT_EQ(t.data_ptr(), f->tensor("x").data_ptr()) << "both view the same mapped bytes";
    e = f->tensor("e");
  }  // the file object is gone; the tensor still views valid memory
  EXPECT_TRUE(torch::equal(t, torch::arange(6, torch::kFloat32)));
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(e.sizes().vec(), std::vector<int64_t>{0});
}

// One tensor entry's JSON with the given fields.
std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"dtype": )" + dtype + R"(, "shape": )" + shape + R"(, "data_offsets": )" + offsets + "}";
}

// A file with the given header text (length prefix computed) followed by `data` bytes.
std::string file_with(const TempDir& d, const std::string& name, const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return d.write(name, s + header + data);
}
std::string file_with(const TempDir& d, const std::string& name, const std::string& header, size_t zero_bytes) {
  return file_with(d, name, header, std::string(zero_bytes, '\0'));
}

TEST(Safetensors, OddOffsetsGiveAnAlignedCopy) {
  TempDir d;
  const float v[2] = {1.5f, -2.0f};
  std::string data(1, '\0');
  data.append(reinterpret_cast<const char*>(v), sizeof v);
  // "x" starts at data byte 1: legal, but a float view there would be misaligned.
  std::string header =
      R"({"pad": )" + entry("\"U8\"", "[1]", "[0, 1]") + R"(, "x": )" + entry("\"F32\"", "[2]", "[1, 9]") + "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // data section 8-aligned, so "x" is surely misaligned
  const std::string path = file_with(d, "odd", header, data);
  const torch::Tensor x = SafetensorsFile::open(path)->tensor("x");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.data_ptr()) % 4, 0u);
  EXPECT_TRUE(torch::equal(x, torch::tensor({1.5f, -2.0f})));
}

TEST(Safetensors, ReadsWhatThePythonLibraryWrites) {
  TempDir d;
  const auto r = testing::run_process({testing::kPython, oracle(), "write", d.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json expected = json::parse(testing::read_text(d.path() + "/expected.json"));
  const auto f = SafetensorsFile::open(d.path() + "/dtypes.safetensors");
  EXPECT_EQ(f->metadata().at("note"), "ünïcode");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->names().size(), expected.at("dtypes").size());
  for (const auto& [name, e] : expected.at("dtypes").items()) expect_matches(f->tensor(name), e, name);
  // The same file through SafetensorsCheckpoint, given as a file and as a directory's model.safetensors.
  fs::create_directories(d.path() + "/single");
  fs::copy_file(d.path() + "/dtypes.safetensors", d.path() + "/single/model.safetensors");
  for (const std::string& p : {d.path() + "/dtypes.safetensors", d.path() + "/single"}) {
    const auto ck = SafetensorsCheckpoint::open(p);
    EXPECT_EQ(ck.names(), f->names()) << p;
    expect_matches(ck.tensor("bf16"), expected.at("dtypes").at("bf16"), p);
  }
}

TEST(Safetensors, ReadsAShardedPythonCheckpoint) {
  TempDir d;
  const auto r = testing::run_process({testing::kPython, oracle(), "write", d.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json expected = json::parse(testing::read_text(d.path() + "/expected.json"));
  const auto ck = SafetensorsCheckpoint::open(d.path() + "/sharded");
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"lm_head.weight", "model.a.weight", "model.b.weight"}));
  for (const auto& [name, e] : expected.at("sharded").items()) {
    EXPECT_TRUE(ck.contains(name));
    EXPECT_EQ(ck.info(name).shape, e.at("shape").get<std::vector<int64_t>>());
    expect_matches(ck.tensor(name), e, name);
  }
}

TEST(Safetensors, ThePythonLibraryReadsWhatWeWrite) {
  TempDir d;
  const auto tensors = every_kind_of_tensor(/*specials_too=*/false);
  save_safetensors(d.path() + "/ours.safetensors", tensors, {{"family", "lora"}});
  const auto r = testing::run_process({testing::kPython, oracle(), "read", d.path() + "/ours.safetensors"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json got = json::parse(r.out);
  EXPECT_EQ(got.at("metadata"), json({{"family", "lora"}}));
  EXPECT_EQ(got.at("tensors").size(), tensors.size());
  for (const auto& [name, t] : tensors) expect_matches(t, got.at("tensors").at(name), name);
}

TEST(Safetensors, ProblemNamesAreStable) {
  const std::vector<std::pair<P, std::string>> names{
      {P::kNotFound, "not-found"},       {P::kTruncated, "truncated"},
      {P::kHeaderTooLarge, "header-too-large"}, {P::kBadHeaderJson, "bad-header-json"},
      {P::kUnknownDtype, "unknown-dtype"}, {P::kBadShape, "bad-shape"},
      {P::kOffsetsOutOfRange, "offsets-out-of-range"}, {P::kOverlap, "overlap"},
      {P::kSizeMismatch, "size-mismatch"}, {P::kBadIndex, "bad-index"},
      {P::kMissingTensor, "missing-tensor"}, {P::kIo, "io"}};
  for (const auto& [p, name] : names) EXPECT_EQ(problem_name(p), name);
  const SafetensorsError e(P::kOverlap, "/m/a.safetensors", "x and y share bytes", "re-save it");
  EXPECT_STREQ(e.what(), "/m/a.safetensors: overlap: x and y share bytes");
  EXPECT_EQ(e.hint(), "re-save it");
}

// ---- broken files: each violation is its own SafetensorsError, "<path>: <problem>: <details>" ----

P problem_of(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const SafetensorsError& e) {
    const std::string prefix = path + ": " + problem_name(e.problem()) + ": ";
    EXPECT_EQ(std::string(e.what()).substr(0, prefix.size()), prefix) << e.what();
    EXPECT_EQ(e.path(), path);
    return e.problem();
  }
  ADD_FAILURE() << "expected a SafetensorsError for " << path;
  return P::kIo;
}

TEST(SafetensorsBroken, MissingFileIsNotFound) {
  TempDir d;
  EXPECT_EQ(problem_of(d.path() + "/missing.safetensors"), P::kNotFound);
}

TEST(SafetensorsBroken, DirectoryIsAnIoError) {
  TempDir d;
  EXPECT_EQ(problem_of(d.path()), P::kIo);
}

TEST(SafetensorsBroken, FileShorterThan8BytesIsTruncated) {
  TempDir d;
  EXPECT_EQ(problem_of(d.write("empty", "")), P::kTruncated);
  EXPECT_EQ(problem_of(d.write("short", "abcdefg")), P::kTruncated);
}

TEST(SafetensorsBroken, HeaderLengthPastTheEndIsTruncated) {
  TempDir d;
  std::string past(8, '\0');
  past[0] = 100;  // a 100-byte header, 2 bytes present
  EXPECT_EQ(problem_of(d.write("past", past + "{}")), P::kTruncated);
}

TEST(SafetensorsBroken, HeaderOver100MBIsTooLarge) {
  TempDir d;
  std::string huge(8, '\0');
  huge[4] = 1;  // 2^32 bytes
  EXPECT_EQ(problem_of(d.write("huge", huge + "{}")), P::kHeaderTooLarge);
  std::string all_ones(8, '\xff');  // 2^64 - 1: no overflow in "8 + length"
  EXPECT_EQ(problem_of(d.write("ones", all_ones + "{}")), P::kHeaderTooLarge);
}

TEST(SafetensorsBroken, APyTorchPickleUnderASafetensorsNameIsCalledOne) {
  // issue 20: a torch.save file renamed model.safetensors gave "header length 5787..."
  TempDir d;
  const std::string path = d.path() + "/model.safetensors";
  const auto r = testing::run_process({testing::kPython, "-c",
                                       "import sys, torch; torch.save({'w': torch.zeros(3)}, sys.argv[1])", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  try {
    io::SafetensorsFile::open(path);
    ADD_FAILURE() << "a pickle opened as safetensors";
  } catch (const io::SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("looks like a PyTorch pickle (torch.save, zip archive)"), std::string::npos)
        << e.what();
    EXPECT_NE(e.hint().find("scripts/convert_meta_llama.py"), std::string::npos) << e.hint();
  }
  // the pre-1.6 format: a raw pickle, protocol 2
  std::string raw = "\x80\x02}q\x00.";
  raw += std::string(16, ' ');
  try {
    io::SafetensorsFile::open(d.write("old.safetensors", raw));
    ADD_FAILURE() << "a raw pickle opened as safetensors";
  } catch (const io::SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("raw pickle"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsBroken, HeaderThatIsNotJson) {
  TempDir d;
  EXPECT_EQ(problem_of(file_with(d, "a", "{not json", 0)), P::kBadHeaderJson);
  EXPECT_EQ(problem_of(file_with(d, "b", "", 0)), P::kBadHeaderJson);
  EXPECT_EQ(problem_of(file_with(d, "c", "{\"\xff\": 1}", 0)), P::kBadHeaderJson);  // not UTF-8
}

TEST(SafetensorsBroken, HeaderThatIsNotAnObject) {
  TempDir d;
  EXPECT_EQ(problem_of(file_with(d, "a", "[1, 2]", 0)), P::kBadHeaderJson);
  EXPECT_EQ(problem_of(file_with(d, "b", "\"x\"", 0)), P::kBadHeaderJson);
}

TEST(SafetensorsBroken, FieldsOfTheWrongTypeOrMissing) {
  TempDir d;
  const std::vector<std::string> headers{
      R"({"x": 5})",
      R"({"x": {"dtype": "F32", "shape": [1]}})",
      R"({"x": )" + entry("5", "[1]", "[0, 4]") + "}",
      R"({"x": )" + entry("\"F32\"", "1", "[0, 4]") + "}",
      R"({"x": )" + entry("\"F32\"", "[\"1\"]", "[0, 4]") + "}",
      R"({"x": )" + entry("\"F32\"", "[1.0]", "[0, 4]") + "}",
      R"({"x": )" + entry("\"F32\"", "[1]", "[0, 4, 8]") + "}",
      R"({"x": )" + entry("\"F32\"", "[1]", "[0]") + "}",
      R"({"x": )" + entry("\"F32\"", "[1]", "[-4, 0]") + "}",
      R"({"x": )" + entry("\"F32\"", "[1]", "{\"a\": 0, \"b\": 4}") + "}",
      R"({"__metadata__": [1]})",
      R"({"__metadata__": {"a": 1}})",
  };
  for (size_t i = 0; i < headers.size(); ++i) {
    EXPECT_EQ(problem_of(file_with(d, "h" + std::to_string(i), headers[i], 4)), P::kBadHeaderJson) << headers[i];
  }
}

TEST(SafetensorsBroken, DeeplyNestedHeaderIsAnErrorNotAStackOverflow) {
  TempDir d;
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  EXPECT_EQ(problem_of(file_with(d, "a", R"({"x": )" + entry(deep, "[1]", "[0, 4]") + "}", 4)), P::kBadHeaderJson);
  EXPECT_EQ(problem_of(file_with(d, "b", R"({"x": )" + entry("\"F32\"", "[" + deep + "]", "[0, 4]") + "}", 4)),
            P::kBadHeaderJson);
}

TEST(SafetensorsBroken, UnknownDtype) {
  TempDir d;
  EXPECT_EQ(problem_of(file_with(d, "a", R"({"x": )" + entry("\"Q4_K\"", "[1]", "[0, 4]") + "}", 4)),
            P::kUnknownDtype);
  EXPECT_EQ(problem_of(file_with(d, "b", R"({"x": )" + entry("\"f32\"", "[1]", "[0, 4]") + "}", 4)),
            P::kUnknownDtype);
}

TEST(SafetensorsBroken, NegativeDimensionIsABadShape) {
  TempDir d;
  EXPECT_EQ(problem_of(file_with(d, "a", R"({"x": )" + entry("\"F32\"", "[-1]", "[0, 4]") + "}", 4)), P::kBadShape);
}

TEST(SafetensorsBroken, ShapeProductOverflowIsABadShape) {
  TempDir d;
  const std::vector<std::string> shapes{"[4294967296, 4294967296, 4294967296]",  // > 2^64 elements
                                        "[4611686018427387904, 4]",               // 2^64 elements exactly
                                        "[2305843009213693952, 2]",  // 2^62 elements, 2^64 bytes of F32
                                        "[0, 9223372036854775808]",  // a dimension beyond int64
                                        "[9223372036854775807, 9223372036854775807, 0]"};
  for (size_t i = 0; i < shapes.size(); ++i) {
    const std::string h = R"({"x": )" + entry("\"F32\"", shapes[i], "[0, 4]") + "}";
    EXPECT_EQ(problem_of(file_with(d, "s" + std::to_string(i), h, 4)), P::kBadShape) << shapes[i];
  }
}

TEST(SafetensorsBroken, OffsetsPastTheDataSection) {
  TempDir d;
  EXPECT_EQ(problem_of(file_with(d, "a", R"({"x": )" + entry("\"F32\"", "[4]", "[0, 16]") + "}", 8)),
            P::kOffsetsOutOfRange);
  EXPECT_EQ(problem_of(file_with(d, "b", R"({"x": )" + entry("\"F32\"", "[1]", "[18446744073709551612, 0]") + "}", 8)),
            P::kOffsetsOutOfRange);
}

TEST(SafetensorsBroken, OffsetsWithBeginAfterEnd) {
  TempDir d;
  EXPECT_EQ(problem_of(file_with(d, "a", R"({"x": )" + entry("\"F32\"", "[0]", "[8, 4]") + "}", 8)),
            P::kOffsetsOutOfRange);
}

TEST(SafetensorsBroken, OverlappingTensors) {
  TempDir d;
  const std::string x = entry("\"F32\"", "[2]", "[0, 8]");
  const std::string y = entry("\"F32\"", "[2]", "[4, 12]");
  EXPECT_EQ(problem_of(file_with(d, "a", R"({"x": )" + x + R"(, "y": )" + y + "}", 12)), P::kOverlap);
  EXPECT_EQ(problem_of(file_with(d, "b", R"({"x": )" + x + R"(, "y": )" + x + "}", 8)), P::kOverlap);
  // an empty tensor owns no bytes, so it may sit anywhere inside the data section
  const std::string empty = entry("\"F32\"", "[0]", "[4, 4]");
  EXPECT_NO_THROW(SafetensorsFile::open(file_with(d, "c", R"({"x": )" + x + R"(, "e": )" + empty + "}", 8)));
}

TEST(SafetensorsBroken, SizeMismatch) {
  TempDir d;
  EXPECT_EQ(problem_of(file_with(d, "a", R"({"x": )" + entry("\"F32\"", "[3]", "[0, 8]") + "}", 8)), P::kSizeMismatch);
  EXPECT_EQ(problem_of(file_with(d, "b", R"({"x": )" + entry("\"BF16\"", "[2, 2]", "[0, 4]") + "}", 8)),
            P::kSizeMismatch);
  // for contrast, a valid file built the same way
  EXPECT_NO_THROW(SafetensorsFile::open(file_with(d, "ok", R"({"x": )" + entry("\"F32\"", "[2]", "[0, 8]") + "}", 8)));
}

TEST(SafetensorsBroken, MissingTensorName) {
  TempDir d;
  save_safetensors(d.path() + "/model.safetensors", {{"a", torch::zeros({1})}});
  const auto f = SafetensorsFile::open(d.path() + "/model.safetensors");
  const auto ck = SafetensorsCheckpoint::open(d.path());
  for (const auto& call : std::vector<std::function<void()>>{[&] { f->tensor("nope"); }, [&] { f->info("nope"); },
                                                             [&] { ck.tensor("nope"); }, [&] { ck.info("nope"); }}) {
    try {
      call();
      ADD_FAILURE() << "expected kMissingTensor";
    } catch (const SafetensorsError& e) {
      EXPECT_EQ(e.problem(), P::kMissingTensor);
      EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos);
    }
  }
  EXPECT_FALSE(ck.contains("nope"));
}

// ---- checkpoint directories ----

SafetensorsError checkpoint_error(const std::string& path) {
  try {
    SafetensorsCheckpoint::open(path);
  } catch (const SafetensorsError& e) {
    return e;
  }
  ADD_FAILURE() << "expected a SafetensorsError for " << path;
  return SafetensorsError(P::kIo, path, "none");
}

TEST(SafetensorsDirectory, MissingPathIsNotFound) {
  TempDir d;
  EXPECT_EQ(checkpoint_error(d.path() + "/nothing").problem(), P::kNotFound);
  EXPECT_EQ(checkpoint_error(d.path()).problem(), P::kNotFound);  // an empty directory
}

TEST(SafetensorsDirectory, PickleOnlyDirectoryPointsAtTheConverters) {
  TempDir d;
  d.write("pytorch_model.bin", "x");
  d.write("config.json", "{}");
  const SafetensorsError e = checkpoint_error(d.path());
  EXPECT_EQ(e.problem(), P::kNotFound);
  EXPECT_NE(std::string(e.what()).find("pytorch_model.bin"), std::string::npos) << e.what();
  EXPECT_NE(e.hint().find("scripts/convert_meta_llama.py"), std::string::npos) << e.hint();
  EXPECT_NE(e.hint().find("scripts/convert_openai_clip.py"), std::string::npos) << e.hint();
  const SafetensorsError f = checkpoint_error(d.write("consolidated.00.pth", "x"));  // a pickle given as a file
  EXPECT_NE(f.hint().find("scripts/convert_meta_llama.py"), std::string::npos) << f.hint();
}

TEST(SafetensorsDirectory, IndexNamingAMissingShard) {
  TempDir d;
  d.write("model.safetensors.index.json", R"({"metadata": {}, "weight_map": {"a": "model-00001.safetensors"}})");
  const SafetensorsError e = checkpoint_error(d.path());
  EXPECT_EQ(e.problem(), P::kBadIndex);
  EXPECT_NE(std::string(e.what()).find("model-00001.safetensors"), std::string::npos) << e.what();
}

TEST(SafetensorsDirectory, IndexNamingATensorTheShardLacks) {
  TempDir d;
  save_safetensors(d.path() + "/model-00001.safetensors", {{"b", torch::zeros({1})}});
  d.write("model.safetensors.index.json", R"({"weight_map": {"a": "model-00001.safetensors"}})");
  EXPECT_EQ(checkpoint_error(d.path()).problem(), P::kBadIndex);
}

TEST(SafetensorsDirectory, MalformedIndex) {
  TempDir d;
  save_safetensors(d.path() + "/s.safetensors", {{"a", torch::zeros({1})}});
  for (const std::string& index : {std::string("{not json"), std::string(R"({"metadata": {}})"),
                                   std::string(R"({"weight_map": []})"), std::string(R"({"weight_map": {"a": 3}})"),
                                   std::string(R"({"weight_map": {"a": "../s.safetensors"}})"),
                                   std::string(R"({"weight_map": {"a": "s.safetensors"}, "metadata": 1})")}) {
    d.write("model.safetensors.index.json", index);
    EXPECT_EQ(checkpoint_error(d.path()).problem(), P::kBadIndex) << index;
  }
}

TEST(SafetensorsDirectory, ShardErrorsNameTheShard) {
  TempDir d;
  const std::string shard = d.write("model-00001.safetensors", "abc");
  d.write("model.safetensors.index.json", R"({"weight_map": {"a": "model-00001.safetensors"}})");
  const SafetensorsError e = checkpoint_error(d.path());
  EXPECT_EQ(e.problem(), P::kTruncated);
  EXPECT_EQ(e.path(), shard);
}

// ---- the writer ----

std::set<std::string> entries_of(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

P save_problem(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
               const std::map<std::string, std::string>& metadata = {}) {
  try {
    save_safetensors(path, tensors, metadata);
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.path(), path);
    return e.problem();
  }
  ADD_FAILURE() << "expected a SafetensorsError writing " << path;
  return P::kNotFound;
}

TEST(SafetensorsWriter, FailureLeavesNoTempFileBehind) {
  TempDir d;
  fs::create_directories(d.path() + "/target.safetensors");  // a directory where the file should go
  EXPECT_EQ(save_problem(d.path() + "/target.safetensors", {{"a", torch::zeros({2})}}), P::kIo);
  EXPECT_EQ(save_problem(d.path() + "/no/such/dir/x.safetensors", {{"a", torch::zeros({2})}}), P::kIo);
  EXPECT_EQ(entries_of(d.path()), (std::set<std::string>{"target.safetensors"})) << "no temp or partial file";
  EXPECT_TRUE(fs::is_empty(d.path() + "/target.safetensors"));
}

TEST(SafetensorsWriter, UnwritableDirectoryIsAnIoError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into read-only directories";
  TempDir d;
  fs::create_directories(d.path() + "/ro");
  fs::permissions(d.path() + "/ro", fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_EQ(save_problem(d.path() + "/ro/a.safetensors", {{"a", torch::zeros({2})}}), P::kIo);
  fs::permissions(d.path() + "/ro", fs::perms::owner_all);
  EXPECT_TRUE(fs::is_empty(d.path() + "/ro"));
}

TEST(SafetensorsWriter, RejectsDuplicateAndReservedNames) {
  TempDir d;
  EXPECT_EQ(save_problem(d.path() + "/dup.safetensors", {{"a", torch::zeros({2})}, {"a", torch::ones({2})}}), P::kIo);
  EXPECT_EQ(save_problem(d.path() + "/meta.safetensors", {{"__metadata__", torch::zeros({2})}}), P::kIo);
  EXPECT_EQ(save_problem(d.path() + "/utf8.safetensors", {{"\xff", torch::zeros({2})}}), P::kBadHeaderJson);
  EXPECT_EQ(save_problem(d.path() + "/cplx.safetensors", {{"c", torch::zeros({2}, torch::kComplexFloat)}}),
            P::kUnknownDtype);
  EXPECT_TRUE(entries_of(d.path()).empty());
}

TEST(SafetensorsWriter, ReplacesAnExistingFileWhileOldViewsStayValid) {
  TempDir d;
  const std::string path = d.path() + "/a.safetensors";
  save_safetensors(path, {{"x", torch::full({4}, 1.0f)}});
  const torch::Tensor old = SafetensorsFile::open(path)->tensor("x");
  save_safetensors(path, {{"x", torch::full({4}, 2.0f)}, {"y", torch::zeros({1})}});
  EXPECT_TRUE(torch::equal(old, torch::full({4}, 1.0f))) << "rename leaves the old inode mapped";
  EXPECT_TRUE(torch::equal(SafetensorsFile::open(path)->tensor("x"), torch::full({4}, 2.0f)));
  EXPECT_EQ(entries_of(d.path()), (std::set<std::string>{"a.safetensors"}));
}

}  // namespace test_safetensors
}  // namespace mmtune::io
