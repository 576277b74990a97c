#include <mmtune/core/strings.h>
#include <mmtune/model/llama.h>

#include <limits>

namespace mmtune::model {

using adapters::ForwardContext;
using adapters::Proj;
using adapters::Site;

// ---------------------------------------------------------------------------------------- block

LlamaBlockImpl::LlamaBlockImpl(const LlamaConfig& c, const torch::TensorOptions& o, int64_t layer)
    : n_heads_(c.num_heads), n_kv_heads_(c.num_kv_heads), head_dim_(c.head_dim) {
  // in -> out under the checkpoint name model.layers.<layer>.<group>.<name>, quantized as configured
  auto proj = [&](torch::nn::Module& group, const char* group_name, const char* name, int64_t in, int64_t out) {
    const auto& q = c.quantization;
    const std::string mode =
        q.enabled() ? mode_for(q, cat("model.layers.", layer, ".", group_name, ".", name), out, in) : std::string("none");
    return group.register_module(name, Projection(in, out, false, o, mode, mode == "int4" ? q.group : 0));
  };
  auto attn = register_module("self_attn", std::make_shared<ModuleGroup>());
  q_proj_ = proj(*attn, "self_attn", "q_proj", c.hidden_size, c.num_heads * c.head_dim);
  k_proj_ = proj(*attn, "self_attn", "k_proj", c.hidden_size, c.num_kv_heads * c.head_dim);
  v_proj_ = proj(*attn, "self_attn", "v_proj", c.hidden_size, c.num_kv_heads * c.head_dim);
  o_proj_ = proj(*attn, "self_attn", "o_proj", c.num_heads * c.head_dim, c.hidden_size);
  auto mlp = register_module("mlp", std::make_shared<ModuleGroup>());
  gate_proj_ = proj(*mlp, "mlp", "gate_proj", c.hidden_size, c.intermediate_size);
  up_proj_ = proj(*mlp, "mlp", "up_proj", c.hidden_size, c.intermediate_size);
  down_proj_ = proj(*mlp, "mlp", "down_proj", c.intermediate_size, c.hidden_size);
  input_layernorm_ = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
  post_attention_layernorm_ = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
}

void LlamaBlockImpl::attach(const std::string& family, std::shared_ptr<adapters::BlockAdapterImpl> adapter) {
  slots_.attach(*this, family, std::move(adapter));
}

torch::Tensor LlamaBlockImpl::attention(const torch::Tensor& a, const BlockInputs& in, LayerCache* cache,
                                        ForwardContext& ctx) {
  const int64_t B = a.size(0), T = a.size(1);
  // q [B, H, T, hd]; k, v [B, Hkv, T, hd]
  torch::Tensor q = slots_.proj(Proj::kQ, q_proj_, a, ctx).view({B, T, n_heads_, head_dim_}).transpose(1, 2);
  torch::Tensor k = slots_.proj(Proj::kK, k_proj_, a, ctx).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);
  torch::Tensor v = slots_.proj(Proj::kV, v_proj_, a, ctx).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);
  q = apply_rope(q, in.rope);
  k = apply_rope(k, in.rope);
  if (cache) {
    // write into the preallocated cache, then attend over everything cached so far: [B, Hkv, S, hd]
    cache->k.narrow(2, in.past, T).copy_(k);
    cache->v.narrow(2, in.past, T).copy_(v);
    k = cache->k.narrow(2, 0, in.past + T);
    v = cache->v.narrow(2, 0, in.past + T);
  }
  // o [B, H, T, hd] -> [B, T, H * hd]
  const torch::Tensor o = at::scaled_dot_product_attention(q, k, v, in.mask, 0.0, false, std::nullopt,
                                                           /*enable_gqa=*/n_kv_heads_ != n_heads_);
  return slots_.proj(Proj::kO, o_proj_, o.transpose(1, 2).reshape({B, T, n_heads_ * head_dim_}), ctx);
}

torch::Tensor LlamaBlockImpl::forward(const torch::Tensor& x, const BlockInputs& in, LayerCache* cache,
                                      ForwardContext& ctx) {
  torch::Tensor h = slots_.site(Site::kBlockIn, x, ctx);
  const torch::Tensor a = slots_.site(Site::kPreAttn, input_layernorm_->forward(h), ctx);
  h = h + attention(a, in, cache, ctx);
  const torch::Tensor m = slots_.site(Site::kPreMlp, post_attention_layernorm_->forward(h), ctx);
  const torch::Tensor g = slots_.proj(Proj::kGate, gate_proj_, m, ctx);
  const torch::Tensor u = slots_.proj(Proj::kUp, up_proj_, m, ctx);
  h = h + slots_.proj(Proj::kDown, down_proj_, torch::silu(g) * u, ctx);
  return slots_.site(Site::kBlockOut, h, ctx);
}

// -------------------------------------------------------------------------------------- decoder

