#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/model/clip_vit.h>
#include <mmtune/model/weights.h>

#include "config_against_weights.h"

#include <filesystem>

#include <nlohmann/json.hpp>

namespace mmtune::model {

using adapters::ForwardContext;
using adapters::Proj;
using adapters::Site;
namespace F = torch::nn::functional;

ClipVisionConfig ClipVisionConfig::from_hf(const std::string& dir_or_file) {
  namespace fs = std::filesystem;
  const std::string path = fs::is_directory(dir_or_file) ? (fs::path(dir_or_file) / "config.json").string() : dir_or_file;
  const std::string text = read_checkpoint_file(
      path, "vision.path must be a Hugging Face CLIPVisionModel directory", kMaxMetadataFileBytes);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
    if (j.contains("vision_config")) j = j["vision_config"];  // a full CLIPModel
    ClipVisionConfig c;
    c.image_size = j.value("image_size", c.image_size);
    c.patch_size = j.value("patch_size", c.patch_size);
    c.hidden_size = j.value("hidden_size", c.hidden_size);
    c.intermediate_size = j.value("intermediate_size", c.intermediate_size);
    c.num_layers = j.value("num_hidden_layers", c.num_layers);
    c.num_heads = j.value("num_attention_heads", c.num_heads);
    c.num_channels = j.value("num_channels", c.num_channels);
    c.layer_norm_eps = j.value("layer_norm_eps", c.layer_norm_eps);
    c.hidden_act = j.value("hidden_act", c.hidden_act);
    if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu") {
      throw CheckpointError(path, "hidden_act '" + c.hidden_act + "' is not supported", "supported: quick_gelu, gelu");
    }
    for (const auto& [key, v] : {std::pair<const char*, int64_t>{"image_size", c.image_size}, {"patch_size", c.patch_size},
                                 {"hidden_size", c.hidden_size}, {"intermediate_size", c.intermediate_size},
                                 {"num_hidden_layers", c.num_layers}, {"num_attention_heads", c.num_heads},
                                 {"num_channels", c.num_channels}}) {
      if (v <= 0) throw CheckpointError(path, cat(key, " must be > 0, got ", v), "config.json must be the model's own");
    }
    if (c.image_size > (int64_t{1} << 16))
      throw CheckpointError(path, cat("image_size ", c.image_size, " is beyond any CLIP tower (at most 65536)"),
                            "config.json must be the model's own");
    if (c.patch_size <= 0 || c.image_size % c.patch_size != 0 || c.num_heads <= 0 || c.hidden_size % c.num_heads != 0) {
      throw CheckpointError(path, cat("inconsistent shape: image ", c.image_size, ", patch ", c.patch_size, ", width ",
                                      c.hidden_size, ", heads ", c.num_heads));
    }
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(path, std::string("not a valid CLIP vision config: ") + e.what());
  }
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps_, const torch::TensorOptions& o) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}, o), false);
  bias = register_parameter("bias", torch::empty({dim}, o), false);
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

ClipBlockImpl::ClipBlockImpl(const ClipVisionConfig& c, const torch::TensorOptions& o, int64_t layer)
    : heads_(c.num_heads), head_dim_(c.hidden_size / c.num_heads), quick_gelu_(c.hidden_act == "quick_gelu") {
  const int64_t W = c.hidden_size;
  // in -> out under the checkpoint name vision_model.encoder.layers.<layer>.<group>.<name>,
  // quantized as configured (the biases stay in the dtype)
  auto proj = [&](torch::nn::Module& group, const char* group_name, const char* name, int64_t in, int64_t out) {
    const auto& q = c.quantization;
    const std::string mode =
        q.enabled() ? mode_for(q, cat("vision_model.encoder.layers.", layer, ".", group_name, ".", name), out, in,
                               "vision.quantize")
                    : std::string("none");
    return group.register_module(name, Projection(in, out, true, o, mode, mode == "int4" ? q.group : 0));
  };
  auto attn = register_module("self_attn", std::make_shared<ModuleGroup>());
  k_proj_ = proj(*attn, "self_attn", "k_proj", W, W);
  v_proj_ = proj(*attn, "self_attn", "v_proj", W, W);
  q_proj_ = proj(*attn, "self_attn", "q_proj", W, W);
  out_proj_ = proj(*attn, "self_attn", "out_proj", W, W);
  layer_norm1_ = register_module("layer_norm1", LayerNorm(W, c.layer_norm_eps, o));
  auto mlp = register_module("mlp", std::make_shared<ModuleGroup>());
  fc1_ = proj(*mlp, "mlp", "fc1", W, c.intermediate_size);
  fc2_ = proj(*mlp, "mlp", "fc2", c.intermediate_size, W);
  layer_norm2_ = register_module("layer_norm2", LayerNorm(W, c.layer_norm_eps, o));
}

