#include <mmtune/model/adapter_slots.h>

#include <stdexcept>

namespace mmtune::model {

using adapters::Proj;
using adapters::Site;

void AdapterSlots::attach(torch::nn::Module& owner, const std::string& family,
                          std::shared_ptr<adapters::BlockAdapterImpl> adapter) {
  if (!dict_) dict_ = owner.register_module("adapters", torch::nn::ModuleDict());
  if (dict_->contains(family)) throw std::invalid_argument("adapter family '" + family + "' attached twice");
  dict_->update({{family, adapter}});
  for (int s = 0; s < adapters::kNumSites; ++s) site_used_[s] |= adapter->uses(static_cast<Site>(s));
  for (int p = 0; p < adapters::kNumProjs; ++p) proj_used_[p] |= adapter->uses(static_cast<Proj>(p));
  adapters_.push_back(std::move(adapter));
}

torch::Tensor AdapterSlots::site(Site s, torch::Tensor h, adapters::ForwardContext& ctx) const {
  if (!site_used_[static_cast<int>(s)]) return h;
  for (const auto& a : adapters_) {
    if (a->enabled() && a->uses(s)) h = a->at(s, h, ctx);
  }
  return h;
}

torch::Tensor AdapterSlots::proj(Proj p, Projection& w, const torch::Tensor& x, adapters::ForwardContext& ctx) const {
  torch::Tensor y = w->forward(x);
  if (!proj_used_[static_cast<int>(p)]) return y;
  for (const auto& a : adapters_) {
    if (!a->enabled() || !a->uses(p)) continue;
    if (torch::Tensor d = a->delta(p, x, ctx); d.defined()) y = y + d;
  }
  return y;
}

}  // namespace mmtune::model
