// The frozen LLaMA-family decoder (LlamaForCausalLM layout and parameter names):
//   h = embed(ids);  for each block: h = h + attn(norm1(h)); h = h + mlp(norm2(h));  logits = head(norm(h))
// with RoPE (rotate-half), grouped-query attention through scaled_dot_product_attention, SwiGLU,
// and a preallocated KV cache. Adapters plug in only through include/mmtune/adapters/adapter.h:
// block sites and projection deltas (BlockAdapterImpl), and decoder hooks (DecoderAdapterImpl).
// Dimension letters: B batch, T new tokens, S keys (cached + new), D hidden, H / Hkv heads,
// hd head_dim, F intermediate, V vocab.
#pragma once

#include <memory>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <mmtune/adapters/adapter.h>
#include <mmtune/model/adapter_slots.h>
#include <mmtune/model/kv_cache.h>
#include <mmtune/model/layers.h>
#include <mmtune/model/llama_config.h>

namespace mmtune::model {

/// What every block of one forward shares.
struct BlockInputs {
  RopeTables rope;      // [B, T, hd]
  torch::Tensor mask;   // [B, 1, T, S] additive, in the model dtype: 0 = may attend, -inf = may not
  int64_t past = 0;     // cached positions before this input (S = past + T)
};

/// The modules of one block under transformers' names: self_attn.{q,k,v,o}_proj,
/// mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm; adapters under "adapters".
class LlamaBlockImpl : public torch::nn::Module {
 public:
  /// `layer` names the block's weights in errors (quantization problems).
  LlamaBlockImpl(const LlamaConfig& config, const torch::TensorOptions& options, int64_t layer = 0);
  /// x [B, T, D] -> [B, T, D]. Appends this input's keys/values to `cache` when given.
  torch::Tensor forward(const torch::Tensor& x, const BlockInputs& in, LayerCache* cache,
                        adapters::ForwardContext& ctx);
  /// Attaches a family's adapter under adapters.<family>. Throws if that family is already attached.
  void attach(const std::string& family, std::shared_ptr<adapters::BlockAdapterImpl> adapter);
  const std::vector<std::shared_ptr<adapters::BlockAdapterImpl>>& block_adapters() const { return slots_.adapters(); }

 private:
  torch::Tensor attention(const torch::Tensor& a, const BlockInputs& in, LayerCache* cache,
                          adapters::ForwardContext& ctx);

  int64_t n_heads_, n_kv_heads_, head_dim_;
  Projection q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, o_proj_{nullptr};
  Projection gate_proj_{nullptr}, up_proj_{nullptr}, down_proj_{nullptr};
  RMSNorm input_layernorm_{nullptr}, post_attention_layernorm_{nullptr};
  AdapterSlots slots_;
};
TORCH_MODULE(LlamaBlock);

/// Input of one decoder forward: token ids or ready embeddings, plus masks.
struct DecoderInput {
  torch::Tensor ids;             // [B, T] int64 ...
  torch::Tensor embeds;          // ... or [B, T, D] (multimodal sequences assembled by the caller)
  torch::Tensor attention_mask;  // [B, T]: nonzero = real token (left or right padding); undefined = all real
  torch::Tensor positions;       // [B, T] int64; undefined = count of real tokens before each one
};

class LlamaDecoderImpl : public torch::nn::Module {
 public:
  LlamaDecoderImpl(const LlamaConfig& config, const torch::TensorOptions& options);

  /// Logits [B, T, V] (in the model dtype). With `cache`, the input continues the cached sequence.
  torch::Tensor forward(const DecoderInput& in, KVCache* cache, adapters::ForwardContext& ctx);
  /// Final-norm hidden states [B, T, D].
  torch::Tensor hidden_states(const DecoderInput& in, KVCache* cache, adapters::ForwardContext& ctx);
  /// hidden [.., D] -> logits [.., V] through the LM head (tied: the embedding).
  torch::Tensor logits(const torch::Tensor& hidden);
  /// ids [B, T] -> embeddings [B, T, D] (the decoder adapter's table when it overrides it).
  torch::Tensor embed(const torch::Tensor& ids);

  /// An empty cache for `batch` sequences of up to `capacity` positions.
  KVCache new_cache(int64_t batch, int64_t capacity) const;

  void attach_block_adapter(int64_t layer, const std::string& family,
                            std::shared_ptr<adapters::BlockAdapterImpl> adapter);
  void attach_decoder_adapter(const std::string& family, std::shared_ptr<adapters::DecoderAdapterImpl> adapter);
  /// Runs one block the decoder owns or an adapter owns (IAA's inserted layers use this).
  torch::Tensor run_block(LlamaBlockImpl& block, const torch::Tensor& h, const BlockInputs& in, LayerCache* cache,
                          adapters::ForwardContext& ctx);

  const LlamaConfig& config() const { return config_; }
  const torch::TensorOptions& options() const { return options_; }
  /// The shape every block offers to adapters.
  adapters::BlockShape block_shape() const;
  LlamaBlockImpl& block(int64_t i) { return *blocks_[i]; }
  /// The first enabled decoder adapter, or nullptr.
  adapters::DecoderAdapterImpl* active_decoder_adapter() const;

  /// How a frozen block runs while gradients are recorded without a KV cache (training):
  /// wrapper(run, h, block) must return run(h), e.g. through activation checkpointing
  /// (train/checkpointing_fn.h), which calls `run` again in backward. The first call of `run`
  /// updates the forward's context; later calls work on a copy of the context as the block saw it.
  using BlockWrapper = std::function<torch::Tensor(const std::function<torch::Tensor(const torch::Tensor&)>& run,
                                                   const torch::Tensor& h, LlamaBlockImpl& block)>;
  void set_block_wrapper(BlockWrapper wrapper) { block_wrapper_ = std::move(wrapper); }

 private:
  BlockInputs block_inputs(const DecoderInput& in, int64_t batch, int64_t t, torch::Tensor valid, KVCache* cache,
                           adapters::ForwardContext& ctx);

  LlamaConfig config_;
  torch::TensorOptions options_;
  Rope rope_;
  std::shared_ptr<torch::nn::Module> model_;  // "model": embed_tokens, layers, norm
  Embedding embed_tokens_{nullptr};
  std::vector<LlamaBlock> blocks_;
  RMSNorm norm_{nullptr};
  Projection lm_head_{nullptr};  // absent when tied
  torch::nn::ModuleDict decoder_adapters_{nullptr};
  std::vector<std::shared_ptr<adapters::DecoderAdapterImpl>> decoder_adapter_list_;
  BlockWrapper block_wrapper_;
};
TORCH_MODULE(LlamaDecoder);

}  // namespace mmtune::model
