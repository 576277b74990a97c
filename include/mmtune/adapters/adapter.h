// The adapter hook interface: how an adapter family plugs into the frozen models without the
// models knowing it (../shared/STYLE.md §11). Header-only: the model layer (mmtune_model) includes
// this file and nothing else from adapters/, and never names a family.
//
// Two levels:
//  - BlockAdapterImpl: per block (LLaMA decoder block or CLIP block). Residual-stream sites
//    (block in, after the attention norm, after the MLP norm, block out) and additive deltas on the
//    frozen projections (q k v o gate up down; CLIP's fc1/fc2 map to up/down). LaVIN's MM-adapter
//    uses kPreAttn (+ kPreMlp), LoRA and MoLE use deltas.
//  - DecoderAdapterImpl: per decoder. Attention-mask edits (LaVIN blocks column 0), a layer
//    schedule (IAA runs an inserted block after chosen frozen layers), and per-workflow embedding /
//    final norm / LM head overrides (IAA).
// Per-forward state lives in ForwardContext, never in modules: cached router weights survive the
// decode steps of one generation; MoLE's routing and aux losses are collected per forward.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace mmtune::adapters {

/// Residual-stream sites inside one block, in execution order.
enum class Site { kBlockIn, kPreAttn /* after the attention norm */, kPreMlp /* after the MLP norm */, kBlockOut };
inline constexpr int kNumSites = 4;

/// Frozen projections a family may add a delta to. CLIP: kO = out_proj, kUp = fc1, kDown = fc2.
enum class Proj { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumProjs = 7;

/// Shapes a family needs to build its per-block modules: in/out width of every projection (zero
/// where a block has no such projection) and the residual width.
struct BlockShape {
  int64_t width = 0;                   // residual stream width (D, or the ViT width)
  int64_t in[kNumProjs] = {};          // input width of each projection
  int64_t out[kNumProjs] = {};         // output width of each projection
};

/// State of one forward pass (training) or of one generation (prefill + decode steps).
struct ForwardContext {
  int64_t layer = -1;    // index of the block running now (set by the model)
  bool prefill = true;   // false while decoding with a KV cache
  int64_t past = 0;      // positions already in the KV cache before the current input
  bool vision = false;   // true inside the vision tower, false inside the LLM
  torch::Tensor modality;    // [B] int64: 1 image sample, 0 text-only (LaVIN's router input); optional
  torch::Tensor image_mask;  // [B, T] bool: image-token positions (IAA / MoLE); optional
  torch::Tensor valid_mask;  // [B, T] bool: non-padding positions of the current input; set by the model
  /// Adapter state keyed by the adapter ("mma.llm.3.router"): survives decode steps, reset per sequence.
  /// By convention "<key>.expert_tokens" ([K] valid tokens routed to each expert, no grad) is reported
  /// by training as expert-usage fractions (runtime::MultimodalTask, StepLoss::stats).
  std::map<std::string, torch::Tensor> state;
  /// Auxiliary losses added during the forward ("mole.balance"); the trainer weights and sums them.
  std::vector<std::pair<std::string, torch::Tensor>> aux_losses;
};

/// A trainable module attached to one frozen block.
class BlockAdapterImpl : public torch::nn::Module {
 public:
  ~BlockAdapterImpl() override = default;
  virtual bool uses(Site) const { return false; }
  virtual bool uses(Proj) const { return false; }
  /// The new residual-stream value at `site`; `h` is [B, T, C].
  virtual torch::Tensor at(Site site, torch::Tensor h, ForwardContext& ctx) { return h; }
  /// An additive delta for frozen projection `p` given its input x [B, T, in] (result [B, T, out]),
  /// or an undefined tensor for none.
  virtual torch::Tensor delta(Proj p, const torch::Tensor& x, ForwardContext& ctx) { return {}; }
  /// The parameters this adapter trains (default: all of its own).
  virtual std::vector<torch::Tensor> adapter_parameters() { return parameters(); }
  /// Bytes per token that this adapter's forward keeps for the backward pass in a block of `shape`
  /// whose activations have `act_bytes` per element (train --dry-run's memory estimate). Default:
  /// the fp32 copy of each used site's input and of each used projection's input (one copy for q,
  /// k, v and one for gate, up when the activations are fp32 already); inner widths left out.
  virtual int64_t saved_bytes_per_token(const BlockShape& shape, int64_t act_bytes) const;
  /// A disabled adapter is skipped: the block computes the base output exactly.
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }

 private:
  bool enabled_ = true;
};

/// What a decoder-level adapter may run after a frozen layer (IAA's inserted layers): `run(h)`
/// applies the frozen model's own block code to a block the adapter owns.
struct ScheduledBlock {
  std::shared_ptr<torch::nn::Module> block;  // a model::LlamaBlockImpl owned by the adapter
  std::string cache_key;                     // its KV-cache slot ("iaa.mm.0")
};

/// The frozen model's own tensors at the two ends of the token path; a decoder adapter returns its
/// copies of those it replaces (IAA's workflows carry their own), undefined for "the frozen model's".
struct TokenWeights {
  torch::Tensor embedding;   // [V, D]: token ids -> the first hidden state
  torch::Tensor final_norm;  // [D]: RMSNorm weight after the last block
  torch::Tensor head;        // [V, D]: last hidden state -> logits
};

/// A trainable module attached to a whole decoder (LLaMA). Its hooks, in the order a forward meets
/// them; every one has a default that leaves the frozen model as it is.
class DecoderAdapterImpl : public torch::nn::Module {
 public:
  ~DecoderAdapterImpl() override = default;

  // ---- sequence assembly (model::MultimodalLM, before the decoder runs) ----

  /// Visual tokens [B, n', D] from the vision tower's features [B, n, W] (a projector: LaVIN's neck,
  /// IAA's and MoLE's MLPs), or undefined when the adapter has no visual path.
  virtual torch::Tensor project_visual(const torch::Tensor& features, ForwardContext& ctx) { return {}; }
  /// n' for n feature vectors, known before any forward (sequence layouts, the dry run): n, or n + 2
  /// where learnt start / end vectors frame the span (MoLE).
  virtual int64_t visual_token_count(int64_t features) const { return features; }
  /// Embeddings [B, P, D] put before the whole sequence, or undefined for none (LaVIN's modality
  /// token, chosen by ctx.modality [B]).
  virtual torch::Tensor prefix_embeddings(ForwardContext& ctx) { return {}; }

  // ---- the decoder (model::LlamaDecoder) ----

  /// The token embedding, final norm and LM head to use (undefined members: the frozen model's).
  virtual TokenWeights token_weights() { return {}; }
  /// The attention layout of the current input, edited in place before the blocks run: `mask`
  /// [B, 1, T, S] bool (true = query i may attend key j; query i is absolute position ctx.past + i)
  /// and `positions` [B, T] int64 (the RoPE position of each query). LaVIN hides its modality token
  /// from later queries and shifts decode steps one position back.
  virtual void edit_attention(torch::Tensor& mask, torch::Tensor& positions, ForwardContext& ctx) {}
  /// Blocks of the adapter's own to run right after frozen layer `layer` ([B, T, D] -> [B, T, D]),
  /// in order; empty for none (IAA's inserted layers).
  virtual std::vector<ScheduledBlock> after_layer(int64_t layer, ForwardContext& ctx) { return {}; }

  /// The tensors training updates (default: every parameter; IAA leaves frozen copies out).
  virtual std::vector<torch::Tensor> adapter_parameters() { return parameters(); }
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }

 private:
  bool enabled_ = true;
};

}  // namespace mmtune::adapters