LlamaDecoderImpl::LlamaDecoderImpl(const LlamaConfig& c, const torch::TensorOptions& o)
    : config_(c), options_(o), rope_(c, o.device()) {
  model_ = register_module("model", std::make_shared<ModuleGroup>());
  embed_tokens_ = model_->register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, o));
  auto layers = model_->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) {
    blocks_.push_back(LlamaBlock(c, o, i));
    layers->push_back(blocks_.back());
  }
  norm_ = model_->register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
  if (!c.tie_word_embeddings) {
    const auto& q = c.quantization;
    const std::string mode = q.enabled() ? mode_for(q, "lm_head", c.vocab_size, c.hidden_size) : std::string("none");
    lm_head_ = register_module("lm_head", Projection(c.hidden_size, c.vocab_size, false, o, mode, mode == "int4" ? q.group : 0));
  }
}

adapters::DecoderAdapterImpl* LlamaDecoderImpl::active_decoder_adapter() const {
  for (const auto& a : decoder_adapter_list_) {
    if (a->enabled()) return a.get();
  }
  return nullptr;
}

torch::Tensor LlamaDecoderImpl::embed(const torch::Tensor& ids) {
  auto* da = active_decoder_adapter();
  return embed_tokens_->forward(ids, da ? da->token_weights().embedding : torch::Tensor());
}

torch::Tensor LlamaDecoderImpl::logits(const torch::Tensor& hidden) {
  auto* da = active_decoder_adapter();
  if (torch::Tensor w = da ? da->token_weights().head : torch::Tensor(); w.defined()) return torch::nn::functional::linear(hidden, w);
  if (lm_head_) return lm_head_->forward(hidden);
  return torch::nn::functional::linear(hidden, embed_tokens_->weight);
}

KVCache LlamaDecoderImpl::new_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  cache.capacity = capacity;
  cache.key_valid = torch::zeros({batch, capacity}, options_.dtype(torch::kBool));
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    // k, v [B, Hkv, capacity, hd]
    cache.layers.push_back({torch::zeros({batch, config_.num_kv_heads, capacity, config_.head_dim}, options_),
                            torch::zeros({batch, config_.num_kv_heads, capacity, config_.head_dim}, options_)});
  }
  return cache;
}

BlockInputs LlamaDecoderImpl::block_inputs(const DecoderInput& in, int64_t B, int64_t T, torch::Tensor valid,
                                           KVCache* cache, ForwardContext& ctx) {
  const int64_t past = cache ? cache->length : 0;
  const int64_t S = past + T;
  if (cache) {
    TORCH_CHECK(S <= cache->capacity, "sequence of ", S, " positions exceeds the KV cache capacity ", cache->capacity);
    cache->key_valid.narrow(1, past, T).copy_(valid);
  }
  // key_valid [B, S]: real tokens among all keys; causal [T, S]: key j visible from query i iff j <= past + i
  const torch::Tensor key_valid = cache ? cache->key_valid.narrow(1, 0, S) : valid;
  const auto dev = valid.device();
  const torch::Tensor q_idx = torch::arange(past, S, torch::TensorOptions().dtype(torch::kLong).device(dev));
  const torch::Tensor k_idx = torch::arange(0, S, torch::TensorOptions().dtype(torch::kLong).device(dev));
  const torch::Tensor causal = k_idx.unsqueeze(0) <= q_idx.unsqueeze(1);
  torch::Tensor mask = (key_valid.unsqueeze(1) & causal.unsqueeze(0)).unsqueeze(1);  // [B, 1, T, S]
  ctx.past = past;
  ctx.prefill = past == 0;
  torch::Tensor positions = in.positions;  // [B, T]
  if (!positions.defined()) {
    // count of real tokens before each one (left padding: the first real token gets 0)
    const torch::Tensor before = cache ? cache->key_valid.narrow(1, 0, past).sum(-1, true) : torch::zeros({B, 1}, torch::kLong).to(dev);
    positions = (before + valid.to(torch::kLong).cumsum(-1) - 1).clamp_min(0);
  }
  if (auto* da = active_decoder_adapter()) da->edit_attention(mask, positions, ctx);
  // A query that may see nothing (a left-padding position) would give NaN in softmax: let it see
  // every key instead. Its output is never used, but must stay finite.
  mask = mask | ~mask.any(-1, /*keepdim=*/true);
  // SDPA turns a bool mask into this additive one in every layer's forward and backward; once here
  // is enough (the same values, so the same results)
  mask = torch::zeros(mask.sizes(), torch::TensorOptions().dtype(options_.dtype()).device(dev))
             .masked_fill_(mask.logical_not(), -std::numeric_limits<double>::infinity());
  ctx.valid_mask = valid;
  return {rope_.tables(positions, options_.dtype().toScalarType()), mask, past};
}

