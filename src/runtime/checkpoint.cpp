#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdio.h>
#include <thread>
#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/core/version.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/checkpoint.h>

namespace mmtune::runtime {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kTempPrefix = ".tmp-checkpoint-";
constexpr const char* kFormat = "mmtune.trainer_state";
constexpr int kFormatVersion = 1;

/// The step of a "checkpoint-<digits>" directory name, or -1.
int64_t step_of(const std::string& name) {
  const std::string prefix = kCheckpointPrefix;
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return -1;
  const std::string digits = name.substr(prefix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      digits.size() > 18)
    return -1;
  return std::stoll(digits);
}

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return;  // best effort for directories on file systems that refuse it
  ::fsync(fd);
  ::close(fd);
}

void write_file_synced(const fs::path& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    throw CheckpointError(path.string(), std::string("cannot create: ") + std::strerror(errno),
                          "check output_dir");
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string err = std::strerror(errno);
      ::close(fd);
      throw CheckpointError(path.string(), "write failed: " + err, "is the disk full?");
    }
    done += static_cast<size_t>(n);
  }
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok)
    throw CheckpointError(path.string(), std::string("fsync failed: ") + std::strerror(errno),
                          "is the disk full?");
}

std::string read_file(const fs::path& path) {
  return read_checkpoint_file(path, "the checkpoint is incomplete; resume from another one", kMaxMetadataFileBytes);
}

json state_to_json(const TrainerState& s, const std::vector<std::string>& rng_names) {
  const auto& sc = s.schedule;
  return json{{"format", kFormat},
              {"version", kFormatVersion},
              {"mmtune_version", kVersion},
              {"step", s.step},
              {"epoch", s.epoch},
              {"position", {{"epoch", s.position.epoch}, {"batch", s.position.batch}}},
              {"skipped_steps", s.skipped_steps},
              {"world_size", s.world_size},
              {"micro_batch_size", s.micro_batch_size},
              {"global_batch_size", s.global_batch_size},
              {"accumulation", s.accumulation},
              {"seed", s.seed},
              {"lr", s.lr},
              {"schedule",
               {{"lr", sc.lr},
                {"min_lr", sc.min_lr},
                {"warmup_epochs", sc.warmup_epochs},
                {"total_epochs", sc.total_epochs},
                {"kind", sc.cosine ? "cosine" : "constant"}}},
              {"rng_tensors", rng_names},
              {"config_yaml", s.config_yaml}};
}

TrainerState state_from_json(const json& j, const std::string& path) {
  const bool ours = j.is_object() && j.contains("format") && j["format"].is_string() && j["format"] == kFormat;
  if (!ours) {
    throw CheckpointError(
        path, "not an mmtune trainer state (no \"format\": \"mmtune.trainer_state\")",
        "point --resume at a checkpoint-<step> directory written by mmtune train");
  }
  const json version = j.value("version", json(0));
  if (!version.is_number_integer()) {
    throw CheckpointError(path, "malformed trainer state: version must be an integer, got " + version.dump(),
                          "the file was edited or truncated; resume from another checkpoint");
  }
  if (version.get<int64_t>() > kFormatVersion) {
    throw CheckpointError(path,
                          cat("trainer state version ", version.get<int64_t>(),
                              " is newer than this mmtune reads (", kFormatVersion, ")"),
                          "resume with the mmtune version that wrote it");
  }
  TrainerState s;
  try {
    s.step = j.at("step").get<int64_t>();
    s.epoch = j.at("epoch").get<double>();
    s.position.epoch = j.at("position").at("epoch").get<int64_t>();
    s.position.batch = j.at("position").at("batch").get<int64_t>();
    s.skipped_steps = j.at("skipped_steps").get<int64_t>();
    s.world_size = j.at("world_size").get<int64_t>();
    s.micro_batch_size = j.at("micro_batch_size").get<int64_t>();
    s.global_batch_size = j.at("global_batch_size").get<int64_t>();
    s.accumulation = j.at("accumulation").get<int64_t>();
    s.seed = j.at("seed").get<uint64_t>();
    s.lr = j.at("lr").get<double>();
    const json& sc = j.at("schedule");
    s.schedule.lr = sc.at("lr").get<double>();
    s.schedule.min_lr = sc.at("min_lr").get<double>();
    s.schedule.warmup_epochs = sc.at("warmup_epochs").get<double>();
    s.schedule.total_epochs = sc.at("total_epochs").get<double>();
    s.schedule.cosine = sc.at("kind").get<std::string>() == "cosine";
    s.config_yaml = j.at("config_yaml").get<std::string>();
  } catch (const json::exception& e) {
    throw CheckpointError(path, std::string("malformed trainer state: ") + e.what(),
                          "the file was edited or truncated; resume from another checkpoint");
  }
  return s;
}

