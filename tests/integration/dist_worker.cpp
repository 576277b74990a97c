// One rank of the distributed tests, configured by torchrun-style environment variables.
// Modes (first argument):
//   (none)     rendezvous, all-reduce and broadcast through c10d's Gloo backend; prints "rank R ok"
//   grad_sync  train::GradSync over tiny buckets: sums, the gradient mask, the divisor, broadcast;
//              prints "rank R grad_sync ok"
//   bench_grad_sync  times the gradient all-reduce of LaVIN-7B's 3.78M trainable values (a
//              measurement, not a test)
//   train key=value...
//              the trainer on a toy task (a bigram LM) and a toy distributed BatchSource over
//              data::Sampler, without a process group when RANK is unset. Keys: out, n, micro,
//              global, epochs, max_steps, lr, dropout, save_every, keep_last, resume (latest |
//              dir), sleep_ms (after each step), dtype (fp32 | fp64: the task in float64). Every rank writes out/final.rank<R>.safetensors;
//              rank 0 also metrics.jsonl and the checkpoints. Prints "rank R trained S steps".
// MMTUNE_TEST_TIMEOUT_S sets the collective timeout (default 30 s). Exit 1 with one line on error.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <thread>

#include <mmtune/core/dist_env.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/runtime/distributed.h>
#include <mmtune/train/grad_sync.h>
#include <mmtune/train/trainer.h>

namespace {
using namespace mmtune;

std::chrono::milliseconds test_timeout() {
  const char* v = std::getenv("MMTUNE_TEST_TIMEOUT_S");
  return std::chrono::seconds(v ? std::atoi(v) : 30);
}

int run_collectives() {
  const DistEnv env = DistEnv::from_env();
  auto pg = runtime::ProcessGroup::create(env, "gloo", false, test_timeout());
  const int r = pg->rank(), w = pg->size();
  // rank r contributes (r+1) * [1, 10, 100]: the sum is w(w+1)/2 * [1, 10, 100]
  torch::Tensor t = torch::tensor({1.0f, 10.0f, 100.0f}) * static_cast<float>(r + 1);
  pg->all_reduce_sum_(t);
  const float s = w * (w + 1) / 2.0f;
  if (!torch::equal(t, torch::tensor({s, 10 * s, 100 * s}))) {
    std::cerr << "rank " << r << ": all_reduce gave " << t << "\n";
    return 1;
  }
  torch::Tensor b = torch::full({4}, static_cast<float>(r == 0 ? 42 : -1));
  pg->broadcast_(b, 0);
  if (!torch::equal(b, torch::full({4}, 42.0f))) {
    std::cerr << "rank " << r << ": broadcast gave " << b << "\n";
    return 1;
  }
  pg->barrier();
  std::cout << "rank " << r << " ok\n";
  return 0;
}

bool check(bool ok, int rank, const std::string& what) {
  if (!ok) std::cerr << "rank " << rank << ": " << what << "\n";
  return ok;
}

int run_grad_sync() {
  const DistEnv env = DistEnv::from_env();
  auto pg = runtime::ProcessGroup::create(env, "gloo", false, test_timeout());
  const int r = pg->rank(), w = pg->size();
  auto ramp = [](int64_t n, double k) { return torch::arange(n, torch::kFloat32) * k + 1.0; };
  // 3 fp32 tensors, an fp64 one (its own bucket), one whose gradient exists on the last rank only,
  // one without any gradient; 32-byte buckets force one collective per tensor or two.
  runtime::NamedTensors params{{"a", torch::full({5}, static_cast<float>(r))},
                             {"b", torch::full({2, 3}, static_cast<float>(r))},
                             {"c", torch::full({4}, static_cast<float>(r))},
                             {"d", torch::full({3}, static_cast<double>(r), torch::kFloat64)},
                             {"last_only", torch::full({2}, static_cast<float>(r))},
                             {"none", torch::full({2}, static_cast<float>(r))}};
  for (auto& [n, p] : params) p.requires_grad_(true);
  train::GradSync sync(pg.get(), params, 32);
  bool ok = check(sync.bucket_count() >= 4, r,
                  "expected several buckets, got " + std::to_string(sync.bucket_count()));
  sync.broadcast_parameters();
  for (const auto& [n, p] : params)
    ok = check(p.eq(0).all().item<bool>(), r, n + " not broadcast from rank 0") && ok;
  for (size_t i = 0; i < 4; ++i) {
    auto& p = params[i].second;
    p.mutable_grad() = (ramp(p.numel(), static_cast<double>(i + 1)) * (r + 1))
                           .reshape(p.sizes())
                           .to(p.scalar_type());
  }
  if (r == w - 1) params[4].second.mutable_grad() = torch::full({2}, 7.0f);
  sync.all_reduce_gradients(2.0);
  const double ranks_sum = w * (w + 1) / 2.0;
  for (size_t i = 0; i < 4; ++i) {
    auto& p = params[i].second;
    const auto want = (ramp(p.numel(), static_cast<double>(i + 1)) * ranks_sum / 2.0)
                          .reshape(p.sizes())
                          .to(p.scalar_type());
    // w fp32 addends and a division by 2: within an ulp or two of the double-computed sum on any
    // CPU; allclose's default rtol 1e-5 is ~80 ulps
    ok = check(p.grad().defined() && torch::allclose(p.grad(), want), r,
               params[i].first + " gradient sum wrong") &&
         ok;
  }
  ok = check(params[4].second.grad().defined() &&
                 torch::equal(params[4].second.grad(), torch::full({2}, 3.5f)),
             r, "a gradient present on one rank only must reach every rank") &&
       ok;
  ok = check(!params[5].second.grad().defined(), r,
             "a gradient absent everywhere must stay undefined") &&
       ok;
  pg->barrier();
  if (!ok) return 1;
  std::cout << "rank " << r << " grad_sync ok\n";
  return 0;
}

// Times GradSync::all_reduce_gradients for LaVIN-7B's trainable set (3,781,296 fp32 values in
// tensors of 4096 x 8 / 8 x 4096 shapes and a few vectors; spec §1.7). Prints ms per step.
int run_bench_grad_sync() {
  const DistEnv env = DistEnv::from_env();
  auto pg = runtime::ProcessGroup::create(env, "gloo", false, test_timeout());
  runtime::NamedTensors params;
  int64_t total = 0;
  for (int i = 0; total < 3781296; ++i) {
    const std::vector<int64_t> shape =
        i % 3 == 0 ? std::vector<int64_t>{4096, 8}
                   : (i % 3 == 1 ? std::vector<int64_t>{8, 4096} : std::vector<int64_t>{4096});
    torch::Tensor p = torch::zeros(shape).requires_grad_(true);
    total += p.numel();
    p.mutable_grad() = torch::ones(shape);
    params.emplace_back("p" + std::to_string(i), p);
  }
  train::GradSync sync(pg.get(), params);
  sync.all_reduce_gradients();  // warm-up
  const int iters = 20;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) sync.all_reduce_gradients();
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
      iters;
  std::cout << "rank " << pg->rank() << ": " << total << " values in " << sync.bucket_count()
            << " buckets, " << ms << " ms per all_reduce_gradients\n";
  return 0;
}