torch::Tensor LlamaDecoderImpl::run_block(LlamaBlockImpl& block, const torch::Tensor& h, const BlockInputs& in,
                                          LayerCache* cache, ForwardContext& ctx) {
  return block.forward(h, in, cache, ctx);
}

torch::Tensor LlamaDecoderImpl::hidden_states(const DecoderInput& in, KVCache* cache, ForwardContext& ctx) {
  TORCH_CHECK(in.ids.defined() != in.embeds.defined(), "DecoderInput needs exactly one of ids and embeds");
  torch::Tensor h = in.embeds.defined() ? in.embeds : embed(in.ids);  // [B, T, D]
  const int64_t B = h.size(0), T = h.size(1);
  const torch::Tensor valid =
      in.attention_mask.defined() ? in.attention_mask.to(torch::kBool)
                                  : torch::ones({B, T}, torch::TensorOptions().dtype(torch::kBool).device(h.device()));
  const BlockInputs bi = block_inputs(in, B, T, valid, cache, ctx);
  auto* da = active_decoder_adapter();
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    ctx.layer = i;
    if (block_wrapper_ && !cache && torch::GradMode::is_enabled()) {
      std::shared_ptr<LlamaBlockImpl> blk = blocks_[i].ptr();
      auto snapshot = std::make_shared<const ForwardContext>(ctx);  // the context as this block sees it
      auto calls = std::make_shared<int>(0);
      ForwardContext* live = &ctx;  // only dereferenced by the first call, inside block_wrapper_
      auto run = [blk, bi, snapshot, calls, live](const torch::Tensor& x) {
        if ((*calls)++ == 0) return blk->forward(x, bi, nullptr, *live);
        ForwardContext again = *snapshot;  // a recomputation in backward: the forward's context is gone
        return blk->forward(x, bi, nullptr, again);
      };
      h = block_wrapper_(run, h, *blk);
    } else {
      h = blocks_[i]->forward(h, bi, cache ? &cache->layers[i] : nullptr, ctx);
    }
    if (!da) continue;
    for (auto& sb : da->after_layer(i, ctx)) {
      auto* blk = dynamic_cast<LlamaBlockImpl*>(sb.block.get());
      TORCH_CHECK(blk, "a scheduled block must be a LlamaBlock");
      LayerCache* lc = nullptr;
      if (cache) {
        auto it = cache->extra.find(sb.cache_key);
        if (it == cache->extra.end()) {
          it = cache->extra.emplace(sb.cache_key, LayerCache{torch::zeros_like(cache->layers[i].k),
                                                             torch::zeros_like(cache->layers[i].v)}).first;
        }
        lc = &it->second;
      }
      h = run_block(*blk, h, bi, lc, ctx);
    }
  }
  if (cache) cache->length += T;
  return norm_->forward(h, da ? da->token_weights().final_norm : torch::Tensor());
}

torch::Tensor LlamaDecoderImpl::forward(const DecoderInput& in, KVCache* cache, ForwardContext& ctx) {
  return logits(hidden_states(in, cache, ctx));
}

adapters::BlockShape LlamaDecoderImpl::block_shape() const {
  const auto& c = config_;
  adapters::BlockShape s;
  s.width = c.hidden_size;
  auto set = [&](Proj p, int64_t in, int64_t out) {
    s.in[static_cast<int>(p)] = in;
    s.out[static_cast<int>(p)] = out;
  };
  set(Proj::kQ, c.hidden_size, c.num_heads * c.head_dim);
  set(Proj::kK, c.hidden_size, c.num_kv_heads * c.head_dim);
  set(Proj::kV, c.hidden_size, c.num_kv_heads * c.head_dim);
  set(Proj::kO, c.num_heads * c.head_dim, c.hidden_size);
  set(Proj::kGate, c.hidden_size, c.intermediate_size);
  set(Proj::kUp, c.hidden_size, c.intermediate_size);
  set(Proj::kDown, c.intermediate_size, c.hidden_size);
  return s;
}

void LlamaDecoderImpl::attach_block_adapter(int64_t layer, const std::string& family,
                                            std::shared_ptr<adapters::BlockAdapterImpl> adapter) {
  TORCH_CHECK(layer >= 0 && layer < config_.num_layers, "layer ", layer, " out of range");
  blocks_[layer]->attach(family, std::move(adapter));
}

void LlamaDecoderImpl::attach_decoder_adapter(const std::string& family,
                                              std::shared_ptr<adapters::DecoderAdapterImpl> adapter) {
  if (!decoder_adapters_) decoder_adapters_ = register_module("adapters", torch::nn::ModuleDict());
  if (decoder_adapters_->contains(family)) throw std::invalid_argument("decoder adapter '" + family + "' attached twice");
  decoder_adapters_->update({{family, adapter}});
  decoder_adapter_list_.push_back(std::move(adapter));
}

}  // namespace mmtune::model