void maybe_pause(int64_t step) {
  const char* v = std::getenv(kPauseCheckpointEnv);
  if (!v || !*v) return;
  const std::string spec = v;
  const auto at = spec.find('@');
  if (at != std::string::npos && std::stoll(spec.substr(at + 1)) != step) return;
  const double seconds = std::stod(spec.substr(0, at));
  log::warn() << "test fault injection: pausing the write of checkpoint " << step << " for "
              << seconds << " s (" << kPauseCheckpointEnv << ")";
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

void prune(const fs::path& out, int64_t keep_last) {
  std::vector<std::pair<int64_t, fs::path>> found;
  for (const auto& e : fs::directory_iterator(out)) {
    const int64_t s = e.is_directory() ? step_of(e.path().filename().string()) : -1;
    if (s >= 0) found.emplace_back(s, e.path());
  }
  std::sort(found.begin(), found.end());
  for (size_t i = 0; i + static_cast<size_t>(std::max<int64_t>(keep_last, 1)) < found.size(); ++i) {
    std::error_code ec;
    fs::remove_all(found[i].second, ec);
    if (ec)
      log::warn() << "cannot remove old checkpoint " << found[i].second.string() << ": "
                  << ec.message();
  }
}

}  // namespace

int64_t checkpoint_step(const std::string& dir) {
  fs::path p(dir);
  if (!p.has_filename()) p = p.parent_path();  // a trailing slash
  return step_of(p.filename().string());
}

int remove_stale_checkpoint_temps(const std::string& output_dir) {
  int removed = 0;
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return 0;
  for (const auto& e : fs::directory_iterator(output_dir, ec)) {
    if (e.path().filename().string().rfind(kTempPrefix, 0) != 0) continue;
    std::error_code rec;
    fs::remove_all(e.path(), rec);
    if (!rec) ++removed;
  }
  if (removed)
    log::info() << "removed " << removed << " half-written checkpoint(s) in " << output_dir;
  return removed;
}

std::string save_checkpoint(const std::string& output_dir, const Checkpoint& ckpt,
                            int64_t keep_last) {
  const fs::path out(output_dir);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec)
    throw CheckpointError(output_dir, "cannot create the output directory: " + ec.message(),
                          "check output_dir");
  remove_stale_checkpoint_temps(output_dir);
  const int64_t step = ckpt.state.step;
  const fs::path tmp = out / cat(kTempPrefix, step, "-", ::getpid());
  const fs::path final_dir = out / cat(kCheckpointPrefix, step);
  fs::create_directories(tmp, ec);
  if (ec) throw CheckpointError(tmp.string(), "cannot create: " + ec.message(), "check output_dir");

  io::save_safetensors((tmp / kAdapterWeightsFile).string(), ckpt.weights, {{"format", "pt"}});
  maybe_pause(step);
  NamedTensors tensors(ckpt.tensors.begin(), ckpt.tensors.end());
  io::save_safetensors((tmp / kTrainerStateTensorsFile).string(), tensors, {{"format", "pt"}});
  if (!ckpt.adapter_config_json.empty())
    write_file_synced(tmp / kAdapterConfigFile, ckpt.adapter_config_json);
  std::vector<std::string> rng_names;
  for (const auto& [name, t] : ckpt.tensors) {
    if (name.rfind("rng.", 0) == 0) rng_names.push_back(name);
  }
  write_file_synced(tmp / kTrainerStateJsonFile,
                    state_to_json(ckpt.state, rng_names).dump(2) + "\n");
  fsync_path(tmp, true);

  if (fs::exists(final_dir)) {
    // Same step written again (a resumed run re-saving): swap atomically, then drop the old one.
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) != 0) {
      throw CheckpointError(final_dir.string(),
                            std::string("cannot replace: ") + std::strerror(errno),
                            "remove the old directory by hand");
    }
    fs::remove_all(tmp, ec);
  } else if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    fs::remove_all(tmp, ec);
    throw CheckpointError(final_dir.string(), "cannot rename the temp directory into place: " + err,
                          "check output_dir");
  }
  fsync_path(out, true);
  prune(out, keep_last);
  return final_dir.string();
}

