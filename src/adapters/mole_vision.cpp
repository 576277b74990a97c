// LLaVA-MoLE's vision path (spec §3.1): LLaVA-1.5's mlp2x_gelu projector on the patch features of
// the chosen ViT layer, and the learnable start/end vectors around the visual span.
#include <mmtune/adapters/mole.h>

#include <cmath>
#include <tuple>

namespace mmtune::adapters {
namespace {

namespace F = torch::nn::functional;

// nn.Linear(in, out)'s default init under `owner`.<name>: weight [out, in] and bias [out] both
// U(-1/sqrt(in), 1/sqrt(in)) (Kaiming-uniform with a = sqrt(5)).
std::pair<torch::Tensor, torch::Tensor> linear(torch::nn::Module& owner, const std::string& name, int64_t in,
                                               int64_t out, const torch::TensorOptions& o) {
  auto m = owner.register_module(name, std::make_shared<torch::nn::Module>());
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  // register_parameter returns a reference into the module's table, which the next registration may
  // move (ASan: heap-use-after-free when both were arguments of one pair): copy each handle at once
  torch::Tensor w = m->register_parameter("weight", torch::empty({out, in}, o).uniform_(-bound, bound));
  torch::Tensor b = m->register_parameter("bias", torch::empty({out}, o).uniform_(-bound, bound));
  return {w, b};
}

}  // namespace

MoleDecoderAdapterImpl::MoleDecoderAdapterImpl(int64_t D, int64_t W, bool start_end_tokens, const torch::Device& device)
    : start_end_(start_end_tokens) {
  TORCH_CHECK(D > 0 && W > 0, "the MoLE projector needs the LLM and vision widths, got D=", D, " W=", W);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // projector.0: Linear(W -> D), GELU, projector.2: Linear(D -> D), as nn.Sequential names them
  auto projector = register_module("projector", std::make_shared<torch::nn::Module>());
  std::tie(w1_, b1_) = linear(*projector, "0", W, D, f32);
  std::tie(w2_, b2_) = linear(*projector, "2", D, D, f32);
  if (start_end_) {
    const double sigma = 1.0 / std::sqrt(static_cast<double>(D));
    start_ = register_parameter("visual_start_token", torch::empty({1, 1, D}, f32).normal_(0.0, sigma));
    end_ = register_parameter("visual_end_token", torch::empty({1, 1, D}, f32).normal_(0.0, sigma));
  }
}

torch::Tensor MoleDecoderAdapterImpl::project_visual(const torch::Tensor& features, ForwardContext&) {
  TORCH_CHECK(features.dim() == 3 && features.size(2) == w1_.size(1), "MoLE projector expects features [B, n, ",
              w1_.size(1), "], got ", features.sizes());
  // [B, n, W] -> [B, n, D] (exact, erf GELU as nn.GELU)
  const torch::Tensor x = features.to(w1_.device(), w1_.scalar_type());  // the masters' dtype: fp32 (fp64 in checks)
  torch::Tensor v = F::linear(torch::gelu(F::linear(x, w1_, b1_)), w2_, b2_);
  if (!start_end_) return v;
  const int64_t B = v.size(0), D = v.size(2);
  return torch::cat({start_.expand({B, 1, D}), v, end_.expand({B, 1, D})}, 1);  // [B, n + 2, D]
}

}  // namespace mmtune::adapters
