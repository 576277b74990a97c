#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/train/grad_sync.h>

namespace mmtune::train {
namespace {

[[noreturn]] void rethrow_collective(const runtime::ProcessGroup& pg, const std::string& what,
                                     const std::exception& e) {
  std::string msg = e.what();
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) msg = c->what_without_backtrace();
  if (const auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
  throw Error(cat("rank ", pg.rank(), "/", pg.size(), ": ", what, " failed (", pg.backend_name(),
                  "): ", msg),
              "another rank probably died or hangs (see its log); collectives give up after "
              "dist.timeout_s");
}

}  // namespace

void all_reduce_sum_checked(runtime::ProcessGroup& pg, torch::Tensor& t, const std::string& what) {
  try {
    pg.all_reduce_sum_(t);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    rethrow_collective(pg, what, e);
  }
}

void broadcast_checked(runtime::ProcessGroup& pg, torch::Tensor& t, int root, const std::string& what) {
  try {
    pg.broadcast_(t, root);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    rethrow_collective(pg, what, e);
  }
}

GradSync::GradSync(runtime::ProcessGroup* pg, runtime::NamedTensors params, int64_t bucket_bytes)
    : pg_(pg), params_(std::move(params)) {
  if (!active()) return;
  Bucket cur;
  int64_t cur_bytes = 0, cur_numel = 0;
  auto close = [&] {
    if (cur.members.empty()) return;
    const torch::Tensor& first = params_[cur.members.front()].second;
    cur.flat = torch::empty({cur_numel}, first.options().requires_grad(false));
    buckets_.push_back(std::move(cur));
    cur = Bucket{};
    cur_bytes = cur_numel = 0;
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& p = params_[i].second;
    if (!cur.members.empty()) {
      const torch::Tensor& first = params_[cur.members.front()].second;
      const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
      if (p.scalar_type() != first.scalar_type() || p.device() != first.device() ||
          cur_bytes + bytes > bucket_bytes)
        close();
    }
    cur.members.push_back(i);
    cur_bytes += p.numel() * static_cast<int64_t>(p.element_size());
    cur_numel += p.numel();
  }
  close();
}

void GradSync::broadcast_parameters() {
  if (!active()) return;
  torch::NoGradGuard no_grad;
  int64_t numel = 0;
  for (const auto& [name, p] : params_) numel += p.numel();
  const auto n = static_cast<double>(params_.size()), w = static_cast<double>(pg_->size());
  torch::Tensor shape = torch::tensor({n, static_cast<double>(numel), n * n}, torch::kFloat64);
  if (!params_.empty() && params_.front().second.is_cuda())
    shape = shape.to(params_.front().second.device());
  all_reduce_sum_checked(*pg_, shape, "checking the trainable set");
  shape = shape.cpu();
  // Equal sums of n and n^2 over ranks mean every rank has the same n.
  if (shape[0].item<double>() != w * n || shape[2].item<double>() != w * n * n ||
      shape[1].item<double>() != w * static_cast<double>(numel)) {
    throw Error(cat("rank ", pg_->rank(), " has ", params_.size(), " trainable tensors (", numel,
                    " elements) but the ranks disagree"),
                "every rank must build the same model and adapter config");
  }
  for (auto& b : buckets_) {
    int64_t off = 0;
    for (size_t i : b.members) {
      const torch::Tensor& p = params_[i].second;
      b.flat.narrow(0, off, p.numel()).copy_(p.detach().reshape(-1));
      off += p.numel();
    }
    broadcast_checked(*pg_, b.flat, 0, "broadcasting parameters");
    off = 0;
    for (size_t i : b.members) {
      torch::Tensor p = params_[i].second;
      p.detach().copy_(b.flat.narrow(0, off, p.numel()).view_as(p));
      off += p.numel();
    }
  }
}

void GradSync::all_reduce_gradients(double divisor) {
  if (!active()) return;
  torch::NoGradGuard no_grad;
  // Which tensors have a gradient on some rank: one small collective.
  torch::Tensor has = torch::zeros({static_cast<int64_t>(params_.size())}, torch::kFloat32);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].second.grad().defined()) has[static_cast<int64_t>(i)] = 1.0f;
  }
  if (!params_.empty() && params_.front().second.is_cuda())
    has = has.to(params_.front().second.device());
  all_reduce_sum_checked(*pg_, has, "all-reducing the gradient mask");
  const auto any = has.cpu();
  const float* any_p = any.data_ptr<float>();
  for (auto& b : buckets_) {
    int64_t off = 0;
    bool needed = false;
    for (size_t i : b.members) {
      const torch::Tensor& p = params_[i].second;
      auto dst = b.flat.narrow(0, off, p.numel());
      if (p.grad().defined())
        dst.copy_(p.grad().reshape(-1));
      else
        dst.zero_();
      needed = needed || any_p[i] > 0;
      off += p.numel();
    }
    if (!needed) continue;
    all_reduce_sum_checked(*pg_, b.flat, "all-reducing gradients");
    if (divisor != 1.0) b.flat.div_(divisor);
    off = 0;
    for (size_t i : b.members) {
      torch::Tensor p = params_[i].second;
      if (any_p[i] > 0) {
        auto src = b.flat.narrow(0, off, p.numel()).view_as(p);
        if (p.grad().defined())
          p.mutable_grad().copy_(src);
        else
          p.mutable_grad() = src.clone();
      }
      off += p.numel();
    }
  }
}

}  // namespace mmtune::train
