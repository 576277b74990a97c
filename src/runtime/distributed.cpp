#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/strings.h>
#include <mmtune/runtime/distributed.h>

#include <cstdlib>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MMTUNE_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace mmtune::runtime {
namespace {

c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, const DistEnv& env,
                                            std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  // Multi-node users name the interface like with PyTorch; on one node the loopback device always
  // works, even where the hostname does not resolve (containers, sandboxes).
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, opts);
}

c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, const DistEnv& env,
                                            std::chrono::milliseconds timeout) {
#ifdef MMTUNE_WITH_NCCL
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, opts);
#else
  (void)store, (void)env, (void)timeout;
  throw Error("this mmtune build has no NCCL backend", "use dist.backend=gloo, or build against a CUDA torch");
#endif
}

}  // namespace

bool nccl_compiled() {
#ifdef MMTUNE_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<ProcessGroup> ProcessGroup::create(const DistEnv& env, const std::string& backend,
                                                   bool device_is_cuda, std::chrono::milliseconds timeout) {
  std::string name = backend == "auto" ? (device_is_cuda ? "nccl" : "gloo") : backend;
  if (name != "gloo" && name != "nccl") {
    throw UsageError("unknown c10d backend '" + backend + "'", "dist.backend: auto | gloo | nccl");
  }
  std::unique_ptr<ProcessGroup> pg(new ProcessGroup());
  pg->rank_ = env.rank;
  pg->size_ = env.world_size;
  pg->timeout_ = timeout;
  pg->backend_name_ = name;
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = env.rank == 0;
  so.numWorkers = env.world_size;
  so.waitWorkers = true;
  so.timeout = timeout;
  try {
    pg->store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    pg->backend_ = name == "nccl" ? make_nccl(pg->store_, env, timeout) : make_gloo(pg->store_, env, timeout);
  } catch (const c10::Error& e) {
    throw Error(cat("rendezvous of rank ", env.rank, "/", env.world_size, " at ", env.master_addr, ":",
                    env.master_port, " (", name, ") failed: ", e.what_without_backtrace()),
                "check MASTER_ADDR/MASTER_PORT, that every rank started, and dist.timeout_s");
  }
  log::debug() << "c10d " << name << " process group ready: rank " << env.rank << " of " << env.world_size;
  return pg;
}

void ProcessGroup::all_reduce_sum_(torch::Tensor& t) {
  std::vector<at::Tensor> ts{t};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  backend_->allreduce(ts, opts)->wait(timeout_);
}

void ProcessGroup::broadcast_(torch::Tensor& t, int root) {
  std::vector<at::Tensor> ts{t};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  backend_->broadcast(ts, opts)->wait(timeout_);
}

void ProcessGroup::barrier() { backend_->barrier()->wait(timeout_); }

}  // namespace mmtune::runtime
