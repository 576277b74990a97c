// bf16 autocast around a forward (train.precision: bf16), shared by the trainer and the benchmark.
#pragma once

#include <ATen/autocast_mode.h>

namespace mmtune::train {

/// Turns bf16 autocast on for `type` while alive when `on`; restores the previous state after.
class AutocastScope {
 public:
  AutocastScope(bool on, at::DeviceType type) : on_(on), type_(type) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(type_);
    prev_dtype_ = at::autocast::get_autocast_dtype(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, at::kBFloat16);
  }
  ~AutocastScope() {
    if (!on_) return;
    at::autocast::set_autocast_enabled(type_, prev_enabled_);
    at::autocast::set_autocast_dtype(type_, prev_dtype_);
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_;
  at::DeviceType type_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

}  // namespace mmtune::train
