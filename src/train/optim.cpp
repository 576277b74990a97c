#include <cmath>
#include <set>

#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/train/optim.h>

namespace mmtune::train {

AdamWOptions AdamWOptions::from_config(const config::TrainConfig& train) {
  if (train.betas.size() != 2) throw Error("train.betas must hold two numbers", "e.g. [0.9, 0.95]");
  AdamWOptions o;
  o.beta1 = train.betas[0];
  o.beta2 = train.betas[1];
  o.eps = train.eps;
  o.weight_decay = train.weight_decay;
  return o;
}

bool exempt_from_weight_decay(const std::string& name, const torch::Tensor& t) {
  const bool bias =
      name == "bias" || (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
  return bias || t.dim() <= 1;
}

AdamW::AdamW(runtime::NamedTensors params, AdamWOptions options) : params_(std::move(params)), o_(options) {
  std::set<std::string> seen;
  for (const auto& [name, p] : params_) {
    if (!seen.insert(name).second)
      throw Error("trainable parameter '" + name + "' is listed twice");
    // fp32 master weights; fp64 as well, for the numerical checks of an all-fp64 model
    if (!p.defined() || (p.scalar_type() != torch::kFloat32 && p.scalar_type() != torch::kFloat64)) {
      throw Error(
          cat("trainable parameter '", name, "' is ",
              p.defined() ? c10::toString(p.scalar_type()) : "undefined", ", not fp32"),
          "keep trainable tensors in fp32 (master weights); only frozen weights may be bf16/fp16");
    }
    Slot s;
    s.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Preserve);
    s.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Preserve);
    s.weight_decay = exempt_from_weight_decay(name, p) ? 0.0 : o_.weight_decay;
    slots_.push_back(std::move(s));
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor p = params_[i].second;
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    Slot& s = slots_[i];
    s.step += 1;
    if (s.weight_decay != 0.0) p.mul_(1.0 - lr * s.weight_decay);
    s.exp_avg.lerp_(g, 1.0 - o_.beta1);
    s.exp_avg_sq.mul_(o_.beta2).addcmul_(g, g, 1.0 - o_.beta2);
    const double t = static_cast<double>(s.step);
    const double bias_correction1 = 1.0 - std::pow(o_.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(o_.beta2, t);
    const double step_size = lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    const torch::Tensor denom = (s.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(o_.eps);
    p.addcdiv_(s.exp_avg, denom, -step_size);
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_) p.mutable_grad() = torch::Tensor();
}

std::vector<std::string> AdamW::decayed_names() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (slots_[i].weight_decay != 0.0) out.push_back(params_[i].first);
  }
  return out;
}

int64_t AdamW::steps_of(const std::string& name) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].first == name) return slots_[i].step;
  }
  throw Error("no trainable parameter named '" + name + "'");
}

runtime::NamedTensors AdamW::state_tensors() const {
  runtime::NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& name = params_[i].first;
    out.emplace_back("exp_avg." + name, slots_[i].exp_avg.detach().to(torch::kCPU).clone());
    out.emplace_back("exp_avg_sq." + name, slots_[i].exp_avg_sq.detach().to(torch::kCPU).clone());
    out.emplace_back("step." + name, torch::tensor(slots_[i].step, torch::kInt64));
  }
  return out;
}

void AdamW::load_state_tensors(const std::map<std::string, torch::Tensor>& state,
                               const std::string& path) {
  std::vector<std::string> problems;
  auto find = [&](const std::string& key, const torch::Tensor& like) -> const torch::Tensor* {
    auto it = state.find(key);
    if (it == state.end()) {
      problems.push_back("missing " + key);
      return nullptr;
    }
    if (like.defined() && it->second.sizes() != like.sizes()) {
      problems.push_back(
          cat(key, " has shape ", it->second.sizes(), ", the parameter ", like.sizes()));
      return nullptr;
    }
    if (!like.defined() && it->second.numel() != 1) {
      problems.push_back(key + " is not a scalar");
      return nullptr;
    }
    return &it->second;
  };
  std::vector<const torch::Tensor*> found;
  for (const auto& [name, p] : params_) {
    found.push_back(find("exp_avg." + name, p));
    found.push_back(find("exp_avg_sq." + name, p));
    found.push_back(find("step." + name, torch::Tensor()));
  }
  std::set<std::string> expected;
  for (const auto& [name, p] : params_) {
    for (const char* prefix : {"exp_avg.", "exp_avg_sq.", "step."}) expected.insert(prefix + name);
  }
  for (const auto& [key, t] : state) {
    const bool optimiser_key = key.rfind("exp_avg", 0) == 0 || key.rfind("step.", 0) == 0;
    if (optimiser_key && !expected.count(key)) problems.push_back("unexpected " + key);
  }
  if (!problems.empty()) {
    const size_t shown = std::min<size_t>(problems.size(), 8);
    std::vector<std::string> head(problems.begin(),
                                  problems.begin() + static_cast<std::ptrdiff_t>(shown));
    throw CheckpointError(
        path,
        cat("optimiser state does not fit the trainable parameters (", problems.size(),
            " problems: ", join(head, "; "), problems.size() > shown ? "; ..." : "", ")"),
        "resume with the adapter family and options the checkpoint was trained with");
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Slot& s = slots_[i];
    s.exp_avg.copy_(*found[3 * i]);
    s.exp_avg_sq.copy_(*found[3 * i + 1]);
    s.step = found[3 * i + 2]->to(torch::kInt64).item<int64_t>();
  }
}

double clip_grad_norm(const runtime::NamedTensors& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& [name, p] : params) {
    if (p.grad().defined()) norms.push_back(torch::linalg_vector_norm(p.grad(), 2, {}, false, {}));
  }
  if (norms.empty()) return 0.0;
  const torch::Tensor total = torch::linalg_vector_norm(torch::stack(norms), 2, {}, false, {});
  if (max_norm > 0) {
    const torch::Tensor coef = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
    for (const auto& [name, p] : params) {
      if (p.grad().defined()) p.grad().mul_(coef);
    }
  }
  return total.item<double>();
}

}  // namespace mmtune::train
