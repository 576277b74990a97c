// MultimodalLM: a frozen CLIP ViT + a frozen LLaMA decoder glued by whatever the attached decoder
// adapter provides (adapters/adapter.h): the projector that turns vision features into visual
// tokens, embeddings put before the sequence (LaVIN's modality token), mask and position edits.
//   features = ViT(images)            CLS after every k-th block (LaVIN) or one layer's patches (LLaVA)
//   visual   = adapter.project_visual(features)                    [B, n, D]
//   h        = embed(tokens), visual tokens written at the image slots, prefix in front
//   logits   = LLM(h) with the prefix rows dropped, aligned with `tokens`
// The model never names an adapter family; the token layout comes from data/collate (data/batch.h).
#pragma once

#include <string>

#include <torch/torch.h>

#include <mmtune/adapters/adapter.h>
#include <mmtune/model/clip_vit.h>
#include <mmtune/model/kv_cache.h>
#include <mmtune/model/llama.h>

namespace mmtune::model {

/// Which ViT outputs become visual features (config: vision.feature / cls_every / layer).
struct VisualFeatureSpec {
  std::string feature = "cls_every";  // cls_every: CLS after blocks k, 2k, ... | patch_layer: patches of `layer`
  int64_t cls_every = 4;
  int64_t layer = -2;
  /// Run the ViT over every row, zero images of text-only samples included, as LaVIN does (its CLIP
  /// routing quirk makes one row's output depend on row 0). Otherwise only image rows run.
  bool whole_batch = false;
};

/// One forward's inputs; see data::Batch for the layout of the token rows.
struct MultimodalInput {
  torch::Tensor tokens;          // [B, T] int64
  torch::Tensor attention_mask;  // [B, T] bool, true = real token; undefined = all real
  torch::Tensor image_slots;     // [B, T] bool, positions that take visual tokens; undefined = none
  torch::Tensor images;          // [B, 3, S, S] float; undefined = no images
  torch::Tensor has_image;       // [B] int64 (1 image, 0 text); undefined = all text
};

/// The decoder's input sequence after assembly.
struct AssembledSequence {
  torch::Tensor embeds;          // [B, P + T, D] in the LLM dtype
  torch::Tensor attention_mask;  // [B, P + T] bool
  int64_t prefix = 0;            // P: rows before the token rows (LaVIN: 1, the modality token)
};

class MultimodalLMImpl : public torch::nn::Module {
 public:
  /// `vision` may be empty (nullptr) for a text-only model.
  MultimodalLMImpl(LlamaDecoder llm, ClipVisionTransformer vision, VisualFeatureSpec spec);

  /// pixels [B, 3, S, S] -> features [B, n, W]. Runs without autograd when no ViT parameter
  /// requires grad (a frozen tower with no adapters).
  torch::Tensor visual_features(const torch::Tensor& pixels, adapters::ForwardContext& ctx);
  /// Embeds the tokens, writes the visual tokens at the image slots and puts the adapter's prefix
  /// in front. Sets ctx.modality from has_image. Throws mmtune::Error when slot counts do not
  /// match the number of visual tokens.
  AssembledSequence assemble(const MultimodalInput& in, adapters::ForwardContext& ctx);
  /// logits [B, T, V] aligned with in.tokens. With `cache`, a first call is the prefill of the
  /// assembled sequence and later calls (tokens only, no images) continue it.
  torch::Tensor forward(const MultimodalInput& in, KVCache* cache, adapters::ForwardContext& ctx);
  /// forward() without the LM head: final-norm hidden states [B, T, D] aligned with in.tokens, for
  /// a caller that needs logits at some positions only (training: llm().logits() where a label is).
  torch::Tensor hidden_states(const MultimodalInput& in, KVCache* cache, adapters::ForwardContext& ctx);

  /// The first pass of a generation: assembles `in`, makes a KV cache with room for the assembled
  /// sequence plus `new_tokens`, and runs it. Returns the logits [B, T, V] of the token rows; later
  /// steps call forward(tokens, &cache, ctx). Throws UsageError when the model's context is too short.
  torch::Tensor prefill(const MultimodalInput& in, int64_t new_tokens, KVCache& cache, adapters::ForwardContext& ctx);

  LlamaDecoderImpl& llm() { return *llm_; }
  const LlamaDecoderImpl& llm() const { return *llm_; }
  bool has_vision() const { return !vision_.is_empty(); }
  ClipVisionTransformerImpl& vision() { return *vision_; }
  const ClipVisionTransformerImpl& vision() const { return *vision_; }
  const VisualFeatureSpec& spec() const { return spec_; }
  /// Number of visual tokens per image (n): the ViT features, plus what the adapter adds.
  int64_t visual_tokens() const;

 private:
  adapters::DecoderAdapterImpl* decoder_adapter() const;

  LlamaDecoder llm_{nullptr};
  ClipVisionTransformer vision_{nullptr};
  VisualFeatureSpec spec_;
};
TORCH_MODULE(MultimodalLM);

}  // namespace mmtune::model
