// safetensors: strict, memory-mapped reading and atomic writing (format in io/safetensors.h).
// A checkpoint is untrusted input: every header field is checked against the file before any byte
// becomes a tensor, so a corrupt or hostile file is a SafetensorsError, never a crash or a read
// outside the mapping (tests/fuzz/fuzz_safetensors.cpp holds us to that).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include <nlohmann/json.hpp>

#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/io/safetensors.h>

namespace mmtune::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using P = SafetensorsProblem;
using FileMap = std::map<std::string, std::shared_ptr<const SafetensorsFile>>;

// The format is little-endian and tensors view the mapped bytes as they are.
static_assert(std::endian::native == std::endian::little, "zero-copy safetensors needs a little-endian host");

constexpr uint64_t kMaxHeader = 100'000'000;  // the reference implementation's limit
constexpr uint64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kConvertHint =
    "convert it first: scripts/convert_meta_llama.py (Meta .pth), scripts/convert_openai_clip.py (OpenAI CLIP "
    ".pt), scripts/convert_llama2c.py (llama2.c .bin), or save_pretrained(..., safe_serialization=True)";

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
  uint64_t size;
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

// Names and parser messages come from untrusted headers (up to 100 MB): cap what goes into a message.
std::string capped(const std::string& s) { return s.size() <= 200 ? s : s.substr(0, 200) + "..."; }
std::string shown(const std::string& s) { return "'" + (s.size() <= 80 ? s : s.substr(0, 80) + "...") + "'"; }

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Reads a list of non-negative dimensions (a negative one is kBadShape, a non-integer kBadHeaderJson).
// The product of the non-zero dimensions, in bytes, must fit int64 (torch's size type): then no later
// numel or stride computation overflows, whatever the order of the dimensions.
std::vector<int64_t> parse_shape(const std::string& path, const std::string& name, const json& v, uint64_t elem) {
  if (!v.is_array()) fail(P::kBadHeaderJson, path, "tensor " + shown(name) + ": shape is not a list");
  std::vector<int64_t> shape;
  uint64_t bytes = elem;
  for (const json& d : v) {
    if (d.is_number_integer() && !d.is_number_unsigned())
      fail(P::kBadShape, path, cat("tensor ", shown(name), ": negative dimension ", d.get<int64_t>()));
    if (!d.is_number_unsigned()) fail(P::kBadHeaderJson, path, "tensor " + shown(name) + ": shape holds a non-integer");
    const uint64_t x = d.get<uint64_t>();
    if (x > kMaxInt64 || (x != 0 && bytes > kMaxInt64 / x))
      fail(P::kBadShape, path, "tensor " + shown(name) + ": the shape's size overflows int64");
    if (x != 0) bytes *= x;
    shape.push_back(static_cast<int64_t>(x));
  }
  return shape;
}

// One header entry: {"dtype": str, "shape": [n...], "data_offsets": [begin, end]}; data_len bounds
// the offsets (relative to the data section).
TensorInfo parse_entry(const std::string& path, const std::string& name, const json& e, uint64_t data_len) {
  const std::string what = "tensor " + shown(name);
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    fail(P::kBadHeaderJson, path, what + " needs dtype, shape and data_offsets");
  const json& dtype = e.at("dtype");
  const json& off = e.at("data_offsets");
  if (!dtype.is_string()) fail(P::kBadHeaderJson, path, what + ": dtype is not a string");
  const DtypeInfo* dt = dtype_by_name(dtype.get<std::string>());
  if (!dt)
    fail(P::kUnknownDtype, path, what + " has dtype " + shown(dtype.get<std::string>()),
         "supported: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL");
  TensorInfo info{dt->dtype, parse_shape(path, name, e.at("shape"), dt->size), 0, 0};
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    fail(P::kBadHeaderJson, path, what + ": data_offsets must be [begin, end], two non-negative integers");
  info.begin = off[0].get<uint64_t>();
  info.end = off[1].get<uint64_t>();
  if (info.begin > info.end || info.end > data_len)
    fail(
        P::kOffsetsOutOfRange, path,
        cat(what, ": data_offsets [", info.begin, ", ", info.end, "] outside the data section of ", data_len, " bytes"),
        "the file is truncated or corrupt; download or save it again");
  uint64_t numel = 1;  // fits: parse_shape bounded the product of the shape in bytes
  for (int64_t d : info.shape) numel *= static_cast<uint64_t>(d);
  if (numel * dt->size != info.end - info.begin)
    fail(P::kSizeMismatch, path,
         cat(what, ": ", dt->name, " x ", torch::IntArrayRef(info.shape), " needs ", numel * dt->size,
             " bytes, data_offsets span ", info.end - info.begin));
  return info;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& m) {
  if (!m.is_object()) fail(P::kBadHeaderJson, path, "__metadata__ is not an object");
  std::map<std::string, std::string> out;
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it->is_string())
      fail(P::kBadHeaderJson, path, "__metadata__ value of " + shown(it.key()) + " is not a string");
    out[it.key()] = it->get<std::string>();
  }
  return out;
}