// ---- the toy task (same as tests/unit/train/test_trainer.cpp) ----
constexpr int64_t kVocab = 13, kDim = 8;

data::Batch toy_batch(const std::vector<int64_t>& idx) {
  int64_t t_max = 0;
  for (int64_t i : idx) t_max = std::max<int64_t>(t_max, 4 + (i * 5) % 6);
  const auto b = static_cast<int64_t>(idx.size());
  data::Batch out;
  out.tokens = torch::zeros({b, t_max}, torch::kInt64);
  out.labels = torch::full({b, t_max}, data::kIgnoreIndex, torch::kInt64);
  out.attention_mask = torch::zeros({b, t_max}, torch::kBool);
  for (int64_t r = 0; r < b; ++r) {
    const int64_t i = idx[static_cast<size_t>(r)], len = 4 + (i * 5) % 6;
    out.ids.push_back(std::to_string(i));
    int64_t tok = i % kVocab;
    for (int64_t j = 0; j < len; ++j, tok = (tok * 3 + 1) % kVocab) {
      out.tokens[r][j] = tok;
      out.attention_mask[r][j] = true;
      if (j >= 2) out.labels[r][j] = tok;
    }
  }
  out.supervised_tokens = out.labels.slice(1, 1).ne(data::kIgnoreIndex).sum().item<int64_t>();
  return out;
}

class ToySource : public runtime::BatchSource {
 public:
  ToySource(int64_t n, int64_t micro, int64_t rank, int64_t world)
      : sampler_(n, data::SamplerOptions{micro, 7, true, true, rank, world}) {}
  std::optional<data::Batch> next() override {
    if (pos_.batch >= sampler_.batches_per_epoch()) {
      pos_ = {pos_.epoch + 1, 0};
      return std::nullopt;
    }
    if (plan_epoch_ != pos_.epoch) plan_ = sampler_.epoch(pos_.epoch), plan_epoch_ = pos_.epoch;
    return toy_batch(plan_[static_cast<size_t>(pos_.batch++)]);
  }
  data::LoaderPosition position() const override { return pos_; }
  int64_t batches_per_epoch() const override { return sampler_.batches_per_epoch(); }
  void seek(data::LoaderPosition p) override { pos_ = p; }

 private:
  data::Sampler sampler_;
  data::LoaderPosition pos_;
  std::vector<std::vector<int64_t>> plan_;
  int64_t plan_epoch_ = -1;
};

