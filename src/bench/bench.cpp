// `mmtune bench train` and the pieces both benchmarks share (include/mmtune/bench/bench.h).
#include <mmtune/core/memory.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/collate.h>
#include <mmtune/data/dataset.h>
#include <mmtune/text/tokenizer.h>
#include <mmtune/train/autocast.h>
#include <mmtune/bench/bench.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/train/checkpointing_fn.h>
#include <mmtune/train/metrics.h>
#include <mmtune/runtime/multimodal_task.h>
#include <mmtune/train/optim.h>

#include "bench_detail.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

namespace mmtune::bench {

int64_t synthetic_length(int64_t row, int64_t min_length, int64_t max_length) {
  const uint64_t hash = (2654435761ULL * static_cast<uint64_t>(row) + 12345ULL) % (1ULL << 32);
  return min_length + static_cast<int64_t>(hash % static_cast<uint64_t>(max_length - min_length + 1));
}

data::Batch synthetic_batch(const SyntheticBatchSpec& s, int64_t step, torch::Generator& gen) {
  const int64_t B = s.batch, n = s.image_tokens, text_start = 3 + n;
  std::vector<int64_t> lengths(B);
  for (int64_t b = 0; b < B; ++b) lengths[b] = synthetic_length(step * B + b, s.min_length, s.max_length);
  const int64_t T = s.fixed_padding ? s.max_length : *std::max_element(lengths.begin(), lengths.end());
  // tokens / labels [B, T] int64, attention_mask / image_slots [B, T] bool
  torch::Tensor tokens = torch::zeros({B, T}, torch::kLong);
  torch::Tensor labels = torch::full({B, T}, data::kIgnoreIndex, torch::kLong);
  torch::Tensor mask = torch::zeros({B, T}, torch::kBool), slots = torch::zeros({B, T}, torch::kBool);
  auto tok = tokens.accessor<int64_t, 2>();
  auto lab = labels.accessor<int64_t, 2>();
  auto msk = mask.accessor<bool, 2>();
  auto slt = slots.accessor<bool, 2>();
  int64_t supervised = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t i = step * B + b, L = lengths[b];
    const int64_t answer = text_start + (L - text_start) / 2;
    for (int64_t t = 0; t < L; ++t) {
      msk[b][t] = true;
      if (t >= 3 && t < text_start) {
        slt[b][t] = true;  // the slot keeps pad id 0
        continue;
      }
      tok[b][t] = t == 0 ? 1 : 3 + (7919 * i + 104729 * t) % (s.vocab - 3);
      if (t >= answer) lab[b][t] = tok[b][t], ++supervised;
    }
  }
  data::Batch batch;
  for (int64_t b = 0; b < B; ++b) batch.ids.push_back(cat("synthetic-", step * B + b));
  batch.tokens = tokens;
  batch.labels = labels;
  batch.attention_mask = mask;
  batch.image_slots = slots;
  batch.has_image = torch::full({B}, n > 0 ? 1 : 0, torch::kLong);
  if (n > 0) batch.images = torch::randn({B, 3, s.image_size, s.image_size}, gen);  // [B, 3, S, S]
  batch.supervised_tokens = supervised;
  return batch;
}

double llm_matmul_params(const model::LlamaConfig& c) {
  const double D = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  return c.num_layers * (D * q + 2 * D * kv + q * D + 3 * D * c.intermediate_size) + D * c.vocab_size;
}

double vit_matmul_params(const model::ClipVisionConfig& c) {
  const double W = c.hidden_size;
  return c.num_layers * (4 * W * W + 2 * W * c.intermediate_size) + c.num_channels * c.patch_size * c.patch_size * W;
}

