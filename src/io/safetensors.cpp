// safetensors: strict, memory-mapped reading and atomic writing (format in io/safetensors.h).
#include <mmtune/core/strings.h>
#include <mmtune/io/safetensors.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

namespace mmtune::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using P = SafetensorsProblem;

constexpr uint64_t kMaxHeader = 100ull << 20;  // 100 MB, as the reference implementation

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
  int64_t size;
};
const DtypeInfo kDtypes[] = {{"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2}, {"BF16", torch::kBFloat16, 2},
                             {"F64", torch::kFloat64, 8}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
                             {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
                             {"BOOL", torch::kBool, 1}};

const DtypeInfo* dtype_by_name(const std::string& n) {
  for (const auto& d : kDtypes) {
    if (n == d.name) return &d;
  }
  return nullptr;
}

const DtypeInfo* dtype_by_torch(torch::Dtype t) {
  for (const auto& d : kDtypes) {
    if (t == d.dtype) return &d;
  }
  return nullptr;
}

[[noreturn]] void fail(P p, const std::string& path, const std::string& msg, const std::string& hint = {}) {
  throw SafetensorsError(p, path, msg, hint);
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Parses one header entry, checking types, shape and byte count; data_len bounds the offsets.
TensorInfo parse_entry(const std::string& path, const std::string& name, const json& e, uint64_t data_len) {
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    fail(P::kBadHeaderJson, path, "tensor '" + name + "' needs dtype, shape and data_offsets");
  if (!e["dtype"].is_string()) fail(P::kBadHeaderJson, path, "tensor '" + name + "': dtype is not a string");
  const DtypeInfo* dt = dtype_by_name(e["dtype"].get<std::string>());
  if (!dt) fail(P::kUnknownDtype, path, "tensor '" + name + "' has dtype " + e["dtype"].dump(), "supported: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL");
  const json& shape = e["shape"];
  const json& off = e["data_offsets"];
  if (!shape.is_array()) fail(P::kBadHeaderJson, path, "tensor '" + name + "': shape is not a list");
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    fail(P::kBadHeaderJson, path, "tensor '" + name + "': data_offsets must be two non-negative integers");
  TensorInfo info{dt->dtype, {}, off[0].get<uint64_t>(), off[1].get<uint64_t>()};
  uint64_t numel = 1;
  for (const auto& d : shape) {
    if (!d.is_number_unsigned()) fail(P::kBadShape, path, "tensor '" + name + "': shape " + shape.dump() + " has a non-integer or negative dimension");
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || (v && numel > std::numeric_limits<uint64_t>::max() / v))
      fail(P::kBadShape, path, "tensor '" + name + "': shape " + shape.dump() + " overflows");
    numel *= v;
    info.shape.push_back(static_cast<int64_t>(v));
  }
  if (info.begin > info.end || info.end > data_len)
    fail(P::kOffsetsOutOfRange, path, cat("tensor '", name, "': data_offsets [", info.begin, ", ", info.end,
                                          "] outside the data section of ", data_len, " bytes"), "the file is truncated or corrupt");
  if (numel > std::numeric_limits<uint64_t>::max() / dt->size || numel * dt->size != info.end - info.begin)
    fail(P::kSizeMismatch, path, cat("tensor '", name, "': ", dt->name, " x ", shape.dump(), " needs ", numel * dt->size,
                                     " bytes, data_offsets span ", info.end - info.begin));
  return info;
}

}  // namespace

const char* problem_name(SafetensorsProblem p) {
  switch (p) {
    case P::kNotFound: return "not-found";
    case P::kTruncated: return "truncated";
    case P::kHeaderTooLarge: return "header-too-large";
    case P::kBadHeaderJson: return "bad-header-json";
    case P::kUnknownDtype: return "unknown-dtype";
    case P::kBadShape: return "bad-shape";
    case P::kOffsetsOutOfRange: return "offsets-out-of-range";
    case P::kOverlap: return "overlap";
    case P::kSizeMismatch: return "size-mismatch";
    case P::kBadIndex: return "bad-index";
    case P::kMissingTensor: return "missing-tensor";
    case P::kIo: return "io";
  }
  return "unknown";
}

SafetensorsError::SafetensorsError(SafetensorsProblem problem, std::string path, std::string message, std::string hint)
    : CheckpointError(std::move(path), std::string(problem_name(problem)) + ": " + message, std::move(hint)),
      problem_(problem) {}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(errno == ENOENT ? P::kNotFound : P::kIo, path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(P::kIo, path, "not a regular file");
  }
  f->map_size_ = static_cast<size_t>(st.st_size);
  if (f->map_size_ < 8) {
    ::close(fd);
    fail(P::kTruncated, path, cat("file has ", f->map_size_, " bytes, fewer than the 8-byte header length"));
  }
  void* m = ::mmap(nullptr, f->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(P::kIo, path, std::string("mmap failed: ") + std::strerror(errno));
  f->map_ = m;
  const auto* bytes = static_cast<const unsigned char*>(m);
  const uint64_t n = read_u64_le(bytes);
  if (n > kMaxHeader) fail(P::kHeaderTooLarge, path, cat("header length ", n, " exceeds the 100 MB limit"));
  if (n > f->map_size_ - 8) fail(P::kTruncated, path, cat("header length ", n, " but only ", f->map_size_ - 8, " bytes follow"));
  f->data_start_ = 8 + n;
  json h;
  try {
    h = json::parse(bytes + 8, bytes + 8 + n);
  } catch (const json::exception& e) {
    fail(P::kBadHeaderJson, path, std::string("header is not JSON: ") + e.what());
  }
  if (!h.is_object()) fail(P::kBadHeaderJson, path, "header is not a JSON object");
  const uint64_t data_len = f->map_size_ - f->data_start_;
  std::vector<std::pair<uint64_t, std::string>> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(P::kBadHeaderJson, path, "__metadata__ is not an object");
      for (auto m2 = it->begin(); m2 != it->end(); ++m2) {
        if (!m2->is_string()) fail(P::kBadHeaderJson, path, "__metadata__ value of '" + m2.key() + "' is not a string");
        f->metadata_[m2.key()] = m2->get<std::string>();
      }
      continue;
    }
    TensorInfo info = parse_entry(path, it.key(), *it, data_len);
    if (info.end > info.begin) ranges.emplace_back(info.begin, it.key());
    f->tensors_.emplace(it.key(), std::move(info));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& prev = f->tensors_.at(ranges[i - 1].second);
    if (ranges[i].first < prev.end)
      fail(P::kOverlap, path, "tensors '" + ranges[i - 1].second + "' and '" + ranges[i].second + "' share bytes");
  }
  f->self_ = f;
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : tensors_) out.push_back(n);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(P::kMissingTensor, path_, "no tensor named '" + name + "'");
  return it->second;
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& i = info(name);
  auto keep = self_.lock();  // the mapping lives as long as any tensor viewing it
  void* data = static_cast<char*>(map_) + data_start_ + i.begin;
  if (i.end == i.begin) return torch::empty(i.shape, torch::TensorOptions().dtype(i.dtype));
  return torch::from_blob(data, i.shape, [keep](void*) {}, torch::TensorOptions().dtype(i.dtype));
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& dir_or_file) {
  SafetensorsCheckpoint c;
  c.path_ = dir_or_file;
  std::error_code ec;
  if (!fs::exists(dir_or_file, ec)) fail(P::kNotFound, dir_or_file, "no such file or directory");
  auto add_file = [&](const std::string& file) {
    auto f = SafetensorsFile::open(file);
    for (const auto& n : f->names()) c.by_name_[n] = f;
    return f;
  };
  if (!fs::is_directory(dir_or_file)) {
    add_file(dir_or_file);
    return c;
  }
  const fs::path dir(dir_or_file);
  if (fs::exists(dir / "model.safetensors.index.json")) {
    const std::string index_path = (dir / "model.safetensors.index.json").string();
    std::ifstream in(index_path);
    json index;
    try {
      index = json::parse(in);
    } catch (const json::exception& e) {
      fail(P::kBadIndex, index_path, std::string("not JSON: ") + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      fail(P::kBadIndex, index_path, "no \"weight_map\" object");
    std::map<std::string, std::shared_ptr<const SafetensorsFile>> shards;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it->is_string()) fail(P::kBadIndex, index_path, "weight_map entry '" + it.key() + "' is not a file name");
      const std::string shard = it->get<std::string>();
      if (!shards.count(shard)) {
        if (!fs::exists(dir / shard)) fail(P::kBadIndex, index_path, "shard " + shard + " is missing", "download every shard");
        shards[shard] = SafetensorsFile::open((dir / shard).string());
      }
      if (!shards[shard]->contains(it.key()))
        fail(P::kBadIndex, index_path, "tensor '" + it.key() + "' is not in " + shard);
      c.by_name_[it.key()] = shards[shard];
    }
    return c;
  }
  if (fs::exists(dir / "model.safetensors")) {
    add_file((dir / "model.safetensors").string());
    return c;
  }
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string ext = e.path().extension().string();
    if (ext == ".bin" || ext == ".pth" || ext == ".pt") {
      fail(P::kNotFound, dir_or_file, "only pickle checkpoints (" + e.path().filename().string() + ") here; mmtune reads safetensors",
           "convert them: scripts/convert_meta_llama.py (Meta .pth), scripts/convert_openai_clip.py (OpenAI CLIP .pt), "
           "or save_pretrained(..., safe_serialization=True) in Python");
    }
  }
  fail(P::kNotFound, dir_or_file, "no model.safetensors or model.safetensors.index.json", "is this a Hugging Face model directory?");
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : by_name_) out.push_back(n);
  return out;
}

