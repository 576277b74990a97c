// What a run reports per optimiser step: one JSON line in <output_dir>/metrics.jsonl (rank 0), and
// progress for a person: a single self-updating line on a terminal (loss, tok/s, ETA; "\r"), plain
// log lines every train.log_every steps otherwise. scripts/plot_metrics.py draws the curves.
// A metrics.jsonl line (keys absent when they do not apply):
//   {"step": 12, "epoch": 0.48, "loss": 1.93, "aux_<name>": 0.01, "lr": 1e-3, "grad_norm": 0.8,
//    "skipped": false, "samples": 32, "tokens": 9000, "supervised_tokens": 1500, "step_s": 0.4,
//    "samples_per_s": 80, "tokens_per_s": 22500, "peak_rss_bytes": 1e9, "peak_cuda_bytes": 3e9,
//    "val_loss": 1.9, "stats": {"mole.llm.0.usage": [0.3, 0.5, 0.2], ...}}
// loss is the token mean over the global batch; tokens counts the real (non-padding) tokens of
// all ranks. stats holds the task's runtime::StepLoss::stats (runtime/task.h), each averaged element-wise over
// the global batch's micro-batches; the progress line leaves them out.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace mmtune::train {

inline constexpr const char* kMetricsFile = "metrics.jsonl";

struct StepMetrics {
  int64_t step = 0;                                 // 1-based optimiser step just done
  double epoch = 0.0;                               // fractional epoch reached
  double loss = 0.0;                                // NaN/inf on a skipped step
  std::vector<std::pair<std::string, double>> aux;  // mean over the global batch's micro-batches
  std::vector<std::pair<std::string, std::vector<double>>> stats;  // likewise, element-wise
  double lr = 0.0;
  double grad_norm = 0.0;  // before clipping
  bool skipped = false;    // non-finite loss or gradient: no update
  int64_t samples = 0, tokens = 0, supervised_tokens = 0;
  double step_seconds = 0.0;
  int64_t peak_rss_bytes = -1;   // -1: unknown
  int64_t peak_cuda_bytes = -1;  // -1: not on CUDA
  std::optional<double> val_loss;
};

/// The JSON line (no newline) for `m`.
std::string metrics_json_line(const StepMetrics& m);

/// Peak bytes allocated by torch's caching allocator on `device` since the start (or -1 when the
/// device is not CUDA). Works in CPU-only builds and machines (returns -1 there).
int64_t peak_cuda_allocated_bytes(const torch::Device& device);

/// Appends metrics lines to a file, flushed after each line.
class MetricsLog {
 public:
  /// keep_up_to_step < 0: start a new file. Otherwise (a resumed run) keep the existing lines with
  /// step <= keep_up_to_step, drop the rest (steps a killed run did after its checkpoint) and
  /// append after them. Throws mmtune::Error with a hint when the file cannot be written.
  explicit MetricsLog(std::string path, int64_t keep_up_to_step = -1);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const StepMetrics& m);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

/// Progress for a person (rank 0 only).
class Progress {
 public:
  /// `tty`: redraw one line on stderr with "\r"; otherwise a log::info line every `log_every` steps
  /// (and at the last step).
  Progress(int64_t total_steps, int64_t first_step, int64_t log_every, bool tty);
  void update(const StepMetrics& m);
  /// Ends the redrawn line (newline) on a TTY.
  void finish();
  /// The text of the progress line for `m` (used by both modes).
  std::string line(const StepMetrics& m) const;

 private:
  int64_t total_, first_, log_every_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace mmtune::train