std::optional<double> gpu_peak_tflops(const std::string& name, const std::string& dtype) {
  // dense (no sparsity) peaks from the vendors' data sheets: {bf16/fp16 tensor, fp32 non-tensor}
  struct Row { const char* key; double half, fp32; };
  static const Row rows[] = {{"H100 PCIe", 756.0, 51.2}, {"H100", 989.4, 66.9}, {"H200", 989.4, 66.9},
                             {"GH200", 989.4, 66.9},     {"A100", 312.0, 19.5}, {"L40S", 362.1, 91.6},
                             {"L4", 121.0, 30.3},        {"A10", 125.0, 31.2},  {"RTX 4090", 165.2, 82.6},
                             {"V100", 125.0, 15.7}};
  for (const auto& r : rows) {
    if (name.find(r.key) != std::string::npos) return dtype == "fp32" ? r.fp32 : r.half;
  }
  return std::nullopt;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

std::string bench_json(const BenchReport& r) {
  nlohmann::ordered_json j;
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(); };
  j["mode"] = r.mode;
  j["impl"] = r.impl;
  j["device"] = r.device;
  j["dtype"] = r.dtype;
  j["quantize"] = r.quantize;
  j["load_s"] = r.load_s;
  j["precision"] = r.precision;
  j["threads"] = r.threads;
  j["llm"] = r.llm;
  j["vision"] = r.vision;
  j["llm_params"] = r.llm_params;
  j["vision_params"] = r.vision_params;
  j["trainable_params"] = r.trainable_params;
  j["random_weights"] = r.random_weights;
  j["activation_checkpointing"] = r.activation_checkpointing;
  j["data"] = r.data;
  j["padding"] = r.padding;
  j["batch"] = r.batch;
  j["max_length"] = r.max_length;
  j["steps"] = r.steps;
  j["warmup"] = r.warmup;
  if (r.mode == "generate") {
    j["prompt_length"] = r.prompt_length;
    j["new_tokens"] = r.new_tokens;
  }
  j["tokens_per_step"] = r.tokens_per_step;
  j["padded_tokens_per_step"] = r.padded_tokens_per_step;
  j["tokens_per_s"] = r.tokens_per_s;
  j["padded_tokens_per_s"] = r.padded_tokens_per_s;
  j["samples_per_s"] = r.samples_per_s;
  j["step_s_p50"] = r.step_s_p50;
  j["step_s_p90"] = r.step_s_p90;
  j["step_s_mean"] = r.step_s_mean;
  j["step_s_min"] = r.step_s_min;
  j["cpu_s_per_step"] = r.cpu_s_per_step;
  if (r.mode == "generate") {
    j["prefill_s_p50"] = r.prefill_s_p50;
    j["decode_s_p50"] = r.decode_s_p50;
    j["prefill_tok_per_s"] = r.prefill_tok_per_s;
    j["decode_tok_per_s"] = r.decode_tok_per_s;
    j["decode_weight_bytes"] = r.decode_weight_bytes;
  }
  j["peak_rss_mb"] = r.peak_rss_mb;
  j["peak_cuda_mb"] = opt(r.peak_cuda_mb);
  j["flops_per_step"] = r.flops_per_step;
  j["achieved_tflops"] = r.achieved_tflops;
  j["peak_tflops"] = opt(r.peak_tflops);
  j["mfu"] = opt(r.mfu);
  if (r.mode == "train") {
    j["loss_first"] = r.loss_first;
    j["loss_last"] = r.loss_last;
  }
  return j.dump(2);
}

