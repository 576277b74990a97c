// IAA's small modules: LLaVA's projector (linear | mlpNx_gelu) and the optional zero-initialised
// gate of an inserted layer (spec §2.4 a/b; the maths is in include/mmtune/adapters/iaa.h).
#include <mmtune/adapters/iaa.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

#include <cmath>
#include <regex>

namespace mmtune::adapters {

int64_t projector_depth(const std::string& name) {
  if (name == "linear") return 1;
  static const std::regex mlp(R"(mlp([1-9][0-9]?)x_gelu)");
  std::smatch m;
  return std::regex_match(name, m, mlp) ? std::stoll(m[1].str()) : 0;
}

VisualProjectorImpl::VisualProjectorImpl(const std::string& name, int64_t Cv, int64_t D, const torch::Device& device) {
  const int64_t depth = projector_depth(name);
  if (depth == 0) {
    throw Error("vision.projector '" + name + "' is not an IAA projector",
                "IAA uses LLaVA's projectors: set vision.projector to linear or mlp2x_gelu (mlpNx_gelu)");
  }
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  for (int64_t j = 0; j < depth; ++j) {
    const int64_t in = j == 0 ? Cv : D;
    // nn.Linear's default init: kaiming_uniform(a = sqrt 5) = U(-1/sqrt(in), 1/sqrt(in)), same bound for the bias
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    torch::nn::Module* owner = this;
    std::shared_ptr<torch::nn::Module> child;
    if (depth > 1) {
      // LLaVA's nn.Sequential numbering: Linear at 0, GELU at 1, Linear at 2, ...
      child = register_module(std::to_string(2 * j), std::make_shared<torch::nn::Module>());
      owner = child.get();
    }
    weights_.push_back(owner->register_parameter("weight", torch::empty({D, in}, f32).uniform_(-bound, bound)));
    biases_.push_back(owner->register_parameter("bias", torch::empty({D}, f32).uniform_(-bound, bound)));
  }
}

torch::Tensor VisualProjectorImpl::forward(const torch::Tensor& features) const {
  namespace F = torch::nn::functional;
  torch::Tensor x = features.to(weights_.front().scalar_type());  // [B, n, Cv], the masters' dtype: fp32 (fp64 in checks)
  for (size_t j = 0; j < weights_.size(); ++j) {
    if (j > 0) x = torch::gelu(x);  // exact (erf) GELU, as nn.GELU()
    x = F::linear(x, weights_[j], biases_[j]);  // [B, n, D]
  }
  return x;
}

IaaGateImpl::IaaGateImpl(const std::string& mode, const std::string& type, int64_t D, std::string key, int64_t k,
                         int64_t count, const torch::TensorOptions& options)
    : parallel_(mode == "parallel"),
      first_(k == 0),
      last_(k == count - 1),
      in_key_(cat(key, ".", k, ".in")),
      chain_key_(key + ".chain") {
  TORCH_CHECK(mode == "parallel" || mode == "gated", "IAA gate mode must be parallel or gated, got ", mode);
  TORCH_CHECK(type == "scalar" || type == "linear", "IAA gate type must be scalar or linear, got ", type);
  if (type == "scalar") {
    weight_ = register_parameter("weight", torch::zeros({1}, options));
  } else {
    weight_ = register_parameter("weight", torch::zeros({D, D}, options));
    bias_ = register_parameter("bias", torch::zeros({D}, options));
  }
}

torch::Tensor IaaGateImpl::gate(const torch::Tensor& x) const {
  return bias_.defined() ? torch::nn::functional::linear(x, weight_, bias_) : x * weight_;
}

torch::Tensor IaaGateImpl::at(Site site, torch::Tensor x, ForwardContext& ctx) {
  if (site == Site::kBlockIn) {
    // x = y, the frozen stream after frozen layer S[k] [B, T, D]
    ctx.state[in_key_] = x;
    if (!parallel_ || first_) return x;  // the chain branches off the frozen stream at S[0]
    auto chain = ctx.state.find(chain_key_);
    TORCH_CHECK(chain != ctx.state.end(), "IAA parallel gate: the side chain is missing (", chain_key_, ")");
    return chain->second;  // the inserted layer continues the chain c
  }
  // x = I_k(input) [B, T, D]
  auto in = ctx.state.find(in_key_);
  TORCH_CHECK(in != ctx.state.end(), "IAA gate: block input missing (", in_key_, ")");
  const torch::Tensor y = in->second;
  ctx.state.erase(in);
  if (!parallel_) return y + gate(x - y);
  if (last_) ctx.state.erase(chain_key_);
  else ctx.state[chain_key_] = x;
  return y + gate(x);
}

}  // namespace mmtune::adapters
