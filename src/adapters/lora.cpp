#include <mmtune/adapters/lora.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

namespace mmtune::adapters {

const std::vector<std::string>& lora_projection_names() {
  static const std::vector<std::string> kNames{"q", "k", "v", "o", "gate", "up", "down"};
  return kNames;
}

void validate_lora_options(config::Problems& p, const std::string& path, int64_t rank, double alpha,
                           double dropout, const std::vector<std::string>& targets,
                           const std::string& targets_key) {
  if (rank <= 0) p.add(path + ".rank", cat("must be > 0, got ", rank));
  if (alpha <= 0) p.add(path + ".alpha", "must be > 0");
  if (dropout < 0 || dropout >= 1) p.add(path + ".dropout", "must be in [0, 1)");
  const auto& names = lora_projection_names();
  for (const auto& t : targets) {
    if (std::find(names.begin(), names.end(), t) == names.end()) {
      auto m = closest_match(t, names);
      p.add(path + "." + targets_key, "unknown projection '" + t + "'; projections: " + join(names, ", "),
            m ? "did you mean " + *m + "?" : std::string());
    }
  }
  // a projection listed twice would get two adapters of one name (found by fuzz_peft)
  std::set<std::string> seen;
  for (const auto& t : targets)
    if (!seen.insert(t).second) p.add(path + "." + targets_key, "lists '" + t + "' twice", "name each projection once");
}

void LoraConfig::visit(config::Visitor& v) {
  v("rank", rank, "LoRA rank r");
  v("alpha", alpha, "LoRA alpha (scale alpha / r)");
  v("dropout", dropout, "dropout on the LoRA input (training only)");
  v("targets", targets, "projections adapted: q k v o gate up down");
  v("layers", layers, "layer indices adapted; empty = all");
}

void LoraConfig::validate(config::Problems& p, const std::string& path) const {
  validate_lora_options(p, path, rank, alpha, dropout, targets, "targets");
  if (targets.empty()) p.add(path + ".targets", "must name at least one projection");
  std::set<int64_t> seen;
  for (int64_t l : layers) {
    if (l < 0) p.add(path + ".layers", cat("layer indices must be >= 0, got ", l));
    if (!seen.insert(l).second) p.add(path + ".layers", cat("lists layer ", l, " twice"), "name each layer once");
  }
}

Proj projection_from_name(const std::string& name) {
  const auto& names = lora_projection_names();
  const auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) throw Error("unknown projection '" + name + "'", "projections: " + join(names, ", "));
  return static_cast<Proj>(it - names.begin());
}

const char* projection_name(Proj p) { return lora_projection_names()[static_cast<int>(p)].c_str(); }

std::pair<torch::Tensor, torch::Tensor> register_lora_pair(torch::nn::Module& owner, const std::string& name,
                                                           int64_t rank, int64_t in, int64_t out,
                                                           const torch::Device& device) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  auto pair_module = owner.register_module(name, std::make_shared<torch::nn::Module>());
  // A: Kaiming-uniform with a = sqrt(5) (bound 1 / sqrt(in)), as nn.Linear and PEFT; B: zero,
  // so a fresh adapter leaves the block unchanged.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  torch::Tensor a = pair_module->register_parameter("lora_A", torch::empty({rank, in}, f32).uniform_(-bound, bound));
  torch::Tensor b = pair_module->register_parameter("lora_B", torch::zeros({out, rank}, f32));
  return {a, b};
}

torch::Tensor lora_delta(const torch::Tensor& x, const torch::Tensor& a, const torch::Tensor& b, double scale,
                         double dropout, bool training) {
  torch::Tensor h = x.to(a.scalar_type());  // the master weights' dtype: fp32 (fp64 in numerical checks)
  if (dropout > 0 && training) h = torch::dropout(h, dropout, /*train=*/true);
  // [..., in] -> [..., r] -> [..., out]
  return (torch::nn::functional::linear(torch::nn::functional::linear(h, a), b) * scale).to(x.scalar_type());
}

