#include <mmtune/adapters/mma.h>
#include <mmtune/core/strings.h>

#include <cmath>

namespace mmtune::adapters {
namespace {
const std::vector<std::string> kLlmPlacement{"attn", "block"};
const std::vector<std::string> kVisionPlacement{"router", "router_block", "none"};
const std::vector<std::string> kRouterModes{"per_sample_cls", "official_lnd_quirk"};
}  // namespace

void MmaConfig::visit(config::Visitor& v) {
  v("dim", dim, "adapter hidden width h");
  v("scale", scale, "adapter output scale s");
  v("temperature", temperature, "router softmax temperature t");
  v("dropout", dropout, "dropout on the adapter hidden (training only)");
  v.choice("llm_placement", llm_placement, kLlmPlacement, "LLM blocks: before attention, or also before the FFN");
  v.choice("vision_placement", vision_placement, kVisionPlacement, "CLIP blocks: before attention, also before the MLP, or none");
  v.choice("clip_router_mode", clip_router_mode, kRouterModes, "CLIP routing: per sample from CLS, or LaVIN's batch quirk");
  v("rope_decode_offset", rope_decode_offset, "1 = clean decode positions; 0 = LaVIN's off-by-one");
  v("modality_token", modality_token, "prepend the modality embedding at position 0");
  v("image_prefix", image_prefix, "text before the visual tokens of an image sample");
  v("text_prefix", text_prefix, "text in their place for a text-only sample");
}

void MmaConfig::validate(config::Problems& p, const std::string& path) const {
  if (dim <= 0 || dim % 2 != 0) p.add(path + ".dim", cat("must be a positive even number (two groups), got ", dim));
  if (temperature <= 0) p.add(path + ".temperature", "must be > 0");
  if (dropout < 0 || dropout >= 1) p.add(path + ".dropout", "must be in [0, 1)");
  if (rope_decode_offset != 0 && rope_decode_offset != 1) p.add(path + ".rope_decode_offset", "must be 0 or 1");
}

namespace {

torch::Tensor xavier(std::vector<int64_t> shape, int64_t fan_in, int64_t fan_out, const torch::TensorOptions& o) {
  const double bound = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return torch::empty(shape, o).uniform_(-bound, bound);
}

}  // namespace

RepAdapterRouterImpl::RepAdapterRouterImpl(int64_t C, const MmaConfig& c, const torch::Device& device)
    : scale_(c.scale), temperature_(c.temperature), dropout_(c.dropout) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const int64_t h = c.dim;
  // down: Xavier-uniform, zero bias; ups: zero (a fresh adapter is the identity); router: nn.Linear's default
  auto conv_a = register_module("conv_A", std::make_shared<torch::nn::Module>());
  a_w_ = conv_a->register_parameter("weight", xavier({h, C, 1}, C, h, f32));
  a_b_ = conv_a->register_parameter("bias", torch::zeros({h}, f32));
  auto conv_b = register_module("conv_B", std::make_shared<torch::nn::Module>());
  b_w_ = conv_b->register_parameter("weight", torch::zeros({C, h / 2, 1}, f32));
  b_b_ = conv_b->register_parameter("bias", torch::zeros({C}, f32));
  auto conv_d = register_module("conv_D", std::make_shared<torch::nn::Module>());
  d_w_ = conv_d->register_parameter("weight", torch::zeros({C, h / 2, 1}, f32));
  d_b_ = conv_d->register_parameter("bias", torch::zeros({C}, f32));
  auto router = register_module("expert_weights", std::make_shared<torch::nn::Module>());
  const double bound = 1.0 / std::sqrt(static_cast<double>(C));
  r_w_ = router->register_parameter("weight", torch::empty({2, C}, f32).uniform_(-bound, bound));
  r_b_ = router->register_parameter("bias", torch::empty({2}, f32).uniform_(-bound, bound));
}

torch::Tensor RepAdapterRouterImpl::route(const torch::Tensor& x, bool per_token_of_first) const {
  namespace F = torch::nn::functional;
  if (per_token_of_first) {
    // LaVIN's CLIP runs tokens-first and indexes x[:, 0]: the token sequence of the batch's first
    // image, one routing pair per token position, applied to every sample. [1, T, 2]
    return (F::linear(x[0].to(r_w_.scalar_type()), r_w_, r_b_) / temperature_).softmax(-1).unsqueeze(0);
  }
  // per sample, from token 0 (the modality token in the LLM, CLS in the ViT): [B, 1, 2]
  return (F::linear(x.select(1, 0).to(r_w_.scalar_type()), r_w_, r_b_) / temperature_).softmax(-1).unsqueeze(1);
}

