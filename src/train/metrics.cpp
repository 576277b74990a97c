#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include <c10/core/CachingDeviceAllocator.h>

#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/memory.h>
#include <mmtune/core/terminal.h>
#include <mmtune/core/strings.h>
#include <mmtune/train/metrics.h>

namespace mmtune::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

double per_second(int64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string sci(double v) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(2) << v;
  return s.str();
}

}  // namespace

std::string metrics_json_line(const StepMetrics& m) {
  json j = {{"step", m.step}, {"epoch", m.epoch}, {"loss", m.loss}};
  for (const auto& [name, v] : m.aux) j["aux_" + name] = v;
  j["lr"] = m.lr;
  j["grad_norm"] = m.grad_norm;
  j["skipped"] = m.skipped;
  j["samples"] = m.samples;
  j["tokens"] = m.tokens;
  j["supervised_tokens"] = m.supervised_tokens;
  j["step_s"] = m.step_seconds;
  j["samples_per_s"] = per_second(m.samples, m.step_seconds);
  j["tokens_per_s"] = per_second(m.tokens, m.step_seconds);
  if (m.peak_rss_bytes >= 0) j["peak_rss_bytes"] = m.peak_rss_bytes;
  if (m.peak_cuda_bytes >= 0) j["peak_cuda_bytes"] = m.peak_cuda_bytes;
  if (m.val_loss) j["val_loss"] = *m.val_loss;
  if (!m.stats.empty()) {
    json stats = json::object();
    for (const auto& [name, v] : m.stats) stats[name] = v;
    j["stats"] = std::move(stats);
  }
  return j.dump();  // non-finite numbers become null
}

int64_t peak_cuda_allocated_bytes(const torch::Device& device) {
  if (!device.is_cuda() || !torch::cuda::is_available()) return -1;
  const auto index = device.has_index() ? device.index() : static_cast<c10::DeviceIndex>(0);
  const auto stats = c10::getDeviceAllocator(c10::kCUDA)->getDeviceStats(index);
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
      .peak;
}

MetricsLog::MetricsLog(std::string path, int64_t keep_up_to_step) : path_(std::move(path)) {
  std::error_code ec;
  if (fs::path(path_).has_parent_path()) fs::create_directories(fs::path(path_).parent_path(), ec);
  std::string kept;
  if (keep_up_to_step >= 0) {
    std::ifstream in(path_);
    std::string line;
    while (std::getline(in, line)) {
      try {
        const json j = json::parse(line);
        if (j.at("step").get<int64_t>() <= keep_up_to_step) kept += line + "\n";
      } catch (const json::exception&) {
        // a line cut by a kill: dropped
      }
    }
  }
  f_ = std::fopen(path_.c_str(), "w");
  if (!f_) throw Error("cannot write " + path_, "check output_dir");
  std::fputs(kept.c_str(), f_);
  std::fflush(f_);
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const StepMetrics& m) {
  const std::string line = metrics_json_line(m) + "\n";
  if (std::fputs(line.c_str(), f_) < 0 || std::fflush(f_) != 0)
    throw Error("cannot write " + path_, "is the disk full?");
}

Progress::Progress(int64_t total_steps, int64_t first_step, int64_t log_every, bool tty)
    : total_(total_steps),
      first_(first_step),
      log_every_(std::max<int64_t>(log_every, 1)),
      tty_(tty),
      start_(std::chrono::steady_clock::now()) {}

std::string Progress::line(const StepMetrics& m) const {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t done = m.step - first_;
  const double eta =
      done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - m.step) : NAN;
  std::ostringstream o;
  o << "step " << m.step << "/" << total_ << " | epoch " << fixed(m.epoch, 2) << " | loss "
    << (m.skipped ? std::string("skipped (non-finite)") : fixed(m.loss, 4));
  for (const auto& [name, v] : m.aux) o << " | " << name << " " << fixed(v, 4);
  o << " | lr " << sci(m.lr) << " | grad_norm " << fixed(m.grad_norm, 3) << " | "
    << fixed(per_second(m.tokens, m.step_seconds), 0) << " tok/s | ETA " << format_duration(eta);
  if (m.val_loss) o << " | val_loss " << fixed(*m.val_loss, 4);
  return o.str();
}

void Progress::update(const StepMetrics& m) {
  if (tty_) {
    std::cerr << "\r\033[K" << line(m) << std::flush;
    drawn_ = true;
  } else if (m.step % log_every_ == 0 || m.step == total_ || m.val_loss) {
    log::info() << line(m);
  }
}

void Progress::finish() {
  if (tty_ && drawn_) std::cerr << "\n" << std::flush;
  drawn_ = false;
}

}  // namespace mmtune::train