// Two tensors sharing bytes would alias each other's storage; sorted by begin, any overlap shows up
// between neighbours. Empty tensors own no bytes.
void check_no_overlap(const std::string& path, const std::map<std::string, TensorInfo>& tensors) {
  std::vector<std::pair<uint64_t, const std::string*>> ranges;  // (begin, name)
  for (const auto& [name, info] : tensors) {
    if (info.end > info.begin) ranges.emplace_back(info.begin, &name);
  }
  std::sort(ranges.begin(), ranges.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < tensors.at(*ranges[i - 1].second).end)
      fail(P::kOverlap, path,
           "tensors " + shown(*ranges[i - 1].second) + " and " + shown(*ranges[i].second) + " share bytes");
  }
}

bool is_pickle_name(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".bin" || ext == ".pth" || ext == ".pt";
}

// Shards of an index are plain names next to it; anything else could read files outside the model.
bool is_plain_relative(const std::string& shard) {
  const fs::path p(shard);
  if (shard.empty() || p.is_absolute()) return false;
  return std::none_of(p.begin(), p.end(), [](const fs::path& part) { return part == ".."; });
}

json read_index(const std::string& index_path) {
  const std::string text =
      read_whole_file(index_path, kMaxMetadataFileBytes, "a safetensors index", [&](const FileProblem& p) {
        fail(p.kind == FileProblem::Kind::kTooLarge ? P::kBadIndex : P::kIo, index_path, p.message);
      });
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    fail(P::kBadIndex, index_path, "not JSON: " + capped(e.what()));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index.at("weight_map").is_object() ||
      index.at("weight_map").empty())
    fail(P::kBadIndex, index_path, "no non-empty \"weight_map\" object");
  if (index.contains("metadata") && !index.at("metadata").is_object())
    fail(P::kBadIndex, index_path, "\"metadata\" is not an object");
  return index;
}

// model.safetensors.index.json: every weight_map entry must name an existing shard that holds it.
void load_index(const fs::path& dir, FileMap& by_name) {
  const std::string index_path = (dir / kIndexName).string();
  const json index = read_index(index_path);
  FileMap shards;  // by shard file name: each shard is mapped once
  for (const auto& [name, shard_json] : index.at("weight_map").items()) {
    if (!shard_json.is_string() || !is_plain_relative(shard_json.get<std::string>()))
      fail(P::kBadIndex, index_path, "weight_map entry " + shown(name) + " is not a file name next to the index");
    const std::string shard = shard_json.get<std::string>();
    auto& file = shards[shard];
    if (!file) {
      std::error_code ec;
      if (!fs::is_regular_file(dir / shard, ec))
        fail(P::kBadIndex, index_path, "shard " + shown(shard) + " is missing", "download every shard of the model");
      file = SafetensorsFile::open((dir / shard).string());
    }
    if (!file->contains(name)) fail(P::kBadIndex, index_path, "tensor " + shown(name) + " is not in " + shown(shard));
    by_name[name] = file;
  }
}

// A directory without safetensors: say what to do when it holds pickles instead.
[[noreturn]] void fail_no_safetensors(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (is_pickle_name(it->path()))
      fail(P::kNotFound, dir.string(),
           "only pickle checkpoints here (" + it->path().filename().string() + "); mmtune reads safetensors only",
           kConvertHint);
  }
  fail(P::kNotFound, dir.string(), std::string("no model.safetensors or ") + kIndexName,
       "is this a Hugging Face model directory?");
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
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());  // private constructor: no make_shared
  f->path_ = path;
  f->map_file();  // from here on the destructor unmaps, whatever read_header() throws
  f->read_header();
  f->self_ = f;
  return f;
}

