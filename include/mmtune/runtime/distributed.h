// Data-parallel plumbing over LibTorch's c10d: a TCPStore rendezvous from torchrun's environment and
// a Gloo (CPU) or NCCL (CUDA) backend. The C++ frontend has no DDP wrapper; the trainer all-reduces
// the trainable gradients itself through this class.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <mmtune/core/dist_env.h>

namespace mmtune::runtime {

/// True when this build carries the NCCL code path (torch with CUDA, nccl.h found at configure).
bool nccl_compiled();

class ProcessGroup {
 public:
  /// Rendezvous through a TCPStore at MASTER_ADDR:MASTER_PORT (rank 0 hosts it) and create the
  /// backend: "gloo", "nccl", or "auto" (nccl when `device_is_cuda`, else gloo).
  /// A collective that waits longer than `timeout` throws (a dead rank ends the run).
  /// Throws mmtune::Error with a hint when the backend is unavailable or the rendezvous fails.
  static std::unique_ptr<ProcessGroup> create(const DistEnv& env, const std::string& backend,
                                              bool device_is_cuda, std::chrono::milliseconds timeout);

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& backend_name() const { return backend_name_; }

  /// Sum over ranks, in place; waits for completion.
  void all_reduce_sum_(torch::Tensor& t);
  /// Copies `root`'s tensor into every rank's `t`, in place; waits.
  void broadcast_(torch::Tensor& t, int root);
  void barrier();

 private:
  ProcessGroup() = default;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  std::string backend_name_;
  std::chrono::milliseconds timeout_{0};
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace mmtune::runtime
