#include <mmtune/config/run_dir.h>
#include <mmtune/core/dist_env.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/collate.h>
#include <mmtune/data/dataset.h>
#include <mmtune/data/loader.h>
#include <mmtune/text/tokenizer.h>
#include <mmtune/model/weights.h>
#include <mmtune/train/checkpointing_fn.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/distributed.h>
#include <mmtune/runtime/multimodal_task.h>
#include <mmtune/train/run_train.h>

#include <chrono>
#include <optional>

namespace mmtune::train {
namespace {

/// Passes batches through and counts what the data layer reports on them.
class CountingSource : public runtime::BatchSource {
 public:
  explicit CountingSource(runtime::LoaderSource& inner) : inner_(inner) {}
  std::optional<data::Batch> next() override {
    auto b = inner_.next();
    if (b && b->truncated > 0) {
      if (truncated_ == 0)
        log::warn() << "samples longer than data.max_length are cut from the right (first seen in a batch with "
                    << b->ids.front() << "); their count is reported at the end";
      truncated_ += b->truncated;
    }
    return b;
  }
  data::LoaderPosition position() const override { return inner_.position(); }
  int64_t batches_per_epoch() const override { return inner_.batches_per_epoch(); }
  void seek(data::LoaderPosition pos) override {
    skipped_before_seek_ += inner_.skipped();
    inner_.seek(pos);
  }
  int64_t truncated() const { return truncated_; }
  int64_t skipped() const { return skipped_before_seek_ + inner_.skipped(); }

 private:
  runtime::LoaderSource& inner_;
  int64_t truncated_ = 0, skipped_before_seek_ = 0;
};

data::LoaderOptions loader_options(const config::RunConfig& cfg, int rank, int world, bool training) {
  data::LoaderOptions o;
  o.sampler.batch_size = cfg.train.micro_batch_size;
  o.sampler.seed = static_cast<uint64_t>(cfg.seed);
  o.sampler.shuffle = training;
  o.sampler.drop_last = training;
  o.sampler.rank = rank;
  o.sampler.world_size = world;
  o.sampler.group_by_length = training && cfg.data.group_by_length;
  o.collate = data::collate_options(cfg.data, cfg.vision);
  o.num_workers = cfg.data.num_workers;
  return o;
}

}  // namespace

TrainRunSummary run_training(const config::RunConfig& cfg_in, const TrainRunOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  config::RunConfig cfg = cfg_in;
  const DistEnv env = DistEnv::from_env();
  // the device is checked before any rendezvous, so a bad device fails alike on every rank
  torch::Device device = model::model_options(cfg.device, cfg.dtype).device();
  if (env.launched && device.is_cuda() && !device.has_index()) {
    cfg.device = "cuda:" + std::to_string(env.local_rank);
    device = model::model_options(cfg.device, cfg.dtype).device();
  }
  // before the rendezvous, so a second run into a busy or used output_dir fails at once
  std::optional<config::RunDirLock> dir_lock;
  if (env.rank == 0) {
    if (options.overwrite && !options.resume.empty())
      throw UsageError("--overwrite and --resume contradict each other", "pass one of them");
    dir_lock.emplace(cfg.output_dir);
    config::claim_run_dir(cfg.output_dir, !options.resume.empty(), options.overwrite);
  }
  std::unique_ptr<runtime::ProcessGroup> pg;
  if (env.launched && env.world_size > 1)
    pg = runtime::ProcessGroup::create(env, cfg.dist.backend, device.is_cuda(), std::chrono::seconds(cfg.dist.timeout_s));
  const int rank = pg ? pg->rank() : 0, world = pg ? pg->size() : 1;
  config::prepare_run_dir(cfg, rank);

  torch::manual_seed(static_cast<uint64_t>(cfg.seed));  // adapter init; rank 0's is broadcast at start
  runtime::check_training_support(cfg);
  // rows of data.max_length positions must fit the model's RoPE context (generation checks its own)
  const int64_t context = runtime::llm_shape(cfg.model).max_position_embeddings;
  if (cfg.data.max_length > context)
    throw ConfigError({{"", "data.max_length",
                        cat("is ", cfg.data.max_length, ", more than the model's context of ", context,
                            " positions (max_position_embeddings in ", cfg.model.path, "/config.json)"),
                        cat("set data.max_length <= ", context)}});
  runtime::BuiltModel built = runtime::build_model(cfg, runtime::Weights::kLoad);
  if (cfg.train.activation_checkpointing) enable_activation_checkpointing(*built.model);
  const std::string tok_path = cfg.model.tokenizer.empty() ? cfg.model.path : cfg.model.tokenizer;
  std::shared_ptr<const text::Tokenizer> tok = text::load_tokenizer(tok_path);

  const data::SequenceLayout layout = runtime::sequence_layout(cfg, built);
  auto split = data::read_split(cfg.data, layout, cfg.data.train_split);
  if (split.skipped > 0)
    log::warn() << split.skipped << " samples skipped (data.on_bad_sample: skip), first: " << split.skipped_ids.front();
  if (split.examples.empty())
    throw DataError(split.source, "no training samples", "check data.root / data.json and data.train_split");
  log::info() << "data: " << split.source << ", " << split.examples.size() << " samples";

  const auto opts = loader_options(cfg, rank, world, /*training=*/true);
  auto examples = std::make_shared<const std::vector<data::Example>>(std::move(split.examples));
  runtime::LoaderSource loader([examples, tok, layout, opts](data::LoaderPosition pos) {
    return std::make_unique<data::DataLoader>(*examples, tok, layout, opts, pos);
  });
  CountingSource source(loader);

  std::unique_ptr<runtime::LoaderSource> val;
  std::shared_ptr<const std::vector<data::Example>> val_examples;
  if (cfg.train.eval_every > 0) {
    auto v = data::read_split(cfg.data, layout, cfg.data.val_split);
    if (v.examples.empty()) throw DataError(v.source, "no validation samples", "set train.eval_every: 0 or data.val_split");
    val_examples = std::make_shared<const std::vector<data::Example>>(std::move(v.examples));
    const auto vopts = loader_options(cfg, rank, world, /*training=*/false);
    val = std::make_unique<runtime::LoaderSource>([val_examples, tok, layout, vopts](data::LoaderPosition pos) {
      return std::make_unique<data::DataLoader>(*val_examples, tok, layout, vopts, pos);
    });
  }

  runtime::MultimodalTask task(built, device);
  TrainerHooks hooks;
  hooks.adapter_config_json = [&cfg, &built] { return runtime::adapter_config_json(cfg, built); };
  Trainer trainer(task, source, cfg, pg.get(), hooks);
  if (val) trainer.set_validation(val.get());
  if (!options.resume.empty()) {
    const std::string dir = runtime::resolve_checkpoint(cfg.output_dir, options.resume);
    log::info() << "resuming from " << dir;
    trainer.resume(dir);
  }

  TrainRunSummary s;
  for (const auto& [name, t] : built.trainable) s.trainable_parameters += t.numel();
  s.samples = static_cast<int64_t>(examples->size());
  s.result = trainer.train();
  s.skipped_samples = split.skipped + source.skipped();
  s.truncated_samples = source.truncated();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s.truncated_samples > 0)
    log::warn() << s.truncated_samples << " training rows were cut at data.max_length " << cfg.data.max_length
                << " (hint: raise data.max_length)";
  if (s.skipped_samples > 0) log::warn() << s.skipped_samples << " samples skipped (data.on_bad_sample: skip)";
  return s;
}

}  // namespace mmtune::train
