// safetensors reading (memory-mapped, strictly validated) and writing (temp file + rename).
// Format: 8-byte little-endian header length N, N bytes of JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
// then the raw little-endian tensor bytes; data_offsets are relative to the end of the header.
// Sharded checkpoints: model.safetensors.index.json {"metadata": {...}, "weight_map": {name: file}}.
// The C++ never loads pickles; .bin / .pth / .pt checkpoints go through scripts/convert_*.py.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include <mmtune/core/errors.h>

namespace mmtune::io {

/// What exactly is wrong with a safetensors file; part of every SafetensorsError's message.
enum class SafetensorsProblem {
  kNotFound,           // "file not found"
  kTruncated,          // file shorter than 8 bytes, or than 8 + header length
  kHeaderTooLarge,     // header length beyond the limit (100 MB) or the file
  kBadHeaderJson,      // not JSON, not an object, wrong field types
  kUnknownDtype,       // dtype string not supported
  kBadShape,           // negative dimension, overflow
  kOffsetsOutOfRange,  // data_offsets past the data section, or begin > end
  kOverlap,            // two tensors share bytes
  kSizeMismatch,       // dtype size x numel != end - begin
  kBadIndex,           // model.safetensors.index.json malformed or naming a missing shard/tensor
  kMissingTensor,      // a requested tensor name is not in the checkpoint
  kIo,                 // open/mmap/write/rename failed
};
/// Short stable name of a problem ("truncated", "offsets-out-of-range", ...).
const char* problem_name(SafetensorsProblem p);

/// A CheckpointError that also says which problem it is.
class SafetensorsError : public CheckpointError {
 public:
  SafetensorsError(SafetensorsProblem problem, std::string path, std::string message, std::string hint = {});
  SafetensorsProblem problem() const { return problem_; }

 private:
  SafetensorsProblem problem_;
};

/// One tensor's header entry.
struct TensorInfo {
  torch::Dtype dtype;           // F32 F16 BF16 I64 I32 U8 BOOL (and F64, I8, I16 for completeness)
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data section
};

/// A memory-mapped safetensors file; validated completely when opened.
class SafetensorsFile {
 public:
  /// Throws SafetensorsError naming the path and the problem.
  static std::shared_ptr<const SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Sorted tensor names.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return tensors_.count(name) > 0; }
  /// Throws SafetensorsError(kMissingTensor).
  const TensorInfo& info(const std::string& name) const;
  /// A CPU tensor viewing the mapped bytes (no copy); it keeps the mapping alive, so a model can
  /// use it as its own weight (load_weights does when dtype and device agree). The mapping is
  /// private copy-on-write: writing into the tensor changes this process's copy, never the file.
  /// A tensor whose offset is not a multiple of its element size (legal, never written by us or
  /// the Python library) is a copy. Throws SafetensorsError(kMissingTensor).
  torch::Tensor tensor(const std::string& name) const;
  /// Drops the pages holding `name` from this process's memory (they are read from the file again
  /// if a view touches them later): quantizing a 13 GB checkpoint tensor by tensor then never holds
  /// more than one tensor's pages. Only for tensors not written through a view.
  void release(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  void map_file();     // sets map_, map_size_; throws kNotFound, kIo, kTruncated
  void read_header();  // validates everything, fills tensors_, metadata_, data_start_
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  size_t data_start_ = 0;  // 8 + header length
  std::weak_ptr<const SafetensorsFile> self_;
};

/// A Hugging Face checkpoint: a directory holding model.safetensors or
/// model.safetensors.index.json + shards, or a single .safetensors file.
class SafetensorsCheckpoint {
 public:
  /// Throws SafetensorsError (a shard's own problems name the shard's path). A .bin / .pth / .pt file,
  /// or a directory holding only such pickles, is kNotFound with a hint naming the converter scripts.
  static SafetensorsCheckpoint open(const std::string& dir_or_file);
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor tensor(const std::string& name) const;
  /// SafetensorsFile::release for the shard holding `name`.
  void release(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::map<std::string, std::shared_ptr<const SafetensorsFile>> by_name_;
};

/// Writes tensors (any device; contiguous copies are made as needed) to `path` atomically: a temp
/// file in the same directory, fsync, rename; entries sorted by name, data 8-byte aligned, as the
/// Python library writes them. Throws SafetensorsError: kIo for duplicate or reserved names and any
/// file-system failure (no temp file is left behind), kUnknownDtype for a dtype safetensors lacks
/// here, kBadHeaderJson for names or metadata that are not UTF-8.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace mmtune::io
