#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/model/multimodal.h>

namespace mmtune::model {

using adapters::ForwardContext;

MultimodalLMImpl::MultimodalLMImpl(LlamaDecoder llm, ClipVisionTransformer vision, VisualFeatureSpec spec)
    : llm_(std::move(llm)), vision_(std::move(vision)), spec_(std::move(spec)) {
  register_module("llm", llm_);
  if (!vision_.is_empty()) register_module("vision", vision_);
  if (spec_.feature != "cls_every" && spec_.feature != "patch_layer")
    throw Error("vision.feature '" + spec_.feature + "' is not known", "use cls_every or patch_layer");
  if (spec_.feature == "cls_every" && spec_.cls_every <= 0)
    throw Error(cat("vision.cls_every must be > 0, got ", spec_.cls_every));
  if (!vision_.is_empty()) {
    // checked here, where the ViT's depth is known, not as a torch error in the first forward
    const int64_t L = vision_->config().num_layers;
    if (spec_.feature == "patch_layer" && (spec_.layer < -(L + 1) || spec_.layer > L))
      throw UsageError(cat("vision.layer ", spec_.layer, " is not a hidden state of this ", L, "-block ViT"),
                       cat("use 0..", L, " or -1..-", L + 1, " (-1 = the last block's output, LLaVA uses -2)"));
    if (spec_.feature == "cls_every" && spec_.cls_every > L)
      throw UsageError(cat("vision.cls_every ", spec_.cls_every, " is more than this ViT's ", L, " blocks"),
                       cat("use 1..", L));
  }
}

int64_t MultimodalLMImpl::visual_tokens() const {
  if (vision_.is_empty()) return 0;
  const auto& c = vision_->config();
  const int64_t features = spec_.feature == "cls_every" ? c.num_layers / spec_.cls_every : c.num_patches();
  const auto* da = decoder_adapter();
  return da ? da->visual_token_count(features) : features;
}

adapters::DecoderAdapterImpl* MultimodalLMImpl::decoder_adapter() const { return llm_->active_decoder_adapter(); }

torch::Tensor MultimodalLMImpl::visual_features(const torch::Tensor& pixels, ForwardContext& ctx) {
  if (vision_.is_empty()) throw Error("this model has no vision tower, but the batch has images", "set vision.path");
  bool trains = false;
  for (const auto& p : vision_->parameters()) trains = trains || p.requires_grad();
  std::optional<torch::NoGradGuard> no_grad;
  if (!trains) no_grad.emplace();
  const auto dtype = vision_->parameters().front().scalar_type();
  const torch::Tensor x = pixels.to(vision_->parameters().front().device(), dtype);
  ctx.vision = true;
  torch::Tensor feats;
  if (spec_.feature == "cls_every") {
    std::vector<int64_t> layers;
    for (int64_t k = spec_.cls_every; k <= vision_->config().num_layers; k += spec_.cls_every) layers.push_back(k);
    std::vector<torch::Tensor> cls;
    for (const auto& h : vision_->forward(x, layers, ctx)) cls.push_back(h.select(1, 0));  // [B, W]
    feats = torch::stack(cls, 1);                                                         // [B, n, W]
  } else {
    feats = vision_->forward(x, {spec_.layer}, ctx)[0].narrow(1, 1, vision_->config().num_patches());  // [B, N, W]
  }
  ctx.vision = false;
  return feats;
}

AssembledSequence MultimodalLMImpl::assemble(const MultimodalInput& in, ForwardContext& ctx) {
  auto& llm = *llm_;
  const int64_t B = in.tokens.size(0), T = in.tokens.size(1);
  const auto dev = llm.options().device();
  const auto dtype = llm.options().dtype().toScalarType();
  const auto bool_opts = torch::TensorOptions().dtype(torch::kBool).device(dev);
  const torch::Tensor has_image =
      in.has_image.defined() ? in.has_image.to(dev, torch::kLong) : torch::zeros({B}, torch::TensorOptions().dtype(torch::kLong).device(dev));
  ctx.modality = has_image;
  torch::Tensor h = llm.embed(in.tokens.to(dev));  // [B, T, D]
  const torch::Tensor slots = in.image_slots.defined() ? in.image_slots.to(dev, torch::kBool) : torch::zeros({B, T}, bool_opts);

  const torch::Tensor image_rows = has_image.nonzero().squeeze(1);  // [Bi]
  const int64_t n_images = image_rows.size(0);
  const torch::Tensor slots_per_row = slots.sum(1);  // [B]
  if (n_images > 0) {
    if (!in.images.defined()) throw Error("the batch marks image samples but carries no images");
    auto* da = decoder_adapter();
    if (!da) throw Error("image samples need a projector, and no adapter provides one", "set adapter.family (mma, iaa, mole)");
    const int64_t n = visual_tokens();
    const torch::Tensor expected = has_image * n;
    if (!torch::equal(slots_per_row, expected)) {
      throw Error(cat("image slots per sample ", slots_per_row.cpu(), " do not match ", n, " visual tokens per image sample"),
                  "the SequenceLayout image_tokens must equal the model's visual token count");
    }
    const torch::Tensor pixels = spec_.whole_batch ? in.images : in.images.index_select(0, image_rows.to(in.images.device()));
    torch::Tensor visual = da->project_visual(visual_features(pixels, ctx), ctx);  // [Bi or B, n, D]
    TORCH_CHECK(visual.defined(), "the decoder adapter gave no visual tokens");
    if (spec_.whole_batch) visual = visual.index_select(0, image_rows.to(visual.device()));
    // slots are filled row by row, in order: the k-th slot of sample b gets its k-th visual token
    h = h.masked_scatter(slots.unsqueeze(-1), visual.to(dev, dtype));
  } else if (slots_per_row.any().item<bool>()) {
    throw Error("a text-only sample has image slots", "image slots belong to samples with has_image = 1");
  }

  torch::Tensor valid = in.attention_mask.defined() ? in.attention_mask.to(dev, torch::kBool) : torch::ones({B, T}, bool_opts);
  AssembledSequence out{h, valid, 0};
  if (auto* da = decoder_adapter()) {
    if (torch::Tensor prefix = da->prefix_embeddings(ctx); prefix.defined()) {
      out.prefix = prefix.size(1);
      out.embeds = torch::cat({prefix.to(dev, dtype), h}, 1);                                 // [B, P + T, D]
      out.attention_mask = torch::cat({torch::ones({B, out.prefix}, bool_opts), valid}, 1);  // [B, P + T]
    }
  }
  return out;
}

torch::Tensor MultimodalLMImpl::forward(const MultimodalInput& in, KVCache* cache, ForwardContext& ctx) {
  return llm_->logits(hidden_states(in, cache, ctx));  // [B, T, V]
}

torch::Tensor MultimodalLMImpl::hidden_states(const MultimodalInput& in, KVCache* cache, ForwardContext& ctx) {
  if (cache && cache->length > 0) {
    // a decode step: plain tokens continuing the cached sequence (ctx keeps modality and routing)
    DecoderInput d;
    d.ids = in.tokens.to(llm_->options().device());
    if (in.attention_mask.defined()) d.attention_mask = in.attention_mask;
    return llm_->hidden_states(d, cache, ctx);
  }
  const AssembledSequence seq = assemble(in, ctx);
  const int64_t S = seq.embeds.size(1), limit = llm_->config().max_position_embeddings;
  if (S > limit) {
    throw UsageError(cat("a sequence of ", S, " positions (", seq.prefix, " prefix + ", S - seq.prefix,
                         " tokens) exceeds the model's context of ", limit, " positions"),
                     "lower data.max_length (the prefix counts too)");
  }
  DecoderInput d;
  d.embeds = seq.embeds;
  d.attention_mask = seq.attention_mask;
  const torch::Tensor hidden = llm_->hidden_states(d, cache, ctx);  // [B, P + T, D]
  return seq.prefix ? hidden.narrow(1, seq.prefix, hidden.size(1) - seq.prefix) : hidden;
}

torch::Tensor MultimodalLMImpl::prefill(const MultimodalInput& in, int64_t new_tokens, KVCache& cache,
                                        ForwardContext& ctx) {
  const AssembledSequence seq = assemble(in, ctx);
  const int64_t S = seq.embeds.size(1), limit = llm_->config().max_position_embeddings;
  if (S + new_tokens > limit) {
    throw UsageError(cat("prompt of ", S, " positions + ", new_tokens, " new tokens exceeds the model's context of ", limit,
                         " positions"),
                     "shorten the prompt or lower max_new_tokens");
  }
  cache = llm_->new_cache(seq.embeds.size(0), S + new_tokens);
  DecoderInput d;
  d.embeds = seq.embeds;
  d.attention_mask = seq.attention_mask;
  const torch::Tensor logits = llm_->forward(d, &cache, ctx);  // [B, P + T, V]
  return seq.prefix ? logits.narrow(1, seq.prefix, logits.size(1) - seq.prefix) : logits;
}

}  // namespace mmtune::model
