// The one place where a frozen block meets its adapters: LlamaBlock and ClipBlock both hold an
// AdapterSlots and route every hook site and projection through it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <mmtune/adapters/adapter.h>
#include <mmtune/model/layers.h>

namespace mmtune::model {

class AdapterSlots {
 public:
  /// Registers `adapter` under owner's child "adapters" as `family` (its keys: adapters.<family>.*)
  /// and notes which sites and projections it uses. Throws if that family is already attached.
  void attach(torch::nn::Module& owner, const std::string& family, std::shared_ptr<adapters::BlockAdapterImpl> adapter);
  /// The residual stream after every enabled adapter's hook at `site` (h itself when none uses it).
  torch::Tensor site(adapters::Site s, torch::Tensor h, adapters::ForwardContext& ctx) const;
  /// w(x) plus every enabled adapter's delta for projection `p`.
  torch::Tensor proj(adapters::Proj p, Projection& w, const torch::Tensor& x, adapters::ForwardContext& ctx) const;
  const std::vector<std::shared_ptr<adapters::BlockAdapterImpl>>& adapters() const { return adapters_; }

 private:
  torch::nn::ModuleDict dict_{nullptr};
  std::vector<std::shared_ptr<adapters::BlockAdapterImpl>> adapters_;
  bool site_used_[adapters::kNumSites] = {};
  bool proj_used_[adapters::kNumProjs] = {};
};

}  // namespace mmtune::model