// Maps the whole file private copy-on-write: tensors view it without a copy and pages load on first
// touch, so opening a 13 GB checkpoint costs no memory until its weights are used, and a model can
// keep the file's pages as its weights. Writes (none expected) stay in this process. Shrinking
// the file while it is mapped is outside our control (SIGBUS on access), as for every mmap reader.
void SafetensorsFile::map_file() {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    fail(err == ENOENT || err == ENOTDIR ? P::kNotFound : P::kIo, path_, std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(P::kIo, path_, "not a regular file");
  }
  if (st.st_size < 8) {
    ::close(fd);
    fail(P::kTruncated, path_, cat("file has ", st.st_size, " bytes, fewer than the 8-byte header length"));
  }
  void* m = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file open
  if (m == MAP_FAILED) fail(P::kIo, path_, std::string("mmap failed: ") + std::strerror(err));
  map_ = m;
  map_size_ = static_cast<size_t>(st.st_size);
}

void SafetensorsFile::read_header() {
  const auto* bytes = static_cast<const unsigned char*>(map_);
  const uint64_t n = read_u64_le(bytes);
  // torch.save writes a zip archive ("PK\3\4") or, before torch 1.6, a raw pickle (0x80, protocol
  // 2..5): as a header length either is absurd, so say what the file is
  const bool zip = bytes[0] == 'P' && bytes[1] == 'K' && bytes[2] == 3 && bytes[3] == 4;
  const bool pickle = bytes[0] == 0x80 && bytes[1] >= 2 && bytes[1] <= 5;
  if (n > map_size_ - 8 && (zip || pickle))
    fail(P::kHeaderTooLarge, path_,
         std::string("looks like a PyTorch pickle (torch.save, ") + (zip ? "zip archive" : "raw pickle") +
             "), not safetensors; mmtune never unpickles",
         kConvertHint);
  if (n > kMaxHeader) fail(P::kHeaderTooLarge, path_, cat("header length ", n, " exceeds the 100 MB limit"));
  if (n > map_size_ - 8)
    fail(P::kTruncated, path_, cat("header length ", n, " but only ", map_size_ - 8, " bytes follow"),
         "the file is cut short; download or save it again");
  data_start_ = 8 + n;
  json h;
  try {
    h = json::parse(bytes + 8, bytes + data_start_);
  } catch (const json::exception& e) {
    fail(P::kBadHeaderJson, path_, "header is not JSON: " + capped(e.what()));
  }
  if (!h.is_object()) fail(P::kBadHeaderJson, path_, "header is not a JSON object");
  const uint64_t data_len = map_size_ - data_start_;
  for (const auto& [key, value] : h.items()) {
    if (key == "__metadata__") {
      metadata_ = parse_metadata(path_, value);
    } else {
      tensors_.emplace(key, parse_entry(path_, key, value, data_len));
    }
  }
  check_no_overlap(path_, tensors_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : tensors_) out.push_back(n);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(P::kMissingTensor, path_, "no tensor named " + shown(name));
  return it->second;
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& i = info(name);
  const auto options = torch::TensorOptions().dtype(i.dtype).device(torch::kCPU);
  if (i.end == i.begin) return torch::empty(i.shape, options);  // zero elements: no bytes to view
  char* data = static_cast<char*>(map_) + data_start_ + i.begin;
  // The deleter owns a reference to this file, so the mapping outlives every tensor viewing it.
  torch::Tensor view = torch::from_blob(data, i.shape, [keep = self_.lock()](void*) {}, options);
  // Kernels assume element-aligned data; a legal but odd offset gets an aligned copy instead.
  if (reinterpret_cast<uintptr_t>(data) % view.element_size() != 0) return view.clone();
  return view;
}

void SafetensorsFile::release(const std::string& name) const {
  const TensorInfo& i = info(name);
  // the whole pages inside the tensor's bytes (neighbours' pages are left alone)
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(map_) + data_start_ + i.begin;
  const auto end = reinterpret_cast<uintptr_t>(map_) + data_start_ + i.end;
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& dir_or_file) {
  SafetensorsCheckpoint c;
  c.path_ = dir_or_file;
  const fs::path p(dir_or_file);
  std::error_code ec;
  const fs::file_status st = fs::status(p, ec);
  if (st.type() == fs::file_type::none) fail(P::kIo, dir_or_file, ec.message());  // e.g. permission denied
  if (!fs::exists(st)) fail(P::kNotFound, dir_or_file, "no such file or directory");
  auto add_file = [&c](const std::string& file) {
    const auto f = SafetensorsFile::open(file);
    for (const auto& n : f->names()) c.by_name_[n] = f;
  };
  if (!fs::is_directory(st)) {
    if (is_pickle_name(p))
      fail(P::kNotFound, dir_or_file, "a pickle checkpoint; mmtune reads safetensors only", kConvertHint);
    add_file(dir_or_file);
  } else if (fs::exists(p / kIndexName, ec)) {
    load_index(p, c.by_name_);
  } else if (fs::exists(p / "model.safetensors", ec)) {
    add_file((p / "model.safetensors").string());
  } else {
    fail_no_safetensors(p);
  }
  return c;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : by_name_) out.push_back(n);
  return out;
}