void ClipBlockImpl::attach(const std::string& family, std::shared_ptr<adapters::BlockAdapterImpl> adapter) {
  slots_.attach(*this, family, std::move(adapter));
}

torch::Tensor ClipBlockImpl::forward(const torch::Tensor& x, ForwardContext& ctx) {
  const int64_t B = x.size(0), N = x.size(1), W = x.size(2);
  torch::Tensor h = slots_.site(Site::kBlockIn, x, ctx);
  const torch::Tensor a = slots_.site(Site::kPreAttn, layer_norm1_->forward(h), ctx);
  // q, k, v [B, Hh, N, hd]; no mask: every token sees every token
  auto heads = [&](const torch::Tensor& t) { return t.view({B, N, heads_, head_dim_}).transpose(1, 2); };
  const torch::Tensor o = at::scaled_dot_product_attention(heads(slots_.proj(Proj::kQ, q_proj_, a, ctx)),
                                                           heads(slots_.proj(Proj::kK, k_proj_, a, ctx)),
                                                           heads(slots_.proj(Proj::kV, v_proj_, a, ctx)));
  h = h + slots_.proj(Proj::kO, out_proj_, o.transpose(1, 2).reshape({B, N, W}), ctx);
  const torch::Tensor m = slots_.site(Site::kPreMlp, layer_norm2_->forward(h), ctx);
  torch::Tensor u = slots_.proj(Proj::kUp, fc1_, m, ctx);
  u = quick_gelu_ ? u * torch::sigmoid(1.702 * u) : F::gelu(u);
  h = h + slots_.proj(Proj::kDown, fc2_, u, ctx);
  return slots_.site(Site::kBlockOut, h, ctx);
}

ClipVisionTransformerImpl::ClipVisionTransformerImpl(const ClipVisionConfig& c, const torch::TensorOptions& o)
    : config_(c) {
  auto vm = register_module("vision_model", std::make_shared<ModuleGroup>());
  auto emb = vm->register_module("embeddings", std::make_shared<ModuleGroup>());
  class_embedding_ = emb->register_parameter("class_embedding", torch::empty({c.hidden_size}, o), false);
  auto patch = emb->register_module("patch_embedding", std::make_shared<ModuleGroup>());
  patch_weight_ = patch->register_parameter(
      "weight", torch::empty({c.hidden_size, c.num_channels, c.patch_size, c.patch_size}, o), false);
  auto pos = emb->register_module("position_embedding", std::make_shared<ModuleGroup>());
  position_embedding_ = pos->register_parameter("weight", torch::empty({c.num_patches() + 1, c.hidden_size}, o), false);
  pre_layrnorm_ = vm->register_module("pre_layrnorm", LayerNorm(c.hidden_size, c.layer_norm_eps, o));  // sic, HF's name
  auto enc = vm->register_module("encoder", std::make_shared<ModuleGroup>());
  auto layers = enc->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) {
    blocks_.push_back(ClipBlock(c, o, i));
    layers->push_back(blocks_.back());
  }
  post_layernorm_ = vm->register_module("post_layernorm", LayerNorm(c.hidden_size, c.layer_norm_eps, o));
}

std::vector<torch::Tensor> ClipVisionTransformerImpl::forward(const torch::Tensor& pixels,
                                                              const std::vector<int64_t>& layers, ForwardContext& ctx) {
  const int64_t L = config_.num_layers;
  std::vector<int64_t> want;
  int64_t deepest = 0;
  for (int64_t l : layers) {
    const int64_t k = l < 0 ? L + 1 + l : l;  // hidden_states has L + 1 entries
    TORCH_CHECK(k >= 0 && k <= L, "hidden state ", l, " out of range for ", L, " blocks");
    want.push_back(k);
    deepest = std::max(deepest, k);
  }
  const int64_t B = pixels.size(0);
  // patches [B, W, S/p, S/p] -> [B, P, W]; tokens [B, N, W] with the class token first
  const torch::Tensor patches =
      F::conv2d(pixels.to(patch_weight_.scalar_type()), patch_weight_, F::Conv2dFuncOptions().stride(config_.patch_size))
          .flatten(2)
          .transpose(1, 2);
  torch::Tensor h = torch::cat({class_embedding_.expand({B, 1, config_.hidden_size}), patches}, 1) + position_embedding_;
  h = pre_layrnorm_->forward(h);
  std::vector<torch::Tensor> states(L + 1);
  states[0] = h;
  const bool was_vision = ctx.vision;
  ctx.vision = true;
  for (int64_t i = 0; i < deepest; ++i) {
    ctx.layer = i;
    h = blocks_[i]->forward(h, ctx);
    states[i + 1] = h;
  }
  ctx.vision = was_vision;
  std::vector<torch::Tensor> out;
  for (int64_t k : want) out.push_back(states[k]);
  return out;
}

