// IAA: Inner-Adaptor Architecture.
// Wang, Xie, Leng, Yin, "Inner-Adaptor Architecture Empowers Frozen Large Language Model with
// Multimodal Capabilities", AAAI 2025, arXiv:2408.12902. Spec: ../shared/spec/adapters.md §2.
//   for i in 0..L-1:  h = Frozen_i(h);  if i in S: h = Inserted_k(h)      (k = index of i in sorted S)
//   Inserted_k starts as a copy of Frozen_i; the MM workflow has its own embedding, final norm,
//   LM head and projector; the Text workflow is the untouched LLM, bit for bit.
// Optional gates (spec §2.4 a/b) scale the inserted layers' contribution, zero-initialised.
//
// One workflow = one IaaDecoderAdapterImpl attached to the shared frozen decoder under
// "iaa_<workflow>" (adapters/workflows.h attaches more and selects one). Its parameters, under
// llm.adapters.iaa_<workflow>.:
//   embed_tokens.weight [V, D]   norm.weight [D]   lm_head.weight [V, D]    (copies of the base's;
//                                                                            lm_head copies the
//                                                                            embedding when tied)
//   layers.<k>.<a LlamaBlock's own names>                                    (copy of frozen layer S[k])
//   layers.<k>.adapters.gate.{weight,bias}                                   (gate != none)
//   mm_projector.weight / .bias (linear) | mm_projector.{0,2,..}.{weight,bias} (mlpNx_gelu, LLaVA's names)
// The embedding, norm, head, layers and gates run inside the frozen stack and share its dtype
// (bf16 for the 8B recipes); the projector is an fp32 master copy like LaVIN's neck.
#pragma once

#include <string>
#include <vector>

#include <mmtune/adapters/registry.h>
#include <mmtune/model/llama.h>

namespace mmtune::adapters {

struct IaaConfig final : config::FamilyConfig {
  std::vector<int64_t> insert_layers{0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26, 30, 31};  // IAA-14
  std::string workflow = "mm";     // name this adapter serves under (--adapter NAME=DIR, /workflow)
  std::string gate = "none";       // none (final IAA) | parallel (a) | gated (b)
  std::string gate_type = "scalar";  // scalar | linear (D -> D), zero-initialised
  std::vector<std::string> trainable{"projector", "layers", "embedding", "norm", "head"};
  std::string image_token = "<|reserved_special_token_44|>";  // placeholder replaced by the image

  std::string family() const override { return "iaa"; }
  std::unique_ptr<config::FamilyConfig> clone() const override { return std::make_unique<IaaConfig>(*this); }
  void visit(config::Visitor& v) override;
  void validate(config::Problems& p, const std::string& path) const override;
};

/// The module name a workflow's decoder adapter is attached under: "iaa_<workflow>" (LibTorch
/// module names may not contain dots).
std::string iaa_module_name(const std::string& workflow);

/// Number of Linear layers of a projector name: "linear" -> 1, "mlp<N>x_gelu" -> N (N >= 1);
/// 0 for anything else.
int64_t projector_depth(const std::string& name);

/// LLaVA's projector over the vision features: "linear" = one Linear(Cv -> D); "mlpNx_gelu" =
/// Linear(Cv -> D), then N - 1 times GELU, Linear(D -> D). PyTorch's default Linear init, fp32.
/// Parameter names as LLaVA's mm_projector: weight/bias (linear) or <2j>.weight/bias (Sequential).
class VisualProjectorImpl : public torch::nn::Module {
 public:
  /// Throws mmtune::Error for a name projector_depth does not know.
  VisualProjectorImpl(const std::string& name, int64_t vision_width, int64_t llm_width, const torch::Device& device);
  /// features [B, n, Cv] (any float dtype) -> visual tokens [B, n, D] fp32.
  torch::Tensor forward(const torch::Tensor& features) const;