namespace detail {

// The name of CUDA device `index` from nvidia-smi (this file must build without CUDA headers).
std::string cuda_device_name(int index) {
  const std::string cmd = cat("nvidia-smi --query-gpu=name --format=csv,noheader -i ", index, " 2>/dev/null");
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

namespace {

// Parameters plus quantized weights (buffers), N x K each.
int64_t weights_in(const torch::nn::Module& root) {
  int64_t n = 0;
  for (const auto& p : root.parameters()) n += p.numel();
  for (const auto& m : root.modules()) {
    const auto* proj = dynamic_cast<const model::ProjectionImpl*>(m.get());
    if (!proj || !proj->quantized()) continue;
    n += proj->quantized_weight().entries();
  }
  return n;
}

}  // namespace

BenchReport common_report(const std::string& mode, const config::RunConfig& cfg, const BenchOptions& o,
                          const runtime::BuiltModel& built) {
  BenchReport r;
  r.mode = mode;
  r.device = cfg.device;
  r.dtype = cfg.dtype;
  r.quantize = runtime::quantization(cfg.model).label();
  if (cfg.vision.quantize != "none") r.quantize += "+vit-" + runtime::vision_quantization(cfg).label();
  r.precision = cfg.train.precision;
  r.threads = static_cast<int>(torch::get_num_threads());
  r.random_weights = o.random_weights;
  r.activation_checkpointing = mode == "train" && cfg.train.activation_checkpointing;
  r.padding = cfg.data.padding;
  r.max_length = cfg.data.max_length;
  r.steps = o.steps;
  r.warmup = o.warmup;
  r.llm = built.model->llm().config().describe();
  if (built.model->has_vision()) {
    const auto& v = built.model->vision().config();
    r.vision = cat("L=", v.num_layers, " W=", v.hidden_size, " I=", v.intermediate_size, " S=", v.image_size, " p=", v.patch_size);
  }
  r.llm_params = weights_in(built.model->llm());
  if (built.model->has_vision()) r.vision_params = weights_in(built.model->vision());
  for (const auto& [name, t] : built.trainable) r.trainable_params += t.numel();
  return r;
}

void finish_report(BenchReport& r, const config::RunConfig& cfg, const BenchOptions& o) {
  const torch::Device device(cfg.device);
  r.peak_rss_mb = static_cast<double>(peak_rss_bytes()) / (1 << 20);
  if (const int64_t cuda = train::peak_cuda_allocated_bytes(device); cuda >= 0) r.peak_cuda_mb = static_cast<double>(cuda) / (1 << 20);
  if (o.peak_tflops > 0) {
    r.peak_tflops = o.peak_tflops;
  } else if (device.is_cuda()) {
    const std::string half = r.dtype == "fp32" && r.precision == "fp32" ? "fp32" : "bf16";
    r.peak_tflops = gpu_peak_tflops(cuda_device_name(device.has_index() ? device.index() : 0), half);
  }
  if (r.peak_tflops) r.mfu = r.achieved_tflops / *r.peak_tflops;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

void sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

SyntheticBatchSpec synthetic_spec(const runtime::BuiltModel& built, int64_t batch, int64_t min_length, int64_t max_length,
                                  bool fixed_padding) {
  SyntheticBatchSpec s;
  s.batch = batch;
  s.max_length = max_length;
  s.image_tokens = built.model->has_vision() ? built.model->visual_tokens() : 0;
  s.min_length = min_length > 0 ? min_length : std::max(max_length / 4, s.image_tokens + 8);
  const int64_t shortest = shortest_synthetic_row(s.image_tokens);
  if (s.min_length < shortest || s.min_length > s.max_length)
    throw UsageError(cat("synthetic rows of ", s.min_length, " to ", s.max_length, " tokens: the shortest must hold BOS, ",
                         "2 prefix tokens, ", s.image_tokens, " image slots and 2 text tokens, and not exceed the longest"),
                     cat("pass --min-length in [", shortest, ", ", s.max_length, "]"));
  s.fixed_padding = fixed_padding;
  s.vocab = built.model->llm().config().vocab_size;
  s.image_size = built.model->has_vision() ? built.model->vision().config().image_size : 0;
  return s;
}

void fill_timing(BenchReport& r, const std::vector<double>& times, double cpu_seconds, double tokens, double padded) {
  const double n = static_cast<double>(times.size()), sum = std::accumulate(times.begin(), times.end(), 0.0);
  r.step_s_p50 = percentile(times, 0.5);
  r.step_s_p90 = percentile(times, 0.9);
  r.step_s_mean = sum / n;
  r.step_s_min = *std::min_element(times.begin(), times.end());
  r.cpu_s_per_step = cpu_seconds / n;
  r.tokens_per_step = tokens / n;
  r.padded_tokens_per_step = padded / n;
  r.tokens_per_s = tokens / sum;
  r.padded_tokens_per_s = padded / sum;
  r.samples_per_s = static_cast<double>(r.batch) * n / sum;
}

double llm_decode_weight_bytes(const runtime::BuiltModel& built, int64_t batch) {
  double bytes = 0;
  const bool tied = built.model->llm().config().tie_word_embeddings;  // the LM head is the table
  for (const auto& m : built.model->llm().modules(/*include_self=*/true)) {
    if (const auto* proj = dynamic_cast<const model::ProjectionImpl*>(m.get()); proj && proj->quantized()) {
      // the stored codes (int8 [N, K], int4 two per byte) and scales (int4: with the zeros); the
      // kernels' packed layouts hold the same codes, int4's N padded to 16 at most
      const auto& q = proj->quantized_weight();
      bytes += static_cast<double>(q.entries()) * (q.mode == "int4" ? 0.5 : 1.0) + static_cast<double>(q.scales.nbytes());
      if (proj->bias.defined()) bytes += static_cast<double>(proj->bias.nbytes());
      continue;
    }
    if (const auto* emb = dynamic_cast<const model::EmbeddingImpl*>(m.get())) {
      bytes += static_cast<double>(batch * emb->weight.size(1) * emb->weight.element_size());  // one row each
      if (tied) bytes += static_cast<double>(emb->weight.nbytes());  // and all of it for the logits
      continue;
    }
    for (const auto& p : m->named_parameters(/*recurse=*/false)) bytes += static_cast<double>(p.value().nbytes());
  }
  return bytes;
}

double vit_params_per_image(const runtime::BuiltModel& built) {
  if (!built.model->has_vision()) return 0.0;
  const auto& v = built.model->vision().config();
  return vit_matmul_params(v) * static_cast<double>(v.num_patches() + 1);
}

runtime::BuiltModel prepare(const config::RunConfig& cfg, const BenchOptions& o, double& seconds) {
  if (o.steps < 1 || o.warmup < 0) throw UsageError(cat("--steps must be >= 1 and --warmup >= 0, got ", o.steps, " and ", o.warmup));
  if (o.threads > 0) torch::set_num_threads(o.threads);
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  const auto t0 = std::chrono::steady_clock::now();
  runtime::BuiltModel built = runtime::build_model(cfg, o.random_weights ? runtime::Weights::kRandom : runtime::Weights::kLoad);
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return built;
}

}  // namespace detail

namespace {

using namespace detail;

// The data set's first batches, collated up front (bench --data).
std::vector<data::Batch> data_set_batches(const config::RunConfig& cfg, const runtime::BuiltModel& built, int64_t B, int64_t count) {
  const auto tok = text::load_tokenizer(cfg.model.tokenizer.empty() ? cfg.model.path : cfg.model.tokenizer);
  const data::SequenceLayout layout = sequence_layout(cfg, built);
  auto split = data::read_split(cfg.data, layout, cfg.data.train_split, B * count);
  if (static_cast<int64_t>(split.examples.size()) < B)
    throw DataError(split.source, cat("fewer than ", B, " samples"), "drop --data to benchmark on synthetic batches");
  const auto opts = data::collate_options(cfg.data, cfg.vision);
  std::vector<data::Batch> out;
  for (size_t at = 0; at + B <= split.examples.size(); at += B) {
    std::vector<data::Example> rows(split.examples.begin() + at, split.examples.begin() + at + B);
    out.push_back(data::collate(rows, *tok, layout, opts));
  }
  return out;
}

// One optimiser step as the Trainer takes it with one micro-batch per step (trainer.cpp run_step):
// the token-mean loss (+ aux losses), backward, the gradient norm (clipped when train.clip_grad >
// 0), train::AdamW. Returns the loss.
double train_step(runtime::MultimodalTask& task, train::AdamW& optim, const data::Batch& b, const config::RunConfig& cfg,
                  const torch::Device& device) {
  optim.zero_grad();
  runtime::StepLoss sl;
  {
    train::AutocastScope autocast(cfg.train.precision == "bf16", device.type());
    sl = task.forward(b);
  }
  torch::Tensor objective = sl.loss_sum.to(torch::kFloat32) / static_cast<double>(std::max<int64_t>(b.supervised_tokens, 1));
  for (const auto& [name, aux] : sl.aux) objective = objective + aux.to(torch::kFloat32);
  objective.backward();
  const double loss = objective.detach().item<double>();
  train::clip_grad_norm(optim.parameters(), cfg.train.clip_grad);
  optim.step(cfg.train.resolved_lr());
  sync(device);
  return loss;
}

// The warm-up + measured batches: synthetic (bench.h) or the data set's first ones.
std::vector<data::Batch> train_batches(const config::RunConfig& cfg, const BenchOptions& o, const runtime::BuiltModel& built,
                                       int64_t B) {
  const int64_t total = o.warmup + o.steps;
  if (o.use_data) return data_set_batches(cfg, built, B, total);
  const SyntheticBatchSpec s = synthetic_spec(built, B, o.min_length, cfg.data.max_length, cfg.data.padding == "fixed");
  torch::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(cfg.seed));
  std::vector<data::Batch> out;
  for (int64_t step = 0; step < total; ++step) out.push_back(synthetic_batch(s, step, gen));
  return out;
}

}  // namespace

BenchReport bench_train(const config::RunConfig& cfg, const BenchOptions& o) {
  runtime::check_training_support(cfg);
  double load_s = 0;
  runtime::BuiltModel built = prepare(cfg, o, load_s);
  if (built.trainable.empty())
    throw Error("the model has no trainable parameters", "set adapter.family, or train.trainable: all");
  if (cfg.train.activation_checkpointing) train::enable_activation_checkpointing(*built.model);
  const torch::Device device(cfg.device);
  const int64_t B = o.batch > 0 ? o.batch : cfg.train.micro_batch_size;
  const std::vector<data::Batch> batches = train_batches(cfg, o, built, B);
  runtime::MultimodalTask task(built, device);
  task.set_training(true);
  train::AdamW optim(built.trainable, train::AdamWOptions::from_config(cfg.train));
  const double n_llm = llm_matmul_params(built.model->llm().config());
  const double n_vit = vit_params_per_image(built);
  std::vector<double> times, losses;
  double tokens = 0, padded = 0, flops = 0, cpu_start = 0;
  for (int64_t step = 0; step < o.warmup + o.steps; ++step) {
    if (step == o.warmup) cpu_start = process_cpu_seconds();
    const data::Batch& b = batches[static_cast<size_t>(step) % batches.size()];
    const auto t0 = std::chrono::steady_clock::now();
    const double loss = train_step(task, optim, b, cfg, device);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (step < o.warmup) continue;
    times.push_back(dt);
    losses.push_back(loss);
    const double real = b.attention_mask.sum().item<double>();
    tokens += real;
    padded += static_cast<double>(b.tokens.numel());
    flops += 4 * (n_llm * real + n_vit * b.has_image.sum().item<double>());
  }
  const double cpu_seconds = process_cpu_seconds() - cpu_start;

  BenchReport r = common_report("train", cfg, o, built);
  r.load_s = load_s;
  r.batch = B;
  if (o.use_data) r.data = cfg.data.root.empty() ? cfg.data.json : cfg.data.root;
  fill_timing(r, times, cpu_seconds, tokens, padded);
  r.flops_per_step = flops / static_cast<double>(times.size());
  r.achieved_tflops = r.flops_per_step / r.step_s_mean / 1e12;  // over the whole measured time
  r.loss_first = losses.front();
  r.loss_last = losses.back();
  finish_report(r, cfg, o);
  return r;
}

}  // namespace mmtune::bench
