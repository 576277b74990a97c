// Whole files read into memory only after their size is checked: every small file mmtune reads from
// outside (config YAML, config.json, adapter_config.json, tokenizer files, checkpoint state) goes
// through read_whole_file with a bound for what such a file can be, so a wrong path -- a weights
// file or a 30 GB log passed as a config -- is one clean error, never gigabytes read into memory and
// handed to a parser. Errors stay the caller's: the reader says what is wrong, the caller throws its
// own error type (ConfigError, CheckpointError, DataError) with its own hint.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace mmtune {

/// What stopped a whole-file read. `message` reads after the file's path: "not found",
/// "is a directory, not a file", "is 3072 MiB, more than a config file can be (16 MiB)",
/// "cannot read: Permission denied".
struct FileProblem {
  enum class Kind { kMissing, kNotAFile, kTooLarge, kUnreadable };
  Kind kind;
  std::string message;
};

/// Called with the problem; throws the caller's error (naming the file, with its hint). If it
/// returns, read_whole_file throws mmtune::Error("<path>: <message>").
using FileProblemHandler = std::function<void(const FileProblem&)>;

/// The bytes of the file at `path`, at most `max_bytes` of them. A regular file's size is checked
/// before anything is allocated; a pipe or device (/dev/stdin, <(...)) is read until `max_bytes` + 1
/// bytes would be needed. `what` names the kind of file in the too-large message ("a config file").
std::string read_whole_file(const std::filesystem::path& path, std::uint64_t max_bytes, std::string_view what,
                            const FileProblemHandler& fail);

/// read_whole_file for a checkpoint's or model's own files (config.json, adapter_config.json,
/// tokenizer files, trainer state): every problem is a CheckpointError naming the file, with `hint`.
std::string read_checkpoint_file(const std::filesystem::path& path, const std::string& hint,
                                 std::uint64_t max_bytes, std::string_view what = "a JSON metadata file");

/// Bounds for the kinds of files: each well above the largest real one.
/// YAML run configs (ours are a few KB).
inline constexpr std::uint64_t kMaxConfigFileBytes = std::uint64_t{16} << 20;
/// JSON metadata: config.json, adapter_config.json, tokenizer_config.json, a safetensors index, a
/// checkpoint's trainer state (all KB to a few MB).
inline constexpr std::uint64_t kMaxMetadataFileBytes = std::uint64_t{64} << 20;
/// Tokenizer models: tokenizer.model (LLaMA's 0.5 MB) and tokenizer.json (Llama 3's 9 MB, the
/// largest vocabularies' ~35 MB).
inline constexpr std::uint64_t kMaxTokenizerFileBytes = std::uint64_t{256} << 20;

}  // namespace mmtune