void ClipVisionTransformerImpl::attach_block_adapter(int64_t layer, const std::string& family,
                                                     std::shared_ptr<adapters::BlockAdapterImpl> adapter) {
  TORCH_CHECK(layer >= 0 && layer < config_.num_layers, "layer ", layer, " out of range");
  blocks_[layer]->attach(family, std::move(adapter));
}

adapters::BlockShape ClipVisionTransformerImpl::block_shape() const {
  adapters::BlockShape s;
  const int64_t W = config_.hidden_size, I = config_.intermediate_size;
  s.width = W;
  for (Proj p : {Proj::kQ, Proj::kK, Proj::kV, Proj::kO}) {
    s.in[static_cast<int>(p)] = W;
    s.out[static_cast<int>(p)] = W;
  }
  s.in[static_cast<int>(Proj::kUp)] = W;
  s.out[static_cast<int>(Proj::kUp)] = I;
  s.in[static_cast<int>(Proj::kDown)] = I;
  s.out[static_cast<int>(Proj::kDown)] = W;
  return s;
}

namespace {

// The sizes of config.json against the weights' shapes before anything is allocated, as load_llama
// does (fuzz_model_config: intermediate_size -60 escaped as LibTorch's "negative dimension" error).
void check_clip_config_against_weights(const ClipVisionConfig& c, const io::SafetensorsCheckpoint& ckpt,
                                       const std::string& prefix) {
  ConfigAgainstWeights check(ckpt);
  check.expect(prefix + "embeddings.class_embedding", {c.hidden_size}, "hidden_size");
  check.expect(prefix + "embeddings.patch_embedding.weight", {c.hidden_size, c.num_channels, c.patch_size, c.patch_size},
               "hidden_size x num_channels x patch_size x patch_size");
  check.expect(prefix + "embeddings.position_embedding.weight", {c.num_patches() + 1, c.hidden_size},
               "((image_size / patch_size)^2 + 1) x hidden_size");
  check.expect(prefix + "encoder.layers.0.mlp.fc1.weight", {c.intermediate_size, c.hidden_size},
               "intermediate_size x hidden_size");
  if (ckpt.contains(prefix + "encoder.layers.0.mlp.fc1.weight") &&
      (!ckpt.contains(cat(prefix, "encoder.layers.", c.num_layers - 1, ".mlp.fc1.weight")) ||
       ckpt.contains(cat(prefix, "encoder.layers.", c.num_layers, ".mlp.fc1.weight"))))
    check.problem(cat("config.json's num_hidden_layers ", c.num_layers, " is not the weights' number of layers"));
  check.throw_if_any();
}

}  // namespace

ClipVisionTransformer load_clip_vision(const std::string& dir, const torch::TensorOptions& options,
                                       const Quantization& quantize) {
  ClipVisionConfig config = ClipVisionConfig::from_hf(dir);
  config.quantization = quantize;
  if (quantize.enabled() && options.dtype() == torch::kFloat64) {
    throw UsageError("a quantized vision tower cannot run in dtype fp64 (the kernels take fp32, bf16, fp16)",
                     "use dtype fp32 or bf16 with vision.quantize, or vision.quantize=none for fp64 checks");
  }
  if (quantize.mode == "int4") check_int4_device(options.device(), "vision.quantize");
  const auto ckpt = io::SafetensorsCheckpoint::open(dir);
  check_clip_config_against_weights(config, ckpt,
                                    ckpt.contains("vision_model.embeddings.class_embedding") ? "vision_model." : "");
  ClipVisionTransformer model(config, options);
  // Older CLIPVisionModel saves and full CLIPModel checkpoints name tensors "vision_model.*";
  // transformers 5's CLIPVisionModel saves drop that prefix. Accept both.
  const bool prefixed = ckpt.contains("vision_model.embeddings.class_embedding");
  std::vector<std::string> ignore;  // a full CLIPModel also holds the text tower and projections
  for (const auto& name : ckpt.names()) {
    const bool vision = prefixed ? name.rfind("vision_model.", 0) == 0
                                 : name.rfind("embeddings.", 0) == 0 || name.rfind("encoder.", 0) == 0 ||
                                       name.rfind("pre_layrnorm.", 0) == 0 || name.rfind("post_layernorm.", 0) == 0;
    if (!vision || name.find("position_ids") != std::string::npos) ignore.push_back(name);
  }
  load_weights(*model, ckpt, ignore, [prefixed](const std::string& n) {
    return prefixed ? n : n.substr(std::string("vision_model.").size());
  });
  model->eval();
  log::info() << "loaded CLIP vision tower " << dir << " (" << config.num_layers << " blocks, width "
              << config.hidden_size << ", " << config.image_size << " px"
              << (quantize.enabled() ? ", Linear layers " + quantize.describe() : std::string()) << ")";
  return model;
}

}  // namespace mmtune::model
