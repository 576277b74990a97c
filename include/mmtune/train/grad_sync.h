// Data parallelism for the trainable tensors only (the C++ frontend has no DDP): rank 0's
// parameters are broadcast once at the start, and after the backward passes of a step the
// gradients are summed over ranks in buckets of about 25 MB: each bucket's gradients are copied
// into one flat buffer (one buffer per dtype and device), all-reduced with one collective and
// copied back. The frozen weights never travel.
// The trainer's loss is already normalised by the global token count (each rank backwards
// loss_sum / global_tokens), so the SUM over ranks is the gradient of the global mean: the divisor
// is 1 there. No overlap with backward yet: the all-reduce starts after the last micro-batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <mmtune/runtime/distributed.h>
#include <mmtune/runtime/task.h>

namespace mmtune::train {

inline constexpr int64_t kDefaultBucketBytes = 25LL << 20;

/// pg->all_reduce_sum_(t), turning a c10d failure (a timeout, a peer that died) into a one-line
/// mmtune::Error naming `what`, with a hint about the other ranks and dist.timeout_s.
void all_reduce_sum_checked(runtime::ProcessGroup& pg, torch::Tensor& t, const std::string& what);
/// pg->broadcast_(t, root), failures as above.
void broadcast_checked(runtime::ProcessGroup& pg, torch::Tensor& t, int root, const std::string& what);

class GradSync {
 public:
  /// `params`: the trainable tensors, in the same order on every rank. `pg` may be null or of
  /// size 1: then every call is a no-op. Buckets hold consecutive tensors of one dtype and device,
  /// up to `bucket_bytes` (a larger tensor gets a bucket of its own).
  GradSync(runtime::ProcessGroup* pg, runtime::NamedTensors params, int64_t bucket_bytes = kDefaultBucketBytes);

  /// Copies rank 0's values into every rank's parameters, after checking that every rank has the
  /// same number of trainable tensors and elements (throws mmtune::Error otherwise).
  void broadcast_parameters();
  /// Sums the gradients over ranks in place, then divides them by `divisor` (1: keep the sum).
  /// A gradient undefined on this rank counts as zeros; after the call a parameter has a gradient
  /// on every rank iff it had one on some rank (so the optimiser skips the same tensors
  /// everywhere).
  void all_reduce_gradients(double divisor = 1.0);

  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }
  bool active() const { return pg_ != nullptr && pg_->size() > 1; }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into params_
    torch::Tensor flat;           // [sum of numel], the members' dtype and device
  };
  runtime::ProcessGroup* pg_;
  runtime::NamedTensors params_;
  std::vector<Bucket> buckets_;
};

}  // namespace mmtune::train