namespace {

/// LaVIN's grouped 1x1 conv (groups = 2) as two linears: output half g reads hidden half g.
/// hid [B, T, h], w [C, h/2, 1] -> [B, T, C]. (Written with conv1d as LaVIN does, the parity test's
/// numbers are the same to the last digit; linears are the faster kernels.)
torch::Tensor grouped_up(const torch::Tensor& hid, const torch::Tensor& w, const torch::Tensor& b) {
  const int64_t C = w.size(0), hh = w.size(1);
  const torch::Tensor w2 = w.squeeze(-1);  // [C, h/2]
  const torch::Tensor lo = torch::nn::functional::linear(hid.narrow(-1, 0, hh), w2.narrow(0, 0, C / 2));
  const torch::Tensor hi = torch::nn::functional::linear(hid.narrow(-1, hh, hh), w2.narrow(0, C / 2, C - C / 2));
  return torch::cat({lo, hi}, -1) + b;
}

}  // namespace

torch::Tensor RepAdapterRouterImpl::forward(const torch::Tensor& x, const torch::Tensor& w) {
  const torch::Tensor xf = x.to(a_w_.scalar_type());  // the master weights' dtype: fp32 (fp64 in numerical checks)
  torch::Tensor hid = torch::nn::functional::linear(xf, a_w_.squeeze(-1), a_b_);  // [B, T, h], no activation
  if (dropout_ > 0 && is_training()) hid = torch::dropout(hid, dropout_, true);
  const torch::Tensor mix = w.narrow(-1, 0, 1) * grouped_up(hid, b_w_, b_b_) + w.narrow(-1, 1, 1) * grouped_up(hid, d_w_, d_b_);
  return (xf + scale_ * mix).to(x.scalar_type());
}

MmaAdapterImpl::MmaAdapterImpl(int64_t C, const MmaConfig& c, bool vision, std::string key, const torch::Device& device)
    : vision_(vision), lnd_quirk_(vision && c.clip_router_mode == "official_lnd_quirk"), key_(std::move(key)) {
  attn_ = register_module("adapter_attn", RepAdapterRouter(C, c, device));
  if (vision ? c.vision_placement == "router_block" : c.llm_placement == "block")
    mlp_ = register_module("adapter_mlp", RepAdapterRouter(C, c, device));
}

int64_t MmaAdapterImpl::saved_bytes_per_token(const BlockShape& shape, int64_t) const {
  return (mlp_ ? 2 : 1) * 3 * shape.width * 4;
}

torch::Tensor MmaAdapterImpl::at(Site site, torch::Tensor x, ForwardContext& ctx) {
  RepAdapterRouterImpl& a = site == Site::kPreMlp ? *mlp_ : *attn_;
  // LLM routing is computed in the first pass over a sequence and reused by the decode steps
  const std::string key = key_ + (site == Site::kPreMlp ? ".mlp" : ".attn");
  torch::Tensor w;
  if (!vision_ && !ctx.prefill) {
    auto it = ctx.state.find(key);
    TORCH_CHECK(it != ctx.state.end(), "MM-adapter routing weights missing at a decode step (", key, ")");
    w = it->second;
  } else {
    w = a.route(x, lnd_quirk_);
    if (!vision_) ctx.state[key] = w;
  }
  return a.forward(x, w);
}