class ToyTask : public runtime::TrainTask {
 public:
  // dtype kFloat64 runs the same task in float64 (the fp32 values cast: the numerical checks)
  ToyTask(double dropout, torch::Dtype dtype) : dropout_(dropout) {
    emb_ = (torch::sin(torch::arange(kVocab * kDim, torch::kFloat32) * 0.31) * 0.5)
               .reshape({kVocab, kDim})
               .to(dtype)
               .set_requires_grad(true);
    w_ = (torch::cos(torch::arange(kVocab * kDim, torch::kFloat32) * 0.17) * 0.3)
             .reshape({kVocab, kDim})
             .to(dtype)
             .set_requires_grad(true);
    b_ = torch::zeros({kVocab}, dtype).set_requires_grad(true);
  }
  runtime::NamedTensors trainable_parameters() override {
    return {{"emb.weight", emb_}, {"head.weight", w_}, {"head.bias", b_}};
  }
  runtime::StepLoss forward(const data::Batch& batch) override {
    const int64_t b = batch.size(), t = batch.tokens.size(1);
    torch::Tensor h = emb_.index_select(0, batch.tokens.reshape(-1)).view({b, t, kDim});
    h = torch::dropout(h, dropout_, training_);
    const torch::Tensor logits = h.matmul(w_.t()) + b_;
    runtime::StepLoss out;
    out.loss_sum = torch::nn::functional::cross_entropy(
        logits.slice(1, 0, t - 1).reshape({-1, kVocab}), batch.labels.slice(1, 1).reshape(-1),
        torch::nn::functional::CrossEntropyFuncOptions()
            .reduction(torch::kSum)
            .ignore_index(data::kIgnoreIndex));
    out.aux.emplace_back("l2", 1e-2 * w_.pow(2).mean());
    return out;
  }
  void set_training(bool on) override { training_ = on; }

 private:
  torch::Tensor emb_, w_, b_;
  double dropout_;
  bool training_ = true;
};

int run_train(const std::vector<std::string>& args) {
  std::map<std::string, std::string> kv{{"n", "64"},      {"micro", "2"},      {"global", "8"},
                                        {"epochs", "2"},  {"max_steps", "0"},  {"lr", "0.2"},
                                        {"dropout", "0"}, {"save_every", "0"}, {"keep_last", "2"},
                                        {"resume", ""},   {"sleep_ms", "0"},   {"dtype", "fp32"}};
  for (const auto& a : args) {
    const auto eq = a.find('=');
    if (eq == std::string::npos || (!kv.count(a.substr(0, eq)) && a.substr(0, eq) != "out"))
      throw UsageError("bad worker argument '" + a + "'",
                       "key=value with a key listed in dist_worker.cpp");
    kv[a.substr(0, eq)] = a.substr(eq + 1);
  }
  if (!kv.count("out")) throw UsageError("train mode needs out=<dir>");
  const DistEnv env = DistEnv::from_env();
  std::unique_ptr<runtime::ProcessGroup> pg;
  if (env.launched) pg = runtime::ProcessGroup::create(env, "gloo", false, test_timeout());
  const int rank = pg ? pg->rank() : 0, world = pg ? pg->size() : 1;
  log::init(log::Level::kInfo, rank, world);
  config::RunConfig cfg;
  cfg.output_dir = kv["out"];
  cfg.train.lr = std::stod(kv["lr"]);
  cfg.train.epochs = std::stoll(kv["epochs"]);
  cfg.train.max_steps = std::stoll(kv["max_steps"]);
  cfg.train.warmup_steps = 2;
  cfg.train.micro_batch_size = std::stoll(kv["micro"]);
  cfg.train.global_batch_size = std::stoll(kv["global"]);
  cfg.train.clip_grad = 1.0;
  cfg.train.save_every = std::stoll(kv["save_every"]);
  cfg.train.keep_last = std::stoll(kv["keep_last"]);
  cfg.train.log_every = 5;
  if (kv["dtype"] != "fp32" && kv["dtype"] != "fp64") throw UsageError("dtype must be fp32 or fp64");
  ToyTask task(std::stod(kv["dropout"]), kv["dtype"] == "fp64" ? torch::kFloat64 : torch::kFloat32);
  ToySource src(std::stoll(kv["n"]), cfg.train.micro_batch_size, rank, world);
  train::TrainerHooks hooks;
  const int sleep_ms = std::stoi(kv["sleep_ms"]);
  hooks.on_step = [sleep_ms](const train::StepMetrics&) {
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  };
  hooks.adapter_config_json = [] { return std::string("{\"family\": \"toy\"}\n"); };
  train::Trainer trainer(task, src, cfg, pg.get(), hooks);
  if (!kv["resume"].empty())
    trainer.resume(runtime::resolve_checkpoint(cfg.output_dir, kv["resume"]));
  const auto result = trainer.train();
  io::save_safetensors(cfg.output_dir + "/final.rank" + std::to_string(rank) + ".safetensors",
                       task.trainable_parameters());
  std::cout << "rank " << rank << " trained " << result.steps << " steps\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mmtune;
  try {
    torch::set_num_threads(1);
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode.empty()) return run_collectives();
    if (mode == "grad_sync") return run_grad_sync();
    if (mode == "bench_grad_sync") return run_bench_grad_sync();
    if (mode == "train") return run_train(std::vector<std::string>(argv + 2, argv + argc));
    std::cerr << "unknown mode '" << mode << "' (grad_sync | bench_grad_sync | train)\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << e.one_line() << "\n";
    return 1;
  }
}
