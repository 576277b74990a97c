// read_whole_file: a small file's bytes, its size checked before a byte is allocated or read.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/core/read_file.h>

#include <filesystem>
#include <optional>

#include "test_utils.h"

namespace mmtune {
namespace test_read_file {

using mmtune::testing::TempDir;

// The problem read_whole_file reported (its handler throws it back as is), or nullopt when it read.
std::optional<FileProblem> problem_of(const std::filesystem::path& path, std::uint64_t max_bytes) {
  try {
    read_whole_file(path, max_bytes, "a test file", [](const FileProblem& p) { throw p; });
  } catch (const FileProblem& p) {
    return p;
  }
  return std::nullopt;
}

TEST(ReadFile, ReadsEveryByteUpToTheBound) {
  TempDir d;
  const std::string bytes("a\0b\xff\n", 5);
  const std::string p = d.write("f.bin", bytes);
  EXPECT_EQ(read_whole_file(p, 5, "a test file", nullptr), bytes);  // exactly at the bound
  EXPECT_EQ(read_whole_file(d.write("empty", ""), 0, "a test file", nullptr), "");
  // larger than the 64 KiB the reader takes at a time
  std::string big(200000, 'x');
  for (size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>(i % 251);
  EXPECT_EQ(read_whole_file(d.write("big", big), big.size(), "a test file", nullptr), big);
}

TEST(ReadFile, SaysWhatIsWrongForTheCallerToThrow) {
  TempDir d;
  auto p = problem_of(d.path() + "/none.json", 100);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, FileProblem::Kind::kMissing);
  EXPECT_EQ(p->message, "not found");
  p = problem_of(d.path() + "/none/deeper.json", 100);  // a missing directory on the way
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, FileProblem::Kind::kMissing);
  p = problem_of(d.path(), 100);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, FileProblem::Kind::kNotAFile);
  EXPECT_EQ(p->message, "is a directory, not a file");
  // one byte over: the sizes in bytes (in MiB they would read alike)
  p = problem_of(d.write("eleven", "01234567890"), 10);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, FileProblem::Kind::kTooLarge);
  EXPECT_EQ(p->message, "is 11 bytes, more than a test file can be (10 bytes)");
}

TEST(ReadFile, RefusesALargeFileFromItsSizeBeforeReadingIt) {
  // A sparse 3 GiB file (nothing on disk): read whole it would take 3 GB and seconds; the message
  // carries the size, known only from the file's metadata.
  TempDir d;
  const std::string p = d.write("huge.yaml", "model:\n");
  std::filesystem::resize_file(p, std::uintmax_t{3} << 30);
  const auto problem = problem_of(p, std::uint64_t{16} << 20);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->kind, FileProblem::Kind::kTooLarge);
  EXPECT_EQ(problem->message, "is 3072 MiB, more than a test file can be (16 MiB)");
}

TEST(ReadFile, BoundsAStreamWithoutASize) {
  // /dev/zero never ends: without the bound this read would not return
  if (!std::filesystem::exists("/dev/zero")) GTEST_SKIP() << "no /dev/zero";
  const auto p = problem_of("/dev/zero", std::uint64_t{1} << 20);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, FileProblem::Kind::kTooLarge);
  EXPECT_EQ(p->message, "has more than 1 MiB, the most a test file can be");
  // a device that ends at once reads as an empty file
  EXPECT_EQ(read_whole_file("/dev/null", 10, "a test file", nullptr), "");
}

TEST(ReadFile, AHandlerThatReturnsStillStopsTheRead) {
  TempDir d;
  try {
    read_whole_file(d.path() + "/none", 10, "a test file", [](const FileProblem&) {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), d.path() + "/none: not found");
  }
}

TEST(ReadFile, CheckpointFilesThrowACheckpointErrorWithTheHint) {
  TempDir d;
  const std::string p = d.write("adapter_config.json", std::string(100, ' '));
  try {
    read_checkpoint_file(p, "is this an adapter directory?", 99);
    FAIL() << "no error";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(e.path(), p);
    EXPECT_EQ(std::string(e.what()), p + ": is 100 bytes, more than a JSON metadata file can be (99 bytes)");
    EXPECT_EQ(e.hint(), "is this an adapter directory?");
  }
  EXPECT_EQ(read_checkpoint_file(p, "", 100), std::string(100, ' '));
}

}  // namespace test_read_file
}  // namespace mmtune