bool SafetensorsCheckpoint::contains(const std::string& name) const { return by_name_.count(name) > 0; }

const TensorInfo& SafetensorsCheckpoint::info(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) fail(P::kMissingTensor, path_, "no tensor named '" + name + "'");
  return it->second->info(name);
}

torch::Tensor SafetensorsCheckpoint::tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) fail(P::kMissingTensor, path_, "no tensor named '" + name + "'");
  return it->second->tensor(name);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, torch::Tensor>> sorted;
  for (const auto& [n, t] : tensors) sorted.emplace_back(n, t.detach().to(torch::kCPU).contiguous());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& [name, t] = sorted[i];
    if (i && name == sorted[i - 1].first) fail(P::kIo, path, "tensor name '" + name + "' given twice");
    const DtypeInfo* dt = dtype_by_torch(t.scalar_type());
    if (!dt) fail(P::kUnknownDtype, path, cat("tensor '", name, "' has dtype ", t.scalar_type(), ", which safetensors cannot store here"));
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * dt->size;
    h[name] = {{"dtype", dt->name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header = h.dump();
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');  // data section 8-byte aligned
  const fs::path final_path(path);
  const fs::path tmp = final_path.parent_path() / ("." + final_path.filename().string() + ".tmp." + std::to_string(::getpid()));
  auto cleanup_fail = [&](const std::string& what) {
    std::error_code ec;
    fs::remove(tmp, ec);
    fail(P::kIo, path, what, "check free space and permissions");
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) cleanup_fail("cannot create " + tmp.string());
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((header.size() >> (8 * i)) & 0xff);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(header.data(), header.size());
    for (const auto& [name, t] : sorted) {
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
    }
    out.flush();
    if (!out) cleanup_fail("write failed");
  }
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  std::error_code ec;
  fs::rename(tmp, final_path, ec);
  if (ec) cleanup_fail("cannot rename " + tmp.string() + ": " + ec.message());
}

}  // namespace mmtune::io