bool is_complete_checkpoint(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::is_regular_file(d / kAdapterWeightsFile, ec) ||
      !fs::is_regular_file(d / kTrainerStateTensorsFile, ec))
    return false;
  try {
    state_from_json(json::parse(read_file(d / kTrainerStateJsonFile)),
                    (d / kTrainerStateJsonFile).string());
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

Checkpoint load_checkpoint(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::is_directory(d, ec)) {
    throw CheckpointError(
        dir, "no such checkpoint directory",
        "pass a checkpoint-<step> directory of a run's output_dir, or --resume latest");
  }
  Checkpoint c;
  c.dir = dir;
  const fs::path state_path = d / kTrainerStateJsonFile;
  json j;
  try {
    j = json::parse(read_file(state_path));
  } catch (const json::exception& e) {
    throw CheckpointError(state_path.string(), std::string("not valid JSON: ") + e.what(),
                          "the file is corrupt; resume from an earlier checkpoint");
  }
  c.state = state_from_json(j, state_path.string());
  try {
    auto weights = io::SafetensorsFile::open((d / kAdapterWeightsFile).string());
    for (const auto& name : weights->names())
      c.weights.emplace_back(name, weights->tensor(name).clone());
    auto state = io::SafetensorsFile::open((d / kTrainerStateTensorsFile).string());
    for (const auto& name : state->names()) c.tensors.emplace(name, state->tensor(name).clone());
  } catch (const io::SafetensorsError& e) {
    throw CheckpointError(
        e.path(), std::string(e.what()).substr(e.path().size() + 2),
        e.hint().empty() ? "the checkpoint is damaged; resume from an earlier checkpoint-<step>"
                         : e.hint());
  }
  if (fs::exists(d / kAdapterConfigFile)) c.adapter_config_json = read_file(d / kAdapterConfigFile);
  return c;
}

std::optional<std::string> find_latest_checkpoint(const std::string& output_dir) {
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return std::nullopt;
  std::vector<std::pair<int64_t, fs::path>> found;
  for (const auto& e : fs::directory_iterator(output_dir, ec)) {
    const int64_t s = e.is_directory() ? step_of(e.path().filename().string()) : -1;
    if (s >= 0) found.emplace_back(s, e.path());
  }
  std::sort(found.rbegin(), found.rend());
  for (const auto& [s, p] : found) {
    if (is_complete_checkpoint(p.string())) return p.string();
    log::warn() << "skipping incomplete checkpoint " << p.string();
  }
  return std::nullopt;
}

std::string resolve_checkpoint(const std::string& output_dir, const std::string& spec) {
  if (spec == "latest") {
    auto latest = find_latest_checkpoint(output_dir);
    if (!latest) {
      throw CheckpointError(output_dir, "no complete checkpoint-<step> directory to resume from",
                            "train without --resume, or name a checkpoint directory");
    }
    return *latest;
  }
  if (!fs::is_directory(spec)) {
    throw CheckpointError(spec, "no such checkpoint directory",
                          "--resume takes 'latest' or a checkpoint-<step> directory");
  }
  if (!is_complete_checkpoint(spec)) {
    throw CheckpointError(
        spec, "incomplete checkpoint (a required file is missing or trainer_state.json is corrupt)",
        "resume from an earlier checkpoint, or --resume latest");
  }
  return spec;
}

NamedTensors capture_rng_state(const std::string& suffix) {
  NamedTensors out;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    out.emplace_back("rng.torch_cpu" + suffix, gen.get_state());
  }
  if (torch::cuda::is_available()) {
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
      auto gen = at::globalContext().defaultGenerator(
          c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(gen.mutex());
      out.emplace_back(cat("rng.torch_cuda.", i, suffix), gen.get_state());
    }
  }
  return out;
}

bool restore_rng_state(const std::map<std::string, torch::Tensor>& tensors,
                       const std::string& suffix) {
  auto cpu = tensors.find("rng.torch_cpu" + suffix);
  if (cpu == tensors.end()) return false;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(cpu->second.contiguous());
  }
  if (torch::cuda::is_available()) {
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
      auto it = tensors.find(cat("rng.torch_cuda.", i, suffix));
      if (it == tensors.end()) continue;
      auto gen = at::globalContext().defaultGenerator(
          c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(it->second.contiguous());
    }
  }
  return true;
}

}  // namespace mmtune::runtime