bool SafetensorsCheckpoint::contains(const std::string& name) const {
  return by_name_.count(name) > 0;
}

const TensorInfo& SafetensorsCheckpoint::info(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) fail(P::kMissingTensor, path_, "no tensor named " + shown(name));
  return it->second->info(name);
}

torch::Tensor SafetensorsCheckpoint::tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) fail(P::kMissingTensor, path_, "no tensor named " + shown(name));
  return it->second->tensor(name);
}

void SafetensorsCheckpoint::release(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) fail(P::kMissingTensor, path_, "no tensor named " + shown(name));
  it->second->release(name);
}

namespace {

struct Entry {
  std::string name;
  torch::Tensor t;  // CPU, contiguous
  const DtypeInfo* dt;
};

// CPU contiguous copies (only where needed), sorted by name as the Python library writes them.
std::vector<Entry> prepare(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  std::vector<Entry> out;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail(P::kIo, path, "'__metadata__' is reserved and cannot name a tensor");
    const DtypeInfo* dt = dtype_by_torch(t.scalar_type());
    if (!dt)
      fail(P::kUnknownDtype, path, cat("tensor ", shown(name), " has dtype ", t.scalar_type(), ", not storable"));
    out.push_back({name, t.detach().to(torch::kCPU).contiguous(), dt});
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i].name == out[i - 1].name) fail(P::kIo, path, "tensor name " + shown(out[i].name) + " given twice");
  }
  return out;
}

// The 8-byte length plus the JSON header, padded with spaces so the data section starts 8-byte
// aligned (as the Python library does), which keeps every mapped tensor of ours element-aligned.
std::string build_header(const std::string& path, const std::vector<Entry>& entries,
                         const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    const uint64_t bytes = static_cast<uint64_t>(e.t.numel()) * e.dt->size;
    h[e.name] = {{"dtype", e.dt->name}, {"shape", e.t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const json::exception& e) {  // names and metadata must be valid UTF-8
    fail(P::kBadHeaderJson, path, std::string("cannot write the header: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  return out + text;
}

bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Writes the temp file completely and durably; returns what failed, or "" on success.
std::string write_temp(const std::string& tmp, const std::string& header, const std::vector<Entry>& entries) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return std::string("cannot create it: ") + std::strerror(errno);
  std::string err;
  auto check = [&err](bool ok, const char* what) {
    if (!ok && err.empty()) err = std::string(what) + " failed: " + std::strerror(errno);
  };
  check(write_all(fd, header.data(), header.size()), "write");
  for (const Entry& e : entries) {
    if (err.empty()) check(write_all(fd, static_cast<const char*>(e.t.data_ptr()), e.t.nbytes()), "write");
  }
  if (err.empty()) check(::fsync(fd) == 0, "fsync");
  check(::close(fd) == 0, "close");  // close may report a delayed write error
  return err;
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::vector<Entry> entries = prepare(path, tensors);
  const std::string header = build_header(path, entries, metadata);
  // Readers never see a half-written file: the temp sits in the same directory (same file system,
  // so rename is atomic) under a hidden name unique to this process and call.
  static std::atomic<uint64_t> counter{0};
  const fs::path final_path(path);
  const fs::path dir = final_path.parent_path();
  const std::string tmp =
      (dir / cat(".", final_path.filename().string(), ".tmp.", ::getpid(), ".", counter++)).string();
  std::string err = write_temp(tmp, header, entries);
  if (err.empty() && ::rename(tmp.c_str(), path.c_str()) != 0)
    err = std::string("rename into place failed: ") + std::strerror(errno);
  if (!err.empty()) {
    ::unlink(tmp.c_str());
    fail(P::kIo, path, "temp file " + tmp + ": " + err, "check that the directory exists, is writable and has space");
  }
  // The rename is durable only once the directory entry is; best effort (not every file system can).
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace mmtune::io