LoraBlockImpl::LoraBlockImpl(int64_t rank, double alpha, double dropout, const std::vector<std::string>& targets,
                             const BlockShape& shape, const torch::Device& device)
    : scale_(alpha / static_cast<double>(rank)), dropout_(dropout) {
  for (const auto& t : targets) {
    const int p = static_cast<int>(projection_from_name(t));
    TORCH_CHECK(shape.in[p] > 0, "this block has no '", t, "' projection");
    targeted_[p] = true;
    std::tie(a_[p], b_[p]) = register_lora_pair(*this, t, rank, shape.in[p], shape.out[p], device);
  }
}

torch::Tensor LoraBlockImpl::delta(Proj p, const torch::Tensor& x, ForwardContext&) {
  const int i = static_cast<int>(p);
  return lora_delta(x, a_[i], b_[i], scale_, dropout_, is_training());
}

std::pair<torch::Tensor, torch::Tensor> LoraBlockImpl::pair(Proj p) const {
  return {a_[static_cast<int>(p)], b_[static_cast<int>(p)]};
}

std::string llama_projection_path(Proj p) {
  const bool mlp = p == Proj::kGate || p == Proj::kUp || p == Proj::kDown;
  return std::string(mlp ? "mlp." : "self_attn.") + projection_name(p) + "_proj";
}

int64_t merge_lora(model::LlamaDecoderImpl& model) {
  torch::NoGradGuard no_grad;
  int64_t merged = 0;
  for (int64_t i = 0; i < model.config().num_layers; ++i) {
    auto& block = model.block(i);
    for (const auto& adapter : block.block_adapters()) {
      if (!adapter->enabled()) continue;
      auto* lora = dynamic_cast<LoraBlockImpl*>(adapter.get());
      if (!lora) {
        throw Error(cat("layer ", i, " carries a non-LoRA adapter, which cannot be folded into the frozen weights"),
                    "merge works for adapter.family lora only");
      }
      const auto params = block.named_parameters();
      for (int p = 0; p < kNumProjs; ++p) {
        if (!lora->uses(static_cast<Proj>(p))) continue;
        auto [a, b] = lora->pair(static_cast<Proj>(p));
        const std::string path = llama_projection_path(static_cast<Proj>(p));
        if (auto* proj = model::find_projection(block, path); proj && proj->quantized()) {
          throw Error(cat("layer ", i, ".", path, " is quantized (", proj->quantized_weight().mode,
                          "): LoRA cannot be folded into quantized weights"),
                      "merge on the full-precision base: leave out --quantize / model.quantize");
        }
        torch::Tensor w = params[llama_projection_path(static_cast<Proj>(p)) + ".weight"];  // [out, in]
        // [out, r] x [r, in] in fp32, added to W in fp32 and rounded once (fp64 for an fp64 model)
        const torch::Tensor merged_w = w.to(torch::promote_types(w.scalar_type(), torch::kFloat32)) +
                                       lora->scale() * torch::matmul(b, a).to(w.device());
        w.copy_(merged_w.to(w.scalar_type()));
        ++merged;
      }
      lora->set_enabled(false);
    }
  }
  return merged;
}

FamilyEntry lora_family() {
  FamilyEntry e{"lora", "plain LoRA on chosen projections", [] { return std::make_unique<LoraConfig>(); }, {}, {}, {}};
  e.make_llm_block = [](const config::FamilyConfig& options, const BlockShape& shape, int64_t layer, int64_t,
                        const torch::Device& device) -> std::shared_ptr<BlockAdapterImpl> {
    const auto& c = dynamic_cast<const LoraConfig&>(options);
    if (!c.layers.empty() && std::find(c.layers.begin(), c.layers.end(), layer) == c.layers.end()) return nullptr;
    return std::make_shared<LoraBlockImpl>(c.rank, c.alpha, c.dropout, c.targets, shape, device);
  };
  e.peft_form = true;  // adapters/peft.h: PEFT import / export, merged weights
  return e;
}

}  // namespace mmtune::adapters
