#include <unordered_set>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>

#include <mmtune/train/checkpointing_fn.h>

namespace mmtune::train {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// The autocast settings of one device type.
struct AutocastState {
  bool enabled = false;
  at::ScalarType dtype = at::kBFloat16;
  static AutocastState read(at::DeviceType d) {
    return {at::autocast::is_autocast_enabled(d), at::autocast::get_autocast_dtype(d)};
  }
  void apply(at::DeviceType d) const {
    at::autocast::set_autocast_enabled(d, enabled);
    at::autocast::set_autocast_dtype(d, dtype);
  }
};

/// What forward hands to backward besides the saved inputs (an IValue capsule in saved_data).
struct Saved : torch::CustomClassHolder {
  CheckpointFn fn;
  std::vector<torch::Tensor> params;
  std::vector<bool> input_requires_grad;
  torch::Tensor cpu_rng;
  std::optional<c10::Device> cuda_device;
  torch::Tensor cuda_rng;
  AutocastState autocast_cpu, autocast_cuda;
};

at::Generator default_generator(std::optional<c10::Device> cuda) {
  return cuda ? at::globalContext().defaultGenerator(*cuda) : at::detail::getDefaultCPUGenerator();
}

torch::Tensor get_rng(std::optional<c10::Device> cuda) {
  auto gen = default_generator(cuda);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng(std::optional<c10::Device> cuda, const torch::Tensor& state) {
  auto gen = default_generator(cuda);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

/// Throws if the recomputed graph reaches a leaf that requires grad but is not in `allowed`.
void check_leaves(const std::vector<torch::Tensor>& outputs,
                  const std::vector<torch::Tensor>& allowed) {
  std::unordered_set<const void*> ok;
  for (const auto& t : allowed) ok.insert(t.unsafeGetTensorImpl());
  std::unordered_set<const torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> stack;
  for (const auto& o : outputs) {
    if (o.grad_fn()) stack.push_back(o.grad_fn().get());
  }
  while (!stack.empty()) {
    torch::autograd::Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    if (auto* acc = dynamic_cast<torch::autograd::AccumulateGrad*>(n)) {
      TORCH_CHECK(ok.count(acc->variable.unsafeGetTensorImpl()),
                  "checkpoint: the checkpointed callable uses a tensor that requires grad (shape ",
                  acc->variable.sizes(),
                  ") but is not in `params`; its gradient would be lost. "
                  "Pass every trainable tensor the callable uses, e.g. trainable_tensors(block).");
      continue;
    }
    for (const auto& e : n->next_edges()) {
      if (e.function) stack.push_back(e.function.get());
    }
  }
}

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static variable_list forward(AutogradContext* ctx, c10::intrusive_ptr<Saved> saved,
                               at::TensorList inputs, at::TensorList params) {
    (void)params;  // inputs of the node only, so the graph has edges to them
    for (const auto& t : inputs) {
      saved->input_requires_grad.push_back(t.requires_grad());
      if (t.is_cuda() && !saved->cuda_device) saved->cuda_device = t.device();
    }
    saved->cpu_rng = get_rng(std::nullopt);
    if (saved->cuda_device) saved->cuda_rng = get_rng(saved->cuda_device);
    saved->autocast_cpu = AutocastState::read(at::kCPU);
    saved->autocast_cuda = AutocastState::read(at::kCUDA);
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["saved"] = c10::IValue::make_capsule(saved);
    torch::NoGradGuard no_grad;
    return saved->fn(inputs.vec());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = c10::static_intrusive_pointer_cast<Saved>(ctx->saved_data["saved"].toCapsule());
    const variable_list inputs = ctx->get_saved_variables();
    std::vector<torch::Tensor> detached, wrt;
    for (size_t i = 0; i < inputs.size(); ++i) {
      torch::Tensor d = inputs[i].detach();
      if (saved->input_requires_grad[i]) {
        d.requires_grad_(true);
        wrt.push_back(d);
      }
      detached.push_back(d);
    }
    for (const auto& p : saved->params) wrt.push_back(p);

    // Replay the forward's RNG and autocast state, then give the caller's back.
    const torch::Tensor cpu_now = get_rng(std::nullopt);
    const torch::Tensor cuda_now =
        saved->cuda_device ? get_rng(saved->cuda_device) : torch::Tensor();
    const AutocastState cpu_ac = AutocastState::read(at::kCPU),
                        cuda_ac = AutocastState::read(at::kCUDA);
    set_rng(std::nullopt, saved->cpu_rng);
    if (saved->cuda_device) set_rng(saved->cuda_device, saved->cuda_rng);
    saved->autocast_cpu.apply(at::kCPU);
    saved->autocast_cuda.apply(at::kCUDA);
    std::vector<torch::Tensor> outputs;
    try {
      torch::AutoGradMode grad_on(true);
      outputs = saved->fn(detached);
    } catch (...) {
      set_rng(std::nullopt, cpu_now);
      if (saved->cuda_device) set_rng(saved->cuda_device, cuda_now);
      cpu_ac.apply(at::kCPU);
      cuda_ac.apply(at::kCUDA);
      throw;
    }
    set_rng(std::nullopt, cpu_now);
    if (saved->cuda_device) set_rng(saved->cuda_device, cuda_now);
    cpu_ac.apply(at::kCPU);
    cuda_ac.apply(at::kCUDA);
    at::autocast::clear_cache();

    TORCH_CHECK(outputs.size() == grad_outputs.size(), "checkpoint: the callable returned ",
                outputs.size(), " tensors when recomputed, ", grad_outputs.size(),
                " the first time");
    std::vector<torch::Tensor> outs, grads;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (outputs[i].requires_grad() && grad_outputs[i].defined()) {
        outs.push_back(outputs[i]);
        grads.push_back(grad_outputs[i]);
      }
    }
    variable_list result(1 + inputs.size() +
                         saved->params.size());  // [fn capsule, inputs..., params...]
    if (outs.empty()) return result;
    std::vector<torch::Tensor> allowed(detached);
    allowed.insert(allowed.end(), saved->params.begin(), saved->params.end());
    check_leaves(outs, allowed);
    const variable_list g =
        torch::autograd::grad(outs, wrt, grads, /*retain_graph=*/false, /*create_graph=*/false,
                              /*allow_unused=*/true);
    size_t k = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (saved->input_requires_grad[i]) result[1 + i] = g[k++];
    }
    for (size_t i = 0; i < saved->params.size(); ++i) result[1 + inputs.size() + i] = g[k++];
    return result;
  }
};

}  // namespace