 private:
  std::vector<torch::Tensor> weights_, biases_;  // weights_[j] [D, Cv or D], biases_[j] [D]
};
TORCH_MODULE(VisualProjector);

/// The zero-initialised gate of inserted layer k (spec §2.4), attached to that layer's LlamaBlock
/// as its block adapter "gate" (hooks kBlockIn and kBlockOut, so the decoder's own block code runs
/// the layer). With y = Frozen_i(h) the frozen stream entering the inserted layer, I_k(x) = the
/// inserted block (x + attention + MLP), and g_k the gate:
///   scalar: g(x) = w * x               w [1] = 0
///   linear: g(x) = x W^T + b           W [D, D] = 0, b [D] = 0
///   gated    (b): h = y + g_k(I_k(y) - y)        the gate scales the inserted layer's residual
///                                                update; w = 1 gives the final IAA (c)
///   parallel (a): c = I_k(c), h = y + g_k(c)     ControlNet-style: the inserted layers form their
///                                                own chain c, which branches off the frozen stream
///                                                at the first insertion point (c = y there) and is
///                                                added, gated, to every frozen output in S
/// With g = 0 both give h = y after every insertion point, so the workflow computes the frozen
/// stack's stream exactly (bitwise), with its own embedding, norm and head (copies at init).
/// Per-forward values (y, the chain) live in ForwardContext::state under "iaa.<workflow>.*".
class IaaGateImpl : public BlockAdapterImpl {
 public:
  /// `mode` parallel | gated, `type` scalar | linear; `key` "iaa.<workflow>"; `k` of `count` layers.
  IaaGateImpl(const std::string& mode, const std::string& type, int64_t width, std::string key, int64_t k,
              int64_t count, const torch::TensorOptions& options);
  bool uses(Site s) const override { return s == Site::kBlockIn || s == Site::kBlockOut; }
  torch::Tensor at(Site site, torch::Tensor h, ForwardContext& ctx) override;
  /// g(x) for x [B, T, D].
  torch::Tensor gate(const torch::Tensor& x) const;

 private:
  bool parallel_, first_, last_;
  std::string in_key_, chain_key_;
  torch::Tensor weight_, bias_;  // scalar: weight [1]; linear: weight [D, D], bias [D]
};
TORCH_MODULE(IaaGate);

/// One IAA workflow on a frozen decoder: the inserted layers (run through after_layer with their
/// own KV-cache slots "iaa.<workflow>.<k>"), the embedding / final norm / head overrides and the
/// projector. `trainable` parts get requires_grad and make up adapter_parameters(); the other
/// parts stay frozen copies (stage 1 trains the projector alone).
class IaaDecoderAdapterImpl : public DecoderAdapterImpl {
 public:
  /// Copies S's layers, the embedding, final norm and head out of `base` (which must hold its
  /// weights already) into storage of its own. `visual.width` 0 builds no projector. Throws
  /// mmtune::Error when an insertion index is not a layer of `base` or the projector is unknown.
  IaaDecoderAdapterImpl(const IaaConfig& config, model::LlamaDecoderImpl& base, const VisualPath& visual);

  torch::Tensor project_visual(const torch::Tensor& features, ForwardContext& ctx) override;
  std::vector<ScheduledBlock> after_layer(int64_t layer, ForwardContext& ctx) override;
  TokenWeights token_weights() override { return {embed_tokens_->weight, norm_->weight, lm_head_->weight}; }
  std::vector<torch::Tensor> adapter_parameters() override { return trainable_; }

  const std::string& workflow() const { return workflow_; }
  /// The sorted insertion indices S.
  const std::vector<int64_t>& insert_layers() const { return insert_layers_; }
  /// Inserted layer k (after frozen layer insert_layers()[k]).
  model::LlamaBlockImpl& inserted(int64_t k) { return *layers_.at(k); }
  bool has_projector() const { return !projector_.is_empty(); }

 private:
  std::string workflow_;
  std::vector<int64_t> insert_layers_;
  std::vector<int64_t> slot_of_layer_;       // frozen layer i -> k, or -1
  std::vector<model::LlamaBlock> layers_;
  std::vector<std::string> cache_keys_;      // "iaa.<workflow>.<k>"
  model::Embedding embed_tokens_{nullptr};   // weight [V, D]
  model::RMSNorm norm_{nullptr};             // weight [D]
  model::Projection lm_head_{nullptr};       // weight [V, D]
  VisualProjector projector_{nullptr};
  std::vector<torch::Tensor> trainable_;
};
TORCH_MODULE(IaaDecoderAdapter);

FamilyEntry iaa_family();

}  // namespace mmtune::adapters
