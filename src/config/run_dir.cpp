#include <mmtune/config/load.h>
#include <mmtune/config/run_dir.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

namespace mmtune::config {

namespace fs = std::filesystem;

std::string prepare_run_dir(const RunConfig& config, int rank) {
  if (rank == 0) save_resolved_config(config, config.output_dir);  // creates the directory
  const std::string log_path =
      config.output_dir + (rank == 0 ? "/mmtune.log" : "/mmtune.rank" + std::to_string(rank) + ".log");
  log::add_file(log_path);
  log::info() << "output directory " << config.output_dir << " (resolved config in config.yaml)";
  return log_path;
}

RunDirLock::RunDirLock(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create output directory " + dir + ": " + ec.message(), "check output_dir");
  const std::string path = (fs::path(dir) / ".mmtune.lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error("cannot open " + path + ": " + std::strerror(errno), "check the permissions of output_dir");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    char buf[64] = {};
    if (::pread(fd_, buf, sizeof(buf) - 1, 0) > 0) holder = std::string(buf).substr(0, std::string(buf).find('\n'));
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw Error("output_dir " + dir + " is in use by another mmtune run" +
                      (holder.empty() ? std::string() : " (pid " + holder + ")"),
                  "wait for that run to end, or set output_dir to another directory");
    throw Error("cannot lock " + path + ": " + std::strerror(err), "check output_dir's file system");
  }
  // the holder's pid, for the message a second run prints (informative only: the flock is the lock)
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0)
    log::warn() << "could not write the pid into " << path;
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

std::vector<std::string> previous_run_entries(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (std::string_view(name).starts_with("checkpoint-") && e.is_directory(ec))
      found.push_back(name);
    else if (name == "metrics.jsonl" && e.is_regular_file(ec) && e.file_size(ec) > 0)
      found.push_back(name);
  }
  std::sort(found.begin(), found.end());
  return found;
}

void claim_run_dir(const std::string& dir, bool resuming, bool overwrite) {
  if (resuming) return;
  const auto found = previous_run_entries(dir);
  if (found.empty()) return;
  if (!overwrite) {
    std::string list;
    for (size_t i = 0; i < found.size() && i < 4; ++i) list += (i ? ", " : "") + found[i];
    if (found.size() > 4) list += ", ... (" + std::to_string(found.size()) + " in all)";
    throw UsageError("output_dir " + dir + " already holds a training run (" + list + ")",
                     "pass --resume to continue it, set output_dir to a new directory, or pass --overwrite to "
                     "delete that run's checkpoints and metrics first");
  }
  for (const auto& name : found) {
    std::error_code ec;
    fs::remove_all(fs::path(dir) / name, ec);
    if (ec) throw Error("cannot delete " + (fs::path(dir) / name).string() + ": " + ec.message(), "check output_dir");
  }
  log::warn() << "--overwrite: deleted the earlier run's " << found.size() << " checkpoint/metrics entries in " << dir;
}

}  // namespace mmtune::config
