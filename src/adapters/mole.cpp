// MoLE's options, the per-block adapter (attention LoRA + router + routed FFN experts), the
// balancing loss and the registry entry. The maths is in include/mmtune/adapters/mole.h; the
// grouped dispatch is in mole_dispatch.cpp, the vision path in mole_vision.cpp.
#include <mmtune/adapters/lora.h>
#include <mmtune/adapters/mole.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

#include <cmath>
#include <tuple>

namespace mmtune::adapters {
namespace {
const std::vector<std::string> kGateModes{"st_top1", "none", "switch", "dense_soft"};
const std::vector<std::string> kBalance{"per_sample_cross_layer", "switch_per_layer"};

namespace F = torch::nn::functional;

// Balancing statistics of one forward, summed over the layers run so far (ForwardContext::state).
constexpr const char* kProbSum = "mole.balance.prob_sum";    // [B, K] sum of p over valid tokens
constexpr const char* kRouteSum = "mole.balance.route_sum";  // [B, K] tokens routed to k (no grad)
constexpr const char* kTokens = "mole.balance.tokens";       // [B] valid tokens (times layers)
constexpr const char* kSwitchSum = "mole.balance.switch_sum";  // [] sum over layers of K sum_k f_k P_k
constexpr const char* kSwitchLayers = "mole.balance.switch_layers";  // [] layers in switch_sum

bool is_ffn(Proj p) { return p == Proj::kGate || p == Proj::kUp || p == Proj::kDown; }

void add_to(ForwardContext& ctx, const char* key, const torch::Tensor& v) {
  auto it = ctx.state.find(key);
  if (it == ctx.state.end()) ctx.state[key] = v;
  else it->second = it->second + v;
}

void clear_balance(ForwardContext& ctx) {
  for (const char* k : {kProbSum, kRouteSum, kTokens, kSwitchSum, kSwitchLayers}) ctx.state.erase(k);
}

}  // namespace

void MoleConfig::visit(config::Visitor& v) {
  v("experts", experts, "LoRA experts per FFN projection (K)");
  v("rank", rank, "rank of every expert and of the attention LoRA");
  v("alpha", alpha, "LoRA alpha (scale alpha / r)");
  v("dropout", dropout, "dropout on LoRA inputs (training only)");
  v("attn_targets", attn_targets, "attention projections with plain LoRA (q k v o)");
  v.choice("gate_mode", gate_mode, kGateModes, "how the top-1 expert's delta is weighted");
  v.choice("balance_loss", balance_loss, kBalance, "load-balancing loss form");
  v("balance_weight", balance_weight, "weight w_bal of the balancing loss");
}

void MoleConfig::validate(config::Problems& p, const std::string& path) const {
  if (experts < 1) p.add(path + ".experts", cat("must be >= 1, got ", experts));
  validate_lora_options(p, path, rank, alpha, dropout, attn_targets, "attn_targets");
  for (const auto& t : attn_targets) {
    if (t == "gate" || t == "up" || t == "down")
      p.add(path + ".attn_targets", "'" + t + "' is an FFN projection: MoLE's experts own gate/up/down",
            "list only q, k, v, o here");
  }
  if (balance_weight < 0) p.add(path + ".balance_weight", "must be >= 0");
}

// ------------------------------------------------------------------------------------- block

MoleBlockImpl::MoleBlockImpl(const MoleConfig& c, const BlockShape& s, int64_t layer, int64_t num_layers,
                             const torch::Device& device)
    : config_(c), layer_(layer), num_layers_(num_layers), scale_(c.alpha / static_cast<double>(c.rank)),
      key_("mole.llm." + std::to_string(layer)) {
  for (const auto& t : c.attn_targets) {
    const Proj p = projection_from_name(t);
    TORCH_CHECK(!is_ffn(p), "MoLE's attention LoRA cannot target '", t, "': the experts own gate/up/down");
    const int i = static_cast<int>(p);
    std::tie(attn_a_[i], attn_b_[i]) = register_lora_pair(*this, t, c.rank, s.in[i], s.out[i], device);
  }
  // router: nn.Linear(D, K) with its default init, U(-1/sqrt(D), 1/sqrt(D)) for weight and bias
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const double bound = 1.0 / std::sqrt(static_cast<double>(s.width));
  auto router = register_module("router", std::make_shared<torch::nn::Module>());
  router_w_ = router->register_parameter("weight", torch::empty({c.experts, s.width}, f32).uniform_(-bound, bound));
  router_b_ = router->register_parameter("bias", torch::empty({c.experts}, f32).uniform_(-bound, bound));
  auto experts = [&](Proj p) {
    const int i = static_cast<int>(p);
    return MoleExperts(c.experts, c.rank, s.in[i], s.out[i], device);
  };
  gate_ = register_module("moe_gate", experts(Proj::kGate));
  up_ = register_module("moe_up", experts(Proj::kUp));
  down_ = register_module("moe_down", experts(Proj::kDown));
}

bool MoleBlockImpl::uses(Proj p) const { return is_ffn(p) || attn_a_[static_cast<int>(p)].defined(); }

std::pair<torch::Tensor, torch::Tensor> MoleBlockImpl::attention_pair(Proj p) const {
  return {attn_a_[static_cast<int>(p)], attn_b_[static_cast<int>(p)]};
}

MoleExpertsImpl& MoleBlockImpl::experts(Proj p) const {
  TORCH_CHECK(is_ffn(p), "MoLE experts exist for gate, up and down only");
  return p == Proj::kGate ? *gate_.ptr() : p == Proj::kUp ? *up_.ptr() : *down_.ptr();
}

torch::Tensor MoleBlockImpl::at(Site site, torch::Tensor h, ForwardContext& ctx) {
  if (site != Site::kPreMlp) return h;
  const int64_t B = h.size(0), T = h.size(1);
  // logits [N, K] in the router's fp32 master dtype from the normed FFN input (the router's softmax
  // runs in fp32, spec §4; in fp64 when the master weights are, for numerical checks)
  const torch::Tensor logits = F::linear(h.reshape({B * T, h.size(2)}).to(router_w_.scalar_type()), router_w_, router_b_);
  const MoleRouting r = route_top1(logits, config_.gate_mode);
  ctx.state[key_ + ".probs"] = r.probs;
  if (r.gate.defined()) {
    ctx.state[key_ + ".gate"] = r.gate;
    ctx.state[key_ + ".order"] = r.order;
    ctx.state[key_ + ".counts"] = torch::tensor(r.counts, torch::kLong);  // [K] on the host
  }
  if (!ctx.prefill) return h;  // decode steps route, but the balancing loss belongs to whole sequences
  torch::Tensor valid = ctx.valid_mask;
  if (!valid.defined()) valid = torch::ones({B, T}, torch::TensorOptions().dtype(torch::kBool).device(h.device()));
  TORCH_CHECK(valid.dim() == 2 && valid.size(0) == B && valid.size(1) == T, "ForwardContext::valid_mask is ",
              valid.sizes(), " but the FFN input is [", B, ", ", T, ", D]: it must cover the assembled sequence");
  if (layer_ == 0) clear_balance(ctx);
  accumulate_balance(r, valid.to(h.device()), B, ctx);
  if (layer_ == num_layers_ - 1) emit_balance(ctx);
  return h;
}

void MoleBlockImpl::accumulate_balance(const MoleRouting& r, const torch::Tensor& valid, int64_t B,
                                       ForwardContext& ctx) const {
  const int64_t K = config_.experts;
  const torch::Tensor v = valid.reshape({B, -1, 1}).to(r.probs.scalar_type());               // [B, T, 1]
  const torch::Tensor p = r.probs.view({B, -1, K});                                          // [B, T, K]
  const torch::Tensor f = F::one_hot(r.expert, K).to(r.probs.scalar_type()).view({B, -1, K});  // [B, T, K], sg
  const torch::Tensor prob_sum = (p * v).sum(1);   // [B, K]
  const torch::Tensor route_sum = (f * v).sum(1);  // [B, K]
  const torch::Tensor tokens = v.sum({1, 2});      // [B]
  ctx.state[key_ + ".expert_tokens"] = route_sum.sum(0).detach();  // [K], for the usage metrics
  if (config_.balance_loss == "per_sample_cross_layer") {
    add_to(ctx, kProbSum, prob_sum);
    add_to(ctx, kRouteSum, route_sum);
    add_to(ctx, kTokens, tokens);
    return;
  }
  // Switch: per layer over all valid tokens of the batch, K * sum_k f_k P_k
  const torch::Tensor n = tokens.sum();
  if (n.item<double>() == 0) return;
  add_to(ctx, kSwitchSum, static_cast<double>(K) * (route_sum.sum(0) / n * (prob_sum.sum(0) / n)).sum());
  add_to(ctx, kSwitchLayers, torch::ones({}, n.options()));
}

void MoleBlockImpl::emit_balance(ForwardContext& ctx) const {
  torch::Tensor loss;
  if (config_.balance_loss == "per_sample_cross_layer") {
    if (!ctx.state.count(kTokens)) return;
    // per sample b, pooled over layers and valid tokens: mean_b sum_k Pbar_bk Fbar_bk; samples without
    // a valid token are left out
    const torch::Tensor tokens = ctx.state[kTokens];  // [B]
    const torch::Tensor has = tokens > 0;
    if (!has.any().item<bool>()) return clear_balance(ctx);
    const torch::Tensor n = tokens.clamp_min(1).unsqueeze(1);  // [B, 1]
    const torch::Tensor per_sample = (ctx.state[kProbSum] / n * (ctx.state[kRouteSum] / n)).sum(1);  // [B]
    loss = per_sample.masked_select(has).mean();
  } else {
    if (!ctx.state.count(kSwitchLayers)) return;
    loss = ctx.state[kSwitchSum] / ctx.state[kSwitchLayers];  // the mean over layers
  }
  clear_balance(ctx);
  ctx.state["mole.balance"] = loss.detach();
  if (config_.experts > 1 && config_.balance_weight > 0)
    ctx.aux_losses.emplace_back(kMoleBalanceLoss, loss * config_.balance_weight);
}

torch::Tensor MoleBlockImpl::delta(Proj p, const torch::Tensor& x, ForwardContext& ctx) {
  const int i = static_cast<int>(p);
  if (!is_ffn(p)) return lora_delta(x, attn_a_[i], attn_b_[i], scale_, config_.dropout, is_training());
  const MoleExpertsImpl& ex = experts(p);
  const int64_t in = x.size(-1), N = x.numel() / in;
  auto state = [&](const char* what) {
    auto it = ctx.state.find(key_ + what);
    TORCH_CHECK(it != ctx.state.end(), "MoLE routing missing for ", key_, ": the block must call Site::kPreMlp first");
    return it->second;
  };
  const torch::Tensor probs = state(".probs");  // [N, K]
  TORCH_CHECK(probs.size(0) == N, "MoLE routing of ", key_, " covers ", probs.size(0), " tokens, the input has ", N);
  torch::Tensor xf = x.reshape({N, in}).to(router_w_.scalar_type());  // [N, in], the masters' dtype (fp32)
  torch::Tensor y;                                                     // [N, out] fp32, token order
  if (config_.gate_mode == "dense_soft") {
    if (config_.dropout > 0 && is_training()) xf = torch::dropout(xf, config_.dropout, true);
    y = ex.mixed(xf, probs) * scale_;
  } else {
    const torch::Tensor order = state(".order");  // [N]
    const torch::Tensor counts = state(".counts");
    const std::vector<int64_t> sizes(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
    torch::Tensor xs = xf.index_select(0, order);  // [N, in] grouped by expert
    if (config_.dropout > 0 && is_training()) xs = torch::dropout(xs, config_.dropout, true);
    const torch::Tensor coef = state(".gate").index_select(0, order) * scale_;  // [N]
    const torch::Tensor ys = ex.grouped(xs, sizes, coef);                       // [N, out] grouped
    y = torch::zeros({N, ys.size(1)}, ys.options()).index_copy(0, order, ys);   // back to token order
  }
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = y.size(1);
  return y.view(shape).to(x.scalar_type());
}

FamilyEntry mole_family() {
  FamilyEntry e{"mole", "sparse top-1 mixture of LoRA experts on the FFN + LoRA on attention",
                [] { return std::make_unique<MoleConfig>(); }, {}, {}, {}};
  e.make_llm_block = [](const config::FamilyConfig& o, const BlockShape& s, int64_t layer, int64_t num_layers,
                        const torch::Device& dev) -> std::shared_ptr<BlockAdapterImpl> {
    return std::make_shared<MoleBlockImpl>(dynamic_cast<const MoleConfig&>(o), s, layer, num_layers, dev);
  };
  // LLaVA-MoLE frames the visual span with its start/end vectors (spec §3.1) when
  // vision.start_end_tokens is on (configs/mole/*.yaml and converted checkpoints set it)
  e.make_decoder_for = [](const config::FamilyConfig&, model::LlamaDecoderImpl& llm,
                          const VisualPath& v) -> std::shared_ptr<DecoderAdapterImpl> {
    if (v.width == 0) return nullptr;  // text-only model: no visual path
    return std::make_shared<MoleDecoderAdapterImpl>(llm.config().hidden_size, v.width, v.start_end_tokens,
                                                    llm.options().device());
  };
  e.activation_checkpointing_unsupported = "its balancing statistics flow across blocks";
  return e;
}

}  // namespace mmtune::adapters
