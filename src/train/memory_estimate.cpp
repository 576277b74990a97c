#include <mmtune/train/memory_estimate.h>

#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/model/clip_vit.h>
#include <mmtune/model/llama.h>
#include <mmtune/model/quantize.h>
#include <mmtune/runtime/build_model.h>

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace mmtune::train {
namespace {

using adapters::Proj;
using adapters::Site;

int64_t bytes_of(const std::string& dtype) {
  if (dtype == "fp64") return 8;
  if (dtype == "bf16" || dtype == "fp16") return 2;
  return 4;
}

// The block's own (not its adapters') parameters train: its Linear inputs are saved too.
bool block_trains(const torch::nn::Module& block) {
  for (const auto& p : block.named_parameters(true))
    if (p.value().requires_grad() && p.key().rfind("adapters.", 0) != 0) return true;
  return false;
}

int64_t adapter_bytes_per_token(const std::vector<std::shared_ptr<adapters::BlockAdapterImpl>>& attached,
                                const adapters::BlockShape& shape, int64_t act) {
  int64_t total = 0;
  for (const auto& a : attached) total += a->saved_bytes_per_token(shape, act);
  return total;
}

// What one LlamaBlock keeps for backward per token (tensors saved by the ops of LlamaBlockImpl::forward):
//   the two RMSNorms' fp32 inputs            2 D x 4
//   SDPA's q, k, v (after RoPE) and output    (2 D + 2 Dkv) x act, and its log-sum-exp H x 4
//   SiLU's input, its output and up's output  3 F x act (the operands of silu(g) * u)
// A frozen Linear keeps nothing (its weight needs no gradient, so autograd does not save the input).
// A block whose own weights train keeps its Linear inputs too: a, the attention output, m, the
// product: (3 D + F) x act.
int64_t llama_block_bytes_per_token(const model::LlamaBlockImpl& block, const model::LlamaConfig& c,
                                    const adapters::BlockShape& shape, int64_t act) {
  const int64_t D = c.hidden_size, F = c.intermediate_size, Dq = c.num_heads * c.head_dim,
                Dkv = c.num_kv_heads * c.head_dim;
  int64_t b = 2 * D * 4 + (2 * Dq + 2 * Dkv) * act + c.num_heads * 4 + 3 * F * act;
  if (block_trains(block)) b += (3 * D + F) * act;
  return b + adapter_bytes_per_token(block.block_adapters(), shape, act);
}

// The same for a CLIP block: two LayerNorm inputs (the activation dtype), q, k, v and the SDPA
// output, the log-sum-exp, fc1's output and quick_gelu's sigmoid (x * sigmoid(1.702 x); gelu keeps
// its input only).
int64_t clip_block_bytes_per_token(const model::ClipBlockImpl& block, const model::ClipVisionConfig& c,
                                   const adapters::BlockShape& shape, int64_t act) {
  const int64_t W = c.hidden_size, I = c.intermediate_size;
  int64_t b = 2 * W * act + 4 * W * act + c.num_heads * 4 + I * act * (c.hidden_act == "quick_gelu" ? 2 : 1);
  if (block_trains(block)) b += (2 * W + I) * act;
  return b + adapter_bytes_per_token(block.block_adapters(), shape, act);
}

// Bytes of the frozen weights under `dtype`: parameters that do not train, plus each quantized
// Linear's codes and scales. Training on CPU / CUDA keeps the stored codes (the backward's
// dequantization reads them) beside the kernel's layout: int4 twice; int8's layout is the codes
// themselves, with the scales once more in the activation dtype.
int64_t frozen_weight_bytes(const torch::nn::Module& model, const std::string& dtype) {
  const int64_t w = bytes_of(dtype);
  int64_t total = 0;
  for (const auto& p : model.named_parameters(true))
    if (!p.value().requires_grad()) total += p.value().numel() * w;
  for (const auto& sub : model.named_modules()) {
    const auto* proj = dynamic_cast<const model::ProjectionImpl*>(sub.value().get());
    if (!proj || !proj->quantized()) continue;
    const auto& q = proj->quantized_weight();
    const int64_t n = q.qweight.size(0), k = q.mode == "int4" ? q.qweight.size(1) * 2 : q.qweight.size(1);
    total += model::quantized_bytes(q.mode, n, k, q.group);
    if (q.mode == "int4") total += n * k / 2 + (k / q.group) * n * 2 * w;
    else total += n * w;
  }
  return total;
}

MemoryEstimate estimate_one(const config::RunConfig& cfg, int64_t baseline) {
  MemoryEstimate e;
  e.dtype = cfg.dtype;
  e.quantize = cfg.model.quantize;
  const runtime::BuiltModel built = runtime::build_model(cfg, runtime::Weights::kMeta);
  const auto& m = *built.model;
  const int64_t act = bytes_of(cfg.dtype);  // the frozen weights' dtype is the activations'
  e.baseline = baseline;
  e.weights = frozen_weight_bytes(m, cfg.dtype);
  int64_t trainable = 0;
  for (const auto& [name, t] : built.trainable) trainable += t.numel();
  e.trainable = trainable * 16;  // fp32 weight, gradient, AdamW's exp_avg and exp_avg_sq

  const auto& c = m.llm().config();
  const int64_t B = cfg.train.micro_batch_size, T = cfg.data.max_length;
  const int64_t BT = B * T;
  const adapters::BlockShape llm_shape = m.llm().block_shape();
  int64_t per_token = 0, widest_block = 0;
  for (const auto& sub : m.llm().named_modules()) {
    const auto* block = dynamic_cast<const model::LlamaBlockImpl*>(sub.value().get());
    if (!block) continue;
    const int64_t b = llama_block_bytes_per_token(*block, c, llm_shape, act);
    per_token += b;
    widest_block = std::max(widest_block, b);
  }
  const int64_t D = c.hidden_size, V = c.vocab_size, F = c.intermediate_size;
  const int64_t n_blocks = c.num_layers;
  // the final norm's fp32 input and the additive attention mask [B, 1, T, T] shared by every layer
  const int64_t fixed = BT * D * 4 + B * T * T * act;
  // the supervised rows' logits at the backward's peak: log-softmax output, its gradient and the
  // gradient of the logits, fp32 [N, V] each, N <= B x T
  const int64_t head = 3 * BT * V * 4;
  // the last block's backward, right after the head's: the MLP's gradients (of silu(g) * u, g, u)
  // plus, with quantized weights, the dequantized copy of one projection's weight that its backward
  // (and on CPU in fp32 its forward, model/quantize.cpp) multiplies: the widest is the MLP's [F, D]
  const int64_t dequantized = cfg.model.quantize == "none" ? 0 : F * D * act;
  const int64_t backward = BT * 3 * F * act + dequantized;
  if (cfg.train.activation_checkpointing) {
    // each block keeps only its input; in the backward one block at a time is recomputed and holds
    // its saved tensors beside its gradients
    e.activations = n_blocks * BT * D * act + fixed;
    e.transient = std::max(head, BT * widest_block + backward);
  } else {
    e.activations = BT * per_token + fixed;
    e.transient = std::max(head, backward);
  }
  if (m.has_vision()) {
    const auto& vit = m.vision();
    bool trains = false;
    for (const auto& p : vit.parameters()) trains = trains || p.requires_grad();
    if (trains) {  // without a trainable part the ViT runs under no_grad and keeps nothing
      const auto& vc = vit.config();
      const adapters::BlockShape vit_shape = vit.block_shape();
      const int64_t tokens = B * (vc.num_patches() + 1);  // one picture per sample
      for (const auto& sub : vit.named_modules())
        if (const auto* block = dynamic_cast<const model::ClipBlockImpl*>(sub.value().get()))
          e.activations += tokens * clip_block_bytes_per_token(*block, vc, vit_shape, act);
    }
  }
  return e;
}

}  // namespace

std::vector<MemoryEstimate> estimate_memory(const config::RunConfig& cfg, int64_t baseline_bytes) {
  std::vector<std::pair<std::string, std::string>> choices = {{cfg.dtype, cfg.model.quantize}};
  for (const char* d : {"fp32", "bf16"})
    for (const char* q : {"none", "int8", "int4"})
      if (!(d == cfg.dtype && q == cfg.model.quantize)) choices.emplace_back(d, q);
  std::vector<MemoryEstimate> rows;
  for (const auto& [dtype, quantize] : choices) {
    config::RunConfig c = cfg;
    c.dtype = dtype;
    c.model.quantize = quantize;
    try {
      rows.push_back(estimate_one(c, baseline_bytes));
    } catch (const Error& e) {  // e.g. an int4 group that does not divide a weight's inputs
      MemoryEstimate r;
      r.dtype = dtype;
      r.quantize = quantize;
      r.unavailable = e.what();
      rows.push_back(r);
    }
    rows.back().chosen = rows.size() == 1;
  }
  return rows;
}

std::string format_memory_estimates(const std::vector<MemoryEstimate>& rows, const config::RunConfig& cfg) {
  std::ostringstream os;
  auto gib = [](int64_t b) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(b < (int64_t{10} << 30) ? 2 : 1) << static_cast<double>(b) / (1 << 30);
    return s.str();
  };
  os << "estimated peak memory (GiB) of one training step: micro_batch_size " << cfg.train.micro_batch_size
     << " x max_length " << cfg.data.max_length << ", activation_checkpointing "
     << (cfg.train.activation_checkpointing ? "on" : "off") << ", on " << cfg.device
     << (cfg.device == "cpu" ? " (resident set, this process's baseline included)" : " (device memory + the baseline)")
     << "\n";
  os << "  " << std::left << std::setw(6) << "dtype" << std::setw(9) << "quantize" << std::right << std::setw(10)
     << "weights" << std::setw(11) << "trainable" << std::setw(13) << "activations" << std::setw(11) << "transient"
     << std::setw(10) << "baseline" << std::setw(9) << "total" << "\n";
  for (const auto& r : rows) {
    os << (r.chosen ? "* " : "  ") << std::left << std::setw(6) << r.dtype << std::setw(9) << r.quantize;
    if (!r.unavailable.empty()) {
      os << "  cannot run: " << r.unavailable << "\n";
      continue;
    }
    os << std::right << std::setw(10) << gib(r.weights) << std::setw(11) << gib(r.trainable) << std::setw(13)
       << gib(r.activations) << std::setw(11) << gib(r.transient) << std::setw(10) << gib(r.baseline) << std::setw(9)
       << gib(r.total()) << "\n";
  }
  os << "  (* the config's choice; full-length batches with every position supervised: a real run's peak is "
        "at most this, less with dynamic padding and unsupervised prompt tokens)\n";
  return os.str();
}

}  // namespace mmtune::train