MmaDecoderAdapterImpl::MmaDecoderAdapterImpl(int64_t D, int64_t Cv, int64_t hidden, const MmaConfig& c,
                                             const torch::Device& device)
    : modality_token_(c.modality_token), rope_decode_offset_(c.rope_decode_offset) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  if (Cv > 0) {
    auto proj = register_module("adapter_proj", std::make_shared<torch::nn::Module>());
    auto a = proj->register_module("conv_A", std::make_shared<torch::nn::Module>());
    neck_a_w_ = a->register_parameter("weight", xavier({hidden, Cv}, Cv, hidden, f32));
    neck_a_b_ = a->register_parameter("bias", torch::zeros({hidden}, f32));
    auto b = proj->register_module("conv_B", std::make_shared<torch::nn::Module>());
    neck_b_w_ = b->register_parameter("weight", xavier({D, hidden}, hidden, D, f32));
    neck_b_b_ = b->register_parameter("bias", torch::zeros({D}, f32));
  }
  if (modality_token_) {
    auto emb = register_module("adapter_modality_embedding", std::make_shared<torch::nn::Module>());
    modality_ = emb->register_parameter("weight", torch::empty({2, D}, f32).normal_());
  }
}

torch::Tensor MmaDecoderAdapterImpl::neck(const torch::Tensor& feats) const {
  namespace F = torch::nn::functional;
  TORCH_CHECK(neck_a_w_.defined(), "this MMA model has no vision tower");
  return F::linear(torch::silu(F::linear(feats.to(neck_a_w_.scalar_type()), neck_a_w_, neck_a_b_)), neck_b_w_, neck_b_b_);
}

torch::Tensor MmaDecoderAdapterImpl::modality_embedding(const torch::Tensor& modality) const {
  return torch::embedding(modality_, modality).unsqueeze(1);
}

torch::Tensor MmaDecoderAdapterImpl::prefix_embeddings(ForwardContext& ctx) {
  if (!modality_token_) return {};
  TORCH_CHECK(ctx.modality.defined(), "the MMA modality token needs ForwardContext::modality");
  return modality_embedding(ctx.modality.to(modality_.device()));  // [B, 1, D]
}

void MmaDecoderAdapterImpl::edit_attention(torch::Tensor& mask, torch::Tensor& positions, ForwardContext& ctx) {
  if (!modality_token_) return;
  // key column 0 (the modality token) is visible only from query position 0 (itself)
  const int64_t T = mask.size(2);
  const int64_t first = ctx.past == 0 ? 1 : 0;  // the query row that is position 0, if present
  if (T > first) mask.narrow(2, first, T - first).select(3, 0).fill_(false);
  // LaVIN feeds decode step p at RoPE position p where the prompt had p + 1 (spec §1.11)
  if (rope_decode_offset_ == 0 && !ctx.prefill) positions = positions - 1;
}

FamilyEntry mma_family() {
  FamilyEntry e{"mma", "LaVIN's routed mixture-of-modality adapters (LLM + ViT)",
                [] { return std::make_unique<MmaConfig>(); }, {}, {}, {}};
  e.make_llm_block = [](const config::FamilyConfig& o, const BlockShape& s, int64_t layer, int64_t,
                        const torch::Device& dev) -> std::shared_ptr<BlockAdapterImpl> {
    return std::make_shared<MmaAdapterImpl>(s.width, dynamic_cast<const MmaConfig&>(o), false,
                                            "mma.llm." + std::to_string(layer), dev);
  };
  e.make_vision_block = [](const config::FamilyConfig& o, const BlockShape& s, int64_t layer, int64_t,
                           const torch::Device& dev) -> std::shared_ptr<BlockAdapterImpl> {
    const auto& c = dynamic_cast<const MmaConfig&>(o);
    if (c.vision_placement == "none") return nullptr;
    return std::make_shared<MmaAdapterImpl>(s.width, c, true, "mma.vision." + std::to_string(layer), dev);
  };
  e.make_decoder = [](const config::FamilyConfig& o, int64_t D, int64_t Cv, int64_t hidden,
                      const torch::Device& dev) -> std::shared_ptr<DecoderAdapterImpl> {
    return std::make_shared<MmaDecoderAdapterImpl>(D, Cv, hidden, dynamic_cast<const MmaConfig&>(o), dev);
  };
  e.prompt_layout = [](const config::FamilyConfig& o) {
    const auto& c = dynamic_cast<const MmaConfig&>(o);
    return PromptLayout{c.image_prefix, c.text_prefix, "<image>"};
  };
  // LaVIN's CLIP routing quirk routes every row by row 0 of the whole batch (zero images included)
  e.vision_whole_batch = [](const config::FamilyConfig& o) {
    return dynamic_cast<const MmaConfig&>(o).clip_router_mode == "official_lnd_quirk";
  };
  return e;
}

}  // namespace mmtune::adapters
