#include <mmtune/core/cpu_features.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/strings.h>
#include <mmtune/model/weights.h>

#include "config_against_weights.h"

#include <algorithm>
#include <chrono>
#include <set>

namespace mmtune::model {

namespace {

// The least and greatest value in one pass: a NaN anywhere makes both NaN (torch's min/max
// propagate it), an Inf is one of them. A reduction to two scalars allocates nothing the size of t
// (t contiguous, as both callers' are): isfinite(t).all(), even over 4M-value chunks, left its
// freed temporaries in the heap, which glibc keeps (its mmap threshold rises after the first large
// free): measured 262 MiB more RSS held after loading ViT-L/14 bf16 (579 MiB of weights), 309 MiB
// after 7B bf16, whose load it also slowed from 0.9 to 10 s (BENCHMARKS.md). One item() at the
// end: one device sync per tensor on a GPU.
bool all_finite(const torch::Tensor& t) {
  if (t.numel() == 0) return true;  // aminmax refuses an empty tensor
  const auto [lo, hi] = torch::aminmax(t);
  return torch::isfinite(torch::stack({lo, hi})).all().item<bool>();
}

}  // namespace

void load_weights(torch::nn::Module& module, const io::SafetensorsCheckpoint& ckpt,
                  const std::vector<std::string>& ignore,
                  const std::function<std::string(const std::string&)>& checkpoint_name) {
  std::vector<std::string> missing, shape_errors;  // shape_errors: wrong shape or dtype kind
  std::vector<std::string> non_finite;              // float tensors holding NaN or Inf
  std::set<std::string> used;
  std::set<std::string> filled;  // module names already loaded (quantized from full precision)
  torch::NoGradGuard no_grad;
  // A quantized Projection whose checkpoint holds the full-precision "weight" (not a pre-quantized
  // "qweight"): quantized here, one tensor at a time from the mmap'd file, so the full-precision
  // model is never in memory.
  for (const auto& m : module.named_modules()) {
    auto* proj = dynamic_cast<ProjectionImpl*>(m.value().get());
    if (!proj || !proj->quantized()) continue;
    const std::string qname = checkpoint_name ? checkpoint_name(m.key() + ".qweight") : m.key() + ".qweight";
    const std::string wname = checkpoint_name ? checkpoint_name(m.key() + ".weight") : m.key() + ".weight";
    if (ckpt.contains(qname) || !ckpt.contains(wname)) continue;  // pre-quantized, or missing (listed below)
    const auto& q = proj->quantized_weight();
    const torch::Tensor src = ckpt.tensor(wname);
    const int64_t n = q.qweight.size(0), k = q.mode == "int4" ? q.qweight.size(1) * 2 : q.qweight.size(1);
    used.insert(wname);
    if (!src.is_floating_point() || src.dim() != 2 || src.size(0) != n || src.size(1) != k) {
      shape_errors.push_back(cat(wname, " is ", src.sizes(), " ", src.scalar_type(), " in the checkpoint, [", n, ", ", k,
                                 "] float in the model"));
      continue;
    }
    if (!all_finite(src)) non_finite.push_back(wname);
    proj->set_quantized(quantize_weight(src, q.mode, q.group));
    ckpt.release(wname);  // the full-precision pages leave memory as each weight is quantized
    filled.insert(m.key() + ".qweight");
    filled.insert(m.key() + ".scales");
  }
  auto load_one = [&](const std::string& module_name, torch::Tensor& dst) {
    if (filled.count(module_name)) return;
    const std::string name = checkpoint_name ? checkpoint_name(module_name) : module_name;
    if (!ckpt.contains(name)) {
      missing.push_back(name);
      return;
    }
    used.insert(name);
    const torch::Tensor src = ckpt.tensor(name);
    if (dst.is_floating_point() != src.is_floating_point()) {
      shape_errors.push_back(cat(name, " has dtype ", src.scalar_type(), " in the checkpoint, ", dst.scalar_type(),
                                 " in the model"));
      return;
    }
    if (src.scalar_type() != dst.scalar_type() && !dst.is_floating_point()) {  // quantized: int8 / uint8 exactly
      shape_errors.push_back(cat(name, " has dtype ", src.scalar_type(), " in the checkpoint, ", dst.scalar_type(),
                                 " in the model"));
      return;
    }
    if (src.sizes() != dst.sizes()) {
      shape_errors.push_back(cat(name, " is ", src.sizes(), " in the checkpoint, ", dst.sizes(), " in the model"));
      return;
    }
    if (src.scalar_type() == dst.scalar_type() && dst.device().is_cpu() && src.is_contiguous()) {
      dst.set_data(src);  // the file's own (copy-on-write) pages become the weight: no copy, no second RSS
    } else {
      dst.copy_(src);  // casts dtype, moves device
      ckpt.release(name);  // the file's pages are not needed again: RSS holds the copy only, not both
    }
    // one cheap pass over what was loaded (a corrupt or overflowed export would otherwise go unseen)
    if (dst.is_floating_point() && !all_finite(dst)) non_finite.push_back(name);
  };
  for (auto& p : module.named_parameters(/*recurse=*/true)) load_one(p.key(), p.value());
  for (auto& b : module.named_buffers(/*recurse=*/true)) load_one(b.key(), b.value());
  if (!non_finite.empty()) {
    log::warn() << ckpt.path() << ": " << non_finite.size() << " tensor(s) hold NaN or Inf after loading, e.g. "
                << non_finite.front() << " (hint: the checkpoint is corrupt, or overflowed when saved in a narrower dtype)";
  }
  std::vector<std::string> unexpected;
  for (const auto& name : ckpt.names()) {
    if (!used.count(name) && std::find(ignore.begin(), ignore.end(), name) == ignore.end()) unexpected.push_back(name);
  }
  if (missing.empty() && unexpected.empty() && shape_errors.empty()) return;
  auto list = [](const std::vector<std::string>& v) {
    std::vector<std::string> head(v.begin(), v.begin() + std::min<size_t>(v.size(), 8));
    return join(head, ", ") + (v.size() > 8 ? cat(", ... (", v.size(), " in all)") : "");
  };
  std::string msg = "checkpoint does not fit the model:";
  if (!missing.empty()) msg += cat(" missing ", missing.size(), " [", list(missing), "];");
  if (!unexpected.empty()) msg += cat(" unexpected ", unexpected.size(), " [", list(unexpected), "];");
  if (!shape_errors.empty()) msg += cat(" wrong shape or dtype ", shape_errors.size(), " [", list(shape_errors), "];");
  msg.pop_back();
  throw CheckpointError(ckpt.path(), msg, "maybe config.json and the weights come from different models?");
}

namespace {

// The sizes of config.json against the weights' shapes before anything is allocated (1e12 vocab,
// 1e9 layers: issue 20).
void check_llama_config_against_weights(const LlamaConfig& c, const io::SafetensorsCheckpoint& ckpt) {
  ConfigAgainstWeights check(ckpt);
  check.expect("model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, "vocab_size x hidden_size");
  check.expect("model.layers.0.self_attn.q_proj.weight", {c.num_heads * c.head_dim, c.hidden_size},
               "num_attention_heads * head_dim x hidden_size");
  check.expect("model.layers.0.self_attn.k_proj.weight", {c.num_kv_heads * c.head_dim, c.hidden_size},
               "num_key_value_heads * head_dim x hidden_size");
  check.expect("model.layers.0.mlp.gate_proj.weight", {c.intermediate_size, c.hidden_size},
               "intermediate_size x hidden_size");
  int64_t layers = 0;
  const std::string prefix = "model.layers.";
  for (const auto& name : ckpt.names()) {
    if (name.rfind(prefix, 0) != 0) continue;
    const auto dot = name.find('.', prefix.size());
    try {
      layers = std::max<int64_t>(layers, std::stoll(name.substr(prefix.size(), dot - prefix.size())) + 1);
    } catch (const std::exception&) {
    }
  }
  if (layers != c.num_layers)
    check.problem(cat("config.json's num_hidden_layers is ", c.num_layers, ", the weights have ", layers));
  check.throw_if_any();
}

}  // namespace

LlamaDecoder load_llama(const std::string& dir, const torch::TensorOptions& options, const Quantization& quantize) {
  const auto t0 = std::chrono::steady_clock::now();
  LlamaConfig config = LlamaConfig::from_hf(dir);
  if (config.quantization.enabled()) {
    // a pre-quantized directory (mmtune convert quantize) loads as it was written
    const Quantization& q = config.quantization;
    if (quantize.enabled() && (quantize.mode != q.mode || (q.mode == "int4" && quantize.group != q.group))) {
      throw UsageError(cat(dir, " holds ", q.describe(), " weights, but ", quantize.describe(), " was asked for"),
                       q.mode == "int4" ? cat("set model.quantize=int4 model.quant_group=", q.group,
                                              " (or --quantize int4 --quant-group ", q.group,
                                              "), or point at the full-precision model")
                                        : std::string("set model.quantize=int8, or point at the full-precision model"));
    }
  } else {
    config.quantization = quantize;
  }
  if (config.quantization.enabled() && options.dtype() == torch::kFloat64) {
    throw UsageError("quantized weights cannot run in dtype fp64 (the kernels take fp32, bf16, fp16)",
                     "use dtype fp32 or bf16 with model.quantize, or model.quantize=none for fp64 checks");
  }
  if (config.quantization.mode == "int4") check_int4_device(options.device(), "model.quantize");
  if (config.quantization.mode == "int4" && options.device().is_cpu() && options.dtype() == torch::kFloat32) {
    // the model still runs, but a user waiting minutes per answer deserves to know why
    log::warn() << "int4 weights with fp32 activations decode through LibTorch's fp32 int4 CPU kernel, measured "
                   "15-60x slower than with bf16 activations here (hint: dtype bf16, --dtype bf16)";
  }
  if (options.device().is_cpu() && options.dtype() == torch::kBFloat16 && !cpu_has_fast_bf16_matmul()) {
    log::warn() << "dtype bf16 on a CPU without AVX-512 (BW/VL/DQ), or with oneDNN capped below it by "
                   "ONEDNN_MAX_CPU_ISA: LibTorch multiplies bf16 matrices with its reference loop here, measured "
                   "8x slower than its kernels (hint: dtype fp32, --dtype fp32; model.quantize=int8 still keeps "
                   "the frozen weights small)";
  }
  const auto ckpt = io::SafetensorsCheckpoint::open(dir);
  check_llama_config_against_weights(config, ckpt);
  LlamaDecoder model(config, options);
  // transformers drops lm_head.weight from tied checkpoints, but some writers keep it
  std::vector<std::string> ignore;
  if (config.tie_word_embeddings) ignore.push_back("lm_head.weight");
  load_weights(*model, ckpt, ignore);
  model->eval();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info() << "loaded " << dir << " (" << config.describe() << ", " << options.dtype() << ") in " << s << " s";
  return model;
}

torch::TensorOptions model_options(const std::string& device, const std::string& dtype) {
  torch::Dtype dt = torch::kFloat32;
  if (dtype == "bf16") dt = torch::kBFloat16;
  else if (dtype == "fp16") dt = torch::kFloat16;
  else if (dtype == "fp64") dt = torch::kFloat64;
  else if (dtype != "fp32") throw UsageError("unknown dtype '" + dtype + "'", "use fp32, bf16, fp16 (or fp64 for numerical checks)");
  torch::Device dev(torch::kCPU);
  try {
    dev = torch::Device(device);
  } catch (const c10::Error&) {
    throw UsageError("unknown device '" + device + "'", "use cpu, cuda or cuda:N");
  }
  if (dev.is_cuda() && !torch::cuda::is_available()) {
    throw UsageError("device '" + device + "' asked for, but no CUDA device is available here",
                     "use device: cpu (or run on a machine with a GPU)");
  }
  return torch::TensorOptions().dtype(dt).device(dev);
}

}  // namespace mmtune::model
