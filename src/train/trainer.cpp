#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <mmtune/core/terminal.h>
#include <mmtune/core/memory.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/signals.h>
#include <mmtune/core/strings.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/train/autocast.h>
#include <mmtune/train/trainer.h>

namespace mmtune::train {
namespace {

int64_t real_tokens(const data::Batch& b) {
  if (b.attention_mask.defined()) return b.attention_mask.sum().item<int64_t>();
  return b.tokens.defined() ? b.tokens.numel() : 0;
}

std::string rank_suffix(int r) {
  return cat(".rank", r);
}

/// Adds one micro-batch's runtime::StepLoss::stats to the flattened sums; the first one (`first`) fixes the
/// names and lengths, the later ones must match them.
void accumulate_stats(const runtime::NamedTensors& stats, bool first, std::vector<std::string>& names,
                      std::vector<size_t>& at, std::vector<double>& sum) {
  if (first) {
    for (const auto& [name, t] : stats) {
      names.push_back(name);
      at.push_back(at.back() + static_cast<size_t>(t.numel()));
    }
    sum.assign(at.back(), 0.0);
  }
  TORCH_CHECK(stats.size() == names.size(), "TrainTask::forward returned ", stats.size(), " stats after ",
              names.size(), " earlier in the step");
  for (size_t i = 0; i < stats.size(); ++i) {
    const torch::Tensor v = stats[i].second.detach().to(torch::kCPU, torch::kFloat64).contiguous().view({-1});
    TORCH_CHECK(stats[i].first == names[i] && static_cast<size_t>(v.numel()) == at[i + 1] - at[i],
                "TrainTask::forward returned stat '", stats[i].first, "' [", v.numel(), "] where an earlier micro-batch had '",
                names[i], "' [", at[i + 1] - at[i], "]");
    const double* p = v.data_ptr<double>();
    for (size_t k = at[i]; k < at[i + 1]; ++k) sum[k] += p[k - at[i]];
  }
}

}  // namespace

Trainer::Trainer(runtime::TrainTask& task, runtime::BatchSource& data, const config::RunConfig& cfg, runtime::ProcessGroup* pg,
                 TrainerHooks hooks)
    : task_(task), data_(data), cfg_(cfg), pg_(pg), hooks_(std::move(hooks)) {
  const auto& t = cfg.train;
  if (pg_) {
    rank_ = pg_->rank();
    world_ = pg_->size();
  }
  const int64_t per_step = t.micro_batch_size * world_;
  if (per_step <= 0 || t.global_batch_size % per_step != 0) {
    throw Error(cat("train.global_batch_size (", t.global_batch_size,
                    ") is not a multiple of train.micro_batch_size x ranks (", t.micro_batch_size,
                    " x ", world_, " = ", per_step, ")"),
                cat("pick a global batch that is a multiple of ", per_step,
                    ", or change micro_batch_size or the number of ranks"));
  }
  accumulation_ = t.global_batch_size / per_step;
  device_ = torch::Device(cfg.device);
  params_ = task_.trainable_parameters();
  if (params_.empty()) {
    throw Error("the model has no trainable parameters",
                "set adapter.family, or train.trainable: all for full fine-tuning");
  }
  optim_ = std::make_unique<AdamW>(params_, AdamWOptions::from_config(t));
  sync_ = std::make_unique<GradSync>(pg_, params_);
  const int64_t bpe = data_.batches_per_epoch();
  state_.schedule =
      runtime::LrSchedule::from_config(t, bpe, accumulation_);  // throws when an epoch < one step
  steps_per_epoch_ = bpe / accumulation_;
  total_steps_ = t.epochs * steps_per_epoch_;
  if (t.max_steps > 0) total_steps_ = std::min(total_steps_, t.max_steps);
  state_.world_size = world_;
  state_.micro_batch_size = t.micro_batch_size;
  state_.global_batch_size = t.global_batch_size;
  state_.accumulation = accumulation_;
  state_.seed = static_cast<uint64_t>(cfg.seed);
  state_.config_yaml = config::to_yaml(cfg);
  state_.position = data_.position();
}

void Trainer::resume(const std::string& checkpoint_dir) {
  runtime::Checkpoint c = runtime::load_checkpoint(checkpoint_dir);
  restore_weights(c, checkpoint_dir);
  optim_->load_state_tensors(c.tensors, checkpoint_dir + "/" + runtime::kTrainerStateTensorsFile);
  const runtime::TrainerState& s = c.state;
  check_resumable(s, checkpoint_dir);
  state_.step = s.step;
  state_.epoch = s.epoch;
  state_.skipped_steps = s.skipped_steps;
  state_.lr = s.lr;
  // The position in this run's micro-batches: whole steps of the saved run, times our accumulation.
  state_.position = {s.position.epoch, s.position.batch / s.accumulation * accumulation_};
  if (!runtime::restore_rng_state(c.tensors, rank_suffix(rank_))) {
    torch::manual_seed(static_cast<uint64_t>(cfg_.seed) + static_cast<uint64_t>(rank_) +
                       static_cast<uint64_t>(s.step));
    log::warn() << "checkpoint has no RNG state for rank " << rank_ << ": reseeded";
  }
  resumed_ = true;
  last_saved_step_ = s.step;
  log::info() << "resumed from " << checkpoint_dir << " at step " << s.step << " (epoch " << s.epoch
              << ")";
}

void Trainer::restore_weights(const runtime::Checkpoint& c, const std::string& checkpoint_dir) {
  // exactly the trainable set, with the same shapes
  std::map<std::string, torch::Tensor> saved(c.weights.begin(), c.weights.end());
  std::vector<std::string> problems;
  for (const auto& [name, p] : params_) {
    auto it = saved.find(name);
    if (it == saved.end())
      problems.push_back("missing " + name);
    else if (it->second.sizes() != p.sizes())
      problems.push_back(cat(name, " has shape ", it->second.sizes(), ", the model ", p.sizes()));
  }
  std::set<std::string> names;
  for (const auto& [name, p] : params_) names.insert(name);
  for (const auto& [name, t] : saved) {
    if (!names.count(name)) problems.push_back("unexpected " + name);
  }
  if (!problems.empty()) {
    throw CheckpointError(
        checkpoint_dir + "/" + runtime::kAdapterWeightsFile,
        cat("the weights do not fit the trainable parameters (", problems.size(), " problems: ",
            join(std::vector<std::string>(problems.begin(),
                                          problems.begin() + std::min<size_t>(problems.size(), 8)),
                 "; "),
            ")"),
        "resume with the config the checkpoint was trained with (its trainer_state.json holds it)");
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : params_) p.copy_(saved.at(name));
}

void Trainer::check_resumable(const runtime::TrainerState& s, const std::string& checkpoint_dir) const {
  if (s.global_batch_size != cfg_.train.global_batch_size) {
    throw CheckpointError(
        checkpoint_dir,
        "the checkpoint was trained with train.global_batch_size " +
            std::to_string(s.global_batch_size),
        "keep train.global_batch_size when resuming (the sampler position counts global batches)");
  }
  if (s.world_size != world_ || s.micro_batch_size != cfg_.train.micro_batch_size) {
    log::warn() << "resuming a run of " << s.world_size << " ranks x micro-batch "
                << s.micro_batch_size << " with " << world_ << " x " << cfg_.train.micro_batch_size
                << ": the steps see the same samples, but the losses will not be bitwise those "
                   "of the original run";
  }
  const runtime::LrSchedule& now = state_.schedule;
  if (s.schedule.lr != now.lr || s.schedule.min_lr != now.min_lr ||
      s.schedule.warmup_epochs != now.warmup_epochs ||
      s.schedule.total_epochs != now.total_epochs || s.schedule.cosine != now.cosine) {
    log::warn() << "the learning-rate schedule differs from the checkpoint's (the config "
                   "changed): continuing with the new one";
  }
  if (auto latest = runtime::find_latest_checkpoint(cfg_.output_dir);
      latest && runtime::checkpoint_step(*latest) > s.step) {
    log::warn() << *latest << " is later than the checkpoint resumed from; the checkpoints "
                << "this run writes will replace or prune it";
  }
}

std::vector<double> Trainer::all_reduce(std::vector<double> values, const std::string& what) {
  if (!pg_ || world_ == 1 || values.empty()) return values;
  torch::Tensor t = torch::tensor(values, torch::kFloat64);
  if (pg_->backend_name() == "nccl") t = t.to(device_);
  all_reduce_sum_checked(*pg_, t, what);
  t = t.cpu().contiguous();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void Trainer::drain_epoch_if_short() {
  const auto pos = data_.position();
  if (pos.batch + accumulation_ <= data_.batches_per_epoch()) return;
  while (data_.next()) {
  }  // leftover micro-batches that cannot fill a step; next() ends the epoch
}

data::LoaderPosition Trainer::take_step_batches(std::vector<data::Batch>& out) {
  out.clear();
  drain_epoch_if_short();
  const data::LoaderPosition start = data_.position();
  const int64_t epoch = start.epoch;
  for (int64_t i = 0; i < accumulation_; ++i) {
    auto b = data_.next();
    if (!b || data_.position().epoch != epoch) {
      throw Error(cat("the data source ended epoch ", epoch, " after ", data_.position().batch,
                      " batches, not at its batches_per_epoch (", data_.batches_per_epoch(), ")"),
                  "a BatchSource must yield batches_per_epoch() batches every epoch");
    }
    out.push_back(std::move(*b));
  }
  return start;
}

// runtime::StepLoss::stats are flattened in order: name i covers stat_sum[stat_at[i], stat_at[i + 1]).
struct Trainer::StepSums {
  double loss = 0.0;
  std::vector<std::string> aux_names;
  std::vector<double> aux;
  std::vector<std::string> stat_names;
  std::vector<size_t> stat_at{0};
  std::vector<double> stat_sum;
  double stat_micro = 0.0;  // micro-batches that reported their stats
};

StepMetrics Trainer::run_step(std::vector<data::Batch>& micro, double lr, double global_tokens) {
  StepMetrics m;
  m.lr = lr;
  optim_->zero_grad();
  const double n_micro = static_cast<double>(accumulation_ * world_);
  const StepSums sums = accumulate(micro, global_tokens, n_micro);
  const bool finite = reduce_sums(sums, global_tokens, n_micro, m);
  update(finite, lr, m);
  optim_->zero_grad();
  return m;
}

Trainer::StepSums Trainer::accumulate(std::vector<data::Batch>& micro, double global_tokens, double n_micro) {
  StepSums s;
  const bool bf16 = cfg_.train.precision == "bf16";
  for (auto& b : micro) {
    if (b.size() == 0) continue;  // every sample of it was skipped by the loader
    runtime::StepLoss sl;
    {
      AutocastScope autocast(bf16, device_.type());
      sl = task_.forward(b);
    }
    TORCH_CHECK(sl.loss_sum.defined() && sl.loss_sum.numel() == 1,
                "TrainTask::forward must return a scalar loss_sum");
    // the objective in fp32 (fp64 when the model is: the numerical checks)
    const auto fdt = torch::promote_types(sl.loss_sum.scalar_type(), torch::kFloat32);
    torch::Tensor objective = sl.loss_sum.to(fdt) / global_tokens;
    if (s.aux_names.empty()) {
      for (const auto& [name, t] : sl.aux) s.aux_names.push_back(name), s.aux.push_back(0.0);
    }
    TORCH_CHECK(sl.aux.size() == s.aux_names.size(), "TrainTask::forward returned ", sl.aux.size(),
                " aux losses after ", s.aux_names.size(), " earlier in the step");
    for (size_t i = 0; i < sl.aux.size(); ++i) {
      objective = objective + sl.aux[i].second.to(fdt) / n_micro;
      s.aux[i] += sl.aux[i].second.detach().item<double>();
    }
    objective.backward();
    s.loss += sl.loss_sum.detach().item<double>();
    accumulate_stats(sl.stats, s.stat_micro == 0.0, s.stat_names, s.stat_at, s.stat_sum);
    s.stat_micro += 1.0;
  }
  return s;
}

bool Trainer::reduce_sums(const StepSums& s, double global_tokens, double n_micro, StepMetrics& m) {
  // Every rank must agree on the number of aux losses and stat values before summing them.
  const auto counts = all_reduce(
      {s.loss, static_cast<double>(s.aux_names.size()), static_cast<double>(s.stat_sum.size())},
      "all-reducing the loss");
  if (counts[1] != static_cast<double>(s.aux_names.size() * static_cast<size_t>(world_))) {
    throw Error(cat("rank ", rank_, " has ", s.aux_names.size(), " aux losses, the ranks disagree"),
                "every TrainTask::forward must return the same aux losses");
  }
  if (counts[2] != static_cast<double>(s.stat_sum.size() * static_cast<size_t>(world_))) {
    throw Error(cat("rank ", rank_, " has ", s.stat_sum.size(), " stat values, the ranks disagree"),
                "every TrainTask::forward must return the same stats");
  }
  // one collective for the aux losses, the stat values and the count of micro-batches that reported
  // them (the counts above agree, so the layouts do)
  std::vector<double> sums = s.aux;
  sums.insert(sums.end(), s.stat_sum.begin(), s.stat_sum.end());
  if (!s.stat_sum.empty()) sums.push_back(s.stat_micro);
  const auto reduced = all_reduce(std::move(sums), "all-reducing aux losses and stats");
  const std::vector<double> aux(reduced.begin(), reduced.begin() + static_cast<std::ptrdiff_t>(s.aux.size()));
  if (!s.stat_sum.empty()) {
    const auto st = reduced.begin() + static_cast<std::ptrdiff_t>(s.aux.size());
    const double n = reduced.back();
    for (size_t i = 0; i < s.stat_names.size(); ++i) {
      std::vector<double> v(st + static_cast<std::ptrdiff_t>(s.stat_at[i]), st + static_cast<std::ptrdiff_t>(s.stat_at[i + 1]));
      for (double& x : v) x /= n;
      m.stats.emplace_back(s.stat_names[i], std::move(v));
    }
  }
  m.loss = counts[0] / global_tokens;
  bool finite = std::isfinite(m.loss) && global_tokens > 0;
  for (size_t i = 0; i < s.aux_names.size(); ++i) {
    m.aux.emplace_back(s.aux_names[i], aux[i] / n_micro);
    finite = finite && std::isfinite(aux[i]);
  }
  return finite;
}

void Trainer::update(bool finite, double lr, StepMetrics& m) {
  m.grad_norm = NAN;
  if (finite) {
    sync_->all_reduce_gradients();
    m.grad_norm = clip_grad_norm(params_, cfg_.train.clip_grad);
    finite = std::isfinite(m.grad_norm);
  }
  if (finite) optim_->step(lr);
  m.skipped = !finite;
}

double Trainer::validation_loss() {
  task_.set_training(false);
  double sum = 0.0, tokens = 0.0;
  {
    torch::NoGradGuard no_grad;
    while (auto b = val_->next()) {  // one epoch of the validation source
      if (b->size() == 0) continue;
      AutocastScope autocast(cfg_.train.precision == "bf16", device_.type());
      sum += task_.forward(*b).loss_sum.item<double>();
      tokens += static_cast<double>(b->supervised_tokens);
    }
  }
  task_.set_training(true);
  const auto r = all_reduce({sum, tokens}, "all-reducing the validation loss");
  return r[1] > 0 ? r[0] / r[1] : NAN;
}

std::string Trainer::save() {
  // Every rank's RNG state goes into rank 0's file: gather by summing zero-padded rows.
  runtime::NamedTensors rng = runtime::capture_rng_state();
  std::map<std::string, torch::Tensor> tensors;
  for (auto& [name, st] : rng) {
    torch::Tensor rows = torch::zeros({world_, st.numel()}, torch::kInt32);
    rows[rank_].copy_(st.to(torch::kInt32));
    if (world_ > 1) {
      if (pg_->backend_name() == "nccl") rows = rows.to(device_);
      all_reduce_sum_checked(*pg_, rows, "gathering RNG states");
      rows = rows.cpu();
    }
    for (int r = 0; r < world_; ++r)
      tensors[name + rank_suffix(r)] = rows[r].to(torch::kUInt8).contiguous();
  }
  if (!is_rank0()) {
    last_saved_step_ = state_.step;
    return {};
  }
  runtime::Checkpoint c;
  c.state = state_;
  for (const auto& [name, p] : params_) c.weights.emplace_back(name, p.detach());
  for (auto& [name, t] : optim_->state_tensors()) tensors[name] = t;
  c.tensors = std::move(tensors);
  if (hooks_.adapter_config_json) c.adapter_config_json = hooks_.adapter_config_json();
  last_checkpoint_ = runtime::save_checkpoint(cfg_.output_dir, c, cfg_.train.keep_last);
  last_saved_step_ = state_.step;
  log::info() << "saved " << last_checkpoint_;
  return last_checkpoint_;
}

TrainResult Trainer::train() {
  TrainResult result;
  const auto& t = cfg_.train;
  if (!resumed_)
    torch::manual_seed(static_cast<uint64_t>(cfg_.seed) + static_cast<uint64_t>(rank_));
  if (data_.position() != state_.position) data_.seek(state_.position);
  sync_->broadcast_parameters();
  std::unique_ptr<MetricsLog> metrics;
  std::unique_ptr<Progress> progress;
  if (is_rank0()) {
    runtime::remove_stale_checkpoint_temps(cfg_.output_dir);
    metrics = std::make_unique<MetricsLog>(
        (std::filesystem::path(cfg_.output_dir) / kMetricsFile).string(),
        resumed_ ? state_.step : -1);
    progress = std::make_unique<Progress>(total_steps_, state_.step, t.log_every,
                                          stderr_is_tty());
    log::info() << "training " << params_.size() << " tensors for " << total_steps_ << " steps ("
                << steps_per_epoch_ << " per epoch): global batch " << t.global_batch_size << " = "
                << world_ << " ranks x " << t.micro_batch_size << " x " << accumulation_
                << " accumulation";
  }
  task_.set_training(true);
  std::vector<data::Batch> micro;
  while (state_.step < total_steps_) {
    const auto started = std::chrono::steady_clock::now();
    // The LR of a step comes from where its first micro-batch sits (LaVIN's
    // data_iter_step / len(data_loader) + epoch).
    const data::LoaderPosition first = take_step_batches(micro);
    const double epoch = runtime::fractional_epoch(first.epoch, first.batch, data_.batches_per_epoch());
    const double lr = state_.schedule.at(epoch);
    int64_t supervised = 0, tokens = 0, samples = 0;
    for (const auto& b : micro)
      supervised += b.supervised_tokens, tokens += real_tokens(b), samples += b.size();
    const auto counts =
        all_reduce({static_cast<double>(supervised), static_cast<double>(tokens),
                    static_cast<double>(samples), interrupt_requested() ? 1.0 : 0.0},
                   "all-reducing token counts");
    if (counts[3] > 0) {
      if (last_saved_step_ != state_.step) save();
      throw Interrupted();
    }
    StepMetrics m = run_step(micro, lr, counts[0]);
    state_.step += 1;
    state_.lr = lr;
    if (m.skipped) {
      state_.skipped_steps += 1;
      log::warn() << "step " << state_.step << ": non-finite loss (" << m.loss
                  << ") or gradient norm (" << m.grad_norm << "): skipped, " << state_.skipped_steps
                  << " so far";
    }
    drain_epoch_if_short();
    state_.position = data_.position();
    state_.epoch =
        runtime::fractional_epoch(state_.position.epoch, state_.position.batch, data_.batches_per_epoch());
    m.step = state_.step;
    m.epoch = state_.epoch;
    m.supervised_tokens = static_cast<int64_t>(counts[0]);
    m.tokens = static_cast<int64_t>(counts[1]);
    m.samples = static_cast<int64_t>(counts[2]);
    if (val_ && t.eval_every > 0 && state_.step % t.eval_every == 0) m.val_loss = validation_loss();
    m.step_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    m.peak_rss_bytes = peak_rss_bytes();
    m.peak_cuda_bytes = peak_cuda_allocated_bytes(device_);
    result.losses.push_back(m.skipped ? NAN : m.loss);
    if (metrics) metrics->write(m), progress->update(m);
    if (hooks_.on_step) hooks_.on_step(m);
    const bool epoch_end = state_.position.batch == 0;
    const bool due = t.save_every > 0 ? state_.step % t.save_every == 0 : epoch_end;
    if (due || state_.step == total_steps_) save();
  }
  if (progress) progress->finish();
  result.steps = state_.step;
  result.skipped_steps = state_.skipped_steps;
  result.last_checkpoint = last_checkpoint_;
  return result;
}

}  // namespace mmtune::train
