// MoLE's routing and grouped expert dispatch (spec §3.2 "Grouped execution"): one stable sort of
// the tokens by expert per layer, each expert's LoRA on its contiguous slice, no capacity limit,
// no per-token loop; and the per-layer usage counts the trainer reports.
#include <mmtune/adapters/mole.h>

#include <algorithm>
#include <cmath>

namespace mmtune::adapters {

namespace F = torch::nn::functional;

MoleRouting route_top1(const torch::Tensor& logits, const std::string& gate_mode) {
  TORCH_CHECK(logits.dim() == 2, "router logits must be [N, K], got ", logits.sizes());
  const int64_t K = logits.size(1);
  MoleRouting r;
  r.probs = logits.to(torch::promote_types(logits.scalar_type(), torch::kFloat32)).softmax(-1);  // [N, K], fp32 (fp64)
  r.expert = r.probs.argmax(-1);                       // [N], the first maximum on ties
  if (gate_mode == "dense_soft") return r;
  const torch::Tensor p_e = r.probs.gather(1, r.expert.unsqueeze(1)).squeeze(1);  // [N]
  if (gate_mode == "st_top1") r.gate = 1.0 + (p_e - p_e.detach());  // value exactly 1, d/dp_e = 1
  else if (gate_mode == "none") r.gate = torch::ones_like(p_e);
  else if (gate_mode == "switch") r.gate = p_e;
  else TORCH_CHECK(false, "unknown MoLE gate_mode '", gate_mode, "'");
  r.order = torch::argsort(r.expert, /*stable=*/true);  // [N]
  const torch::Tensor counts = torch::bincount(r.expert, {}, K).cpu();  // [K], one host sync per layer
  r.counts.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + K);
  return r;
}

MoleExpertsImpl::MoleExpertsImpl(int64_t K, int64_t rank, int64_t in, int64_t out, const torch::Device& device) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // A: nn.Linear's Kaiming-uniform (a = sqrt(5)) per expert, bound 1 / sqrt(in); B: zero
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  a_ = register_parameter("lora_A", torch::empty({K, rank, in}, f32).uniform_(-bound, bound));
  b_ = register_parameter("lora_B", torch::zeros({K, out, rank}, f32));
}

torch::Tensor MoleExpertsImpl::grouped(const torch::Tensor& xs, const std::vector<int64_t>& counts,
                                       const torch::Tensor& coef) const {
  const int64_t K = a_.size(0);
  TORCH_CHECK(static_cast<int64_t>(counts.size()) == K, "expected ", K, " expert counts, got ", counts.size());
  std::vector<torch::Tensor> outs;
  int64_t offset = 0;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t c = counts[k];
    if (c == 0) continue;
    // the slice's coefficient is applied on the rank-r hidden, the narrowest point: [c, r]
    const torch::Tensor h = F::linear(xs.narrow(0, offset, c), a_[k]) * coef.narrow(0, offset, c).unsqueeze(1);
    outs.push_back(F::linear(h, b_[k]));  // [c, out]
    offset += c;
  }
  TORCH_CHECK(offset == xs.size(0), "expert counts sum to ", offset, " but ", xs.size(0), " tokens were routed");
  if (outs.empty()) return torch::zeros({0, b_.size(1)}, xs.options());
  return outs.size() == 1 ? outs[0] : torch::cat(outs, 0);  // [N, out], grouped order
}

torch::Tensor MoleExpertsImpl::mixed(const torch::Tensor& x, const torch::Tensor& weights) const {
  const int64_t K = a_.size(0), r = a_.size(1), in = a_.size(2), out = b_.size(1), N = x.size(0);
  // h [N, K * r] = x A_cat^T, each expert's r columns scaled by its weight; then B_cat [out, K * r]
  const torch::Tensor h = F::linear(x, a_.reshape({K * r, in})).view({N, K, r}) * weights.unsqueeze(-1);
  const torch::Tensor b_cat = b_.permute({1, 0, 2}).reshape({out, K * r});
  return F::linear(h.reshape({N, K * r}), b_cat);  // [N, out]
}

torch::Tensor mole_expert_tokens(const ForwardContext& ctx) {
  static const std::string prefix = "mole.llm.", suffix = ".expert_tokens";
  std::vector<std::pair<int64_t, torch::Tensor>> rows;
  for (const auto& [key, t] : ctx.state) {
    if (key.size() <= prefix.size() + suffix.size() || key.compare(0, prefix.size(), prefix) != 0 ||
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    rows.emplace_back(std::stoll(key.substr(prefix.size(), key.size() - prefix.size() - suffix.size())), t);
  }
  if (rows.empty()) return {};
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<torch::Tensor> stacked;
  for (auto& [layer, t] : rows) stacked.push_back(t);
  return torch::stack(stacked);  // [L, K]
}

}  // namespace mmtune::adapters