std::vector<torch::Tensor> checkpoint(const CheckpointFn& fn,
                                      const std::vector<torch::Tensor>& inputs,
                                      const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> trainable;
  for (const auto& p : params) {
    if (p.defined() && p.requires_grad()) trainable.push_back(p);
  }
  bool any = !trainable.empty();
  for (const auto& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!torch::GradMode::is_enabled() || !any) return fn(inputs);
  auto saved = c10::make_intrusive<Saved>();
  saved->fn = fn;
  saved->params = trainable;
  return CheckpointFunction::apply(saved, at::TensorList(inputs), at::TensorList(trainable));
}

torch::Tensor checkpoint(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& input, const std::vector<torch::Tensor>& params) {
  // By value: backward calls it after this function has returned.
  return checkpoint(
      [fn](const std::vector<torch::Tensor>& in) { return std::vector<torch::Tensor>{fn(in[0])}; },
      std::vector<torch::Tensor>{input}, params)[0];
}

std::vector<torch::Tensor> trainable_tensors(const torch::nn::Module& module) {
  std::vector<torch::Tensor> out;
  for (const auto& p : module.parameters(/*recurse=*/true)) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

void enable_activation_checkpointing(model::MultimodalLMImpl& model) {
  model.llm().set_block_wrapper([](const std::function<torch::Tensor(const torch::Tensor&)>& run, const torch::Tensor& h,
                                   model::LlamaBlockImpl& block) {
    return checkpoint(run, h, trainable_tensors(block));
  });
}

}  // namespace mmtune::train
