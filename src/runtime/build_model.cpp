#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/memory.h>
#include <mmtune/core/strings.h>
#include <mmtune/model/sizes.h>
#include <mmtune/model/weights.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/memory_check.h>

#include <cmath>
#include <filesystem>

namespace mmtune::runtime {

namespace fs = std::filesystem;

model::LlamaConfig llm_shape(const config::ModelConfig& m) {
  if (!m.path.empty() && fs::exists(fs::path(m.path) / "config.json")) return model::LlamaConfig::from_hf(m.path);
  if (auto c = model::llama_arch(m.arch)) return *c;
  throw Error("no model shape: " + (m.path.empty() ? std::string("model.path is empty") : m.path + "/config.json not found") +
                  " and model.arch is not set",
              "set model.arch (" + join(model::llama_arch_names(), ", ") + ") to dry-run without weights");
}

std::optional<model::ClipVisionConfig> vision_shape(const config::VisionConfig& v) {
  if (!v.path.empty() && fs::exists(fs::path(v.path) / "config.json")) return model::ClipVisionConfig::from_hf(v.path);
  if (auto c = model::clip_arch(v.arch)) return c;
  if (v.path.empty()) return std::nullopt;  // text-only model
  throw Error("no vision shape: " + v.path + "/config.json not found and vision.arch is not set",
              "set vision.arch (" + join(model::clip_arch_names(), ", ") + ") to dry-run without weights");
}

model::Quantization quantization(const config::ModelConfig& m) {
  model::Quantization q;
  q.mode = m.quantize;
  q.group = m.quant_group;
  q.fallback = m.quant_fallback;
  return q;
}

model::Quantization vision_quantization(const config::RunConfig& cfg) {
  model::Quantization q = quantization(cfg.model);
  q.mode = cfg.vision.quantize;
  return q;
}

namespace {

// Random frozen weights of a sane scale (GPT-2 / LLaMA init): the benchmarks' stand-in for a download.
void fill_random(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters(true)) {
    torch::Tensor t = p.value();
    const std::string& name = p.key();
    if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0) t.zero_();
    else if (t.dim() <= 1) t.fill_(1.0);
    else t.normal_(0.0, 0.02);
  }
  // quantized Linear layers: random codes whose dequantized values have the same ~0.02 spread
  for (const auto& sub : m.named_modules()) {
    auto* proj = dynamic_cast<model::ProjectionImpl*>(sub.value().get());
    if (!proj || !proj->quantized()) continue;
    model::QuantizedWeight q = proj->quantized_weight();  // the buffers themselves
    if (q.mode == "int8") {
      q.qweight.random_(-127, 128);
      q.scales.fill_(0.02 * std::sqrt(3.0) / 127);  // uniform q: std 127 / sqrt(3)
    } else {
      q.qweight.random_(0, 256);
      q.scales.select(-1, 0).fill_(0.02 / 4.6);  // uniform q - 8 in [-8, 7]: std ~4.6
      q.scales.select(-1, 1).zero_();
    }
  }
}

}  // namespace

namespace {
BuiltModel build_allocated(const config::RunConfig& cfg, Weights weights);
}  // namespace

BuiltModel build_model(const config::RunConfig& cfg, Weights weights) {
  // sizes from the config and config.json against this machine before anything is allocated (on a
  // CUDA device a failed allocation is an exception that the catch below names)
  // kLoad: the adapters only; the frozen shapes are checked against the weights files by load_llama /
  // load_clip_vision first (a config.json claiming 1e12 tokens is named there), and a file in the
  // target dtype is mapped, not copied
  if (weights != Weights::kMeta && torch::Device(cfg.device).is_cpu()) {
    ModelBytes bytes = model_bytes(build_model(cfg, Weights::kMeta));
    if (weights == Weights::kLoad) bytes.frozen = 0;
    check_fits_in_memory(cfg, bytes, available_memory_bytes());
  }
  try {
    return build_allocated(cfg, weights);
  } catch (const c10::Error& e) {
    if (weights == Weights::kMeta || std::string(e.what()).find("alloc") == std::string::npos) throw;
    throw Error(cat("out of memory while building the model on ", cfg.device, ": ", e.what_without_backtrace()),
                "`mmtune train --dry-run` estimates the memory of each dtype / quantize choice; lower the sizes, or "
                "set model.dtype: bf16 or model.quantize: int4 (and vision.quantize: int4)");
  } catch (const std::bad_alloc&) {
    throw Error(cat("out of memory while building the model on ", cfg.device),
                "`mmtune train --dry-run` estimates the memory of each dtype / quantize choice; lower the sizes, or "
                "set model.dtype: bf16 or model.quantize: int4 (and vision.quantize: int4)");
  }
}

namespace {

BuiltModel build_allocated(const config::RunConfig& cfg, Weights weights) {
  torch::TensorOptions opts = model::model_options(weights == Weights::kMeta ? "cpu" : cfg.device, cfg.dtype);
  if (weights == Weights::kMeta) opts = opts.device(torch::kMeta);

  model::LlamaDecoder llm{nullptr};
  model::ClipVisionTransformer vit{nullptr};
  if (weights != Weights::kLoad) {  // (load_llama / load_clip_vision check the device for int4 themselves)
    if (cfg.model.quantize == "int4") model::check_int4_device(opts.device(), "model.quantize");
    if (cfg.vision.quantize == "int4") model::check_int4_device(opts.device(), "vision.quantize");
    model::LlamaConfig shape = llm_shape(cfg.model);
    if (!shape.quantization.enabled()) shape.quantization = quantization(cfg.model);
    llm = model::LlamaDecoder(shape, opts);
    if (auto vc = vision_shape(cfg.vision)) {
      vc->quantization = vision_quantization(cfg);
      vit = model::ClipVisionTransformer(*vc, opts);
    }
    if (weights == Weights::kRandom) {
      fill_random(*llm);
      llm->eval();
      if (vit) {
        fill_random(*vit);
        vit->eval();
      }
    }
  } else {
    if (cfg.model.path.empty()) throw Error("model.path is empty", "point model.path at a Hugging Face LLaMA directory");
    llm = model::load_llama(cfg.model.path, opts, quantization(cfg.model));
    if (!cfg.vision.path.empty()) vit = model::load_clip_vision(cfg.vision.path, opts, vision_quantization(cfg));
  }
  // the ViT has fixed position embeddings: pictures must come at its size (a 100000 px setting would
  // otherwise allocate 3 x 1e10 floats per picture before anything noticed)
  if (vit && cfg.vision.image_size != vit->config().image_size) {
    throw UsageError(cat("vision.image_size is ", cfg.vision.image_size, " but the ViT takes ", vit->config().image_size,
                         " px pictures (its position embeddings are fixed)"),
                     cat("set vision.image_size: ", vit->config().image_size));
  }
  // the adapters' fp32 master weights live on the compute device (meta for a dry run)
  adapters::attach_to_llama(*llm, cfg.adapter);
  adapters::attach_decoder(*llm, cfg.adapter,
                           adapters::VisualPath{vit ? vit->config().hidden_size : 0, cfg.vision.projector,
                                                cfg.vision.projector_hidden, cfg.vision.start_end_tokens});
  if (vit) adapters::attach_to_vision(*vit, cfg.adapter);
  if (cfg.train.trainable == "all" && llm->config().quantization.enabled())
    throw UsageError("train.trainable: all cannot train quantized weights",
                     "train adapters on the quantized base (the QLoRA recipe), or set model.quantize: none");
  if (cfg.train.trainable == "all" && vit && vit->config().quantization.enabled())
    throw UsageError("train.trainable: all cannot train a quantized vision tower",
                     "train adapters, or set vision.quantize: none");
  if (cfg.train.trainable == "all") {
    for (auto& p : llm->parameters()) p.requires_grad_(true);
    if (vit) for (auto& p : vit->parameters()) p.requires_grad_(true);
  }

  model::VisualFeatureSpec spec;
  spec.feature = cfg.vision.feature;
  spec.cls_every = cfg.vision.cls_every;
  spec.layer = cfg.vision.layer;
  // a family may make each row's visual features depend on the whole batch (LaVIN's CLIP routing quirk)
  if (const auto* entry = adapters::builtin_adapters().find(cfg.adapter.family); entry && entry->vision_whole_batch)
    spec.whole_batch = entry->vision_whole_batch(*cfg.adapter.options.at(cfg.adapter.family));

  BuiltModel b;
  b.model = model::MultimodalLM(llm, vit, spec);
  // dtype fp64 is for numerical checks (tests/numerics.h): the adapters' master weights go to
  // float64 too, so the whole model, its loss and its optimiser run in float64
  if (cfg.dtype == "fp64" && weights != Weights::kMeta) b.model->to(torch::kFloat64);
  for (const auto& p : b.model->named_parameters(true)) {
    if (p.value().requires_grad()) b.trainable.emplace_back(p.key(), p.value());
    else b.frozen_parameters += p.value().numel();
  }
  for (const auto& sub : b.model->named_modules()) {  // quantized weights are buffers, not parameters
    auto* proj = dynamic_cast<model::ProjectionImpl*>(sub.value().get());
    if (proj && proj->quantized())
      b.frozen_parameters += proj->quantized_weight().qweight.numel() * (proj->quantized_weight().mode == "int4" ? 2 : 1);
  }
  return b;
}

}  // namespace

data::SequenceLayout sequence_layout(const config::RunConfig& cfg, const BuiltModel& built) {
  adapters::PromptLayout p;
  const auto* entry = adapters::builtin_adapters().find(cfg.adapter.family);
  if (entry && entry->prompt_layout) p = entry->prompt_layout(*cfg.adapter.options.at(cfg.adapter.family));
  data::SequenceLayout layout;
  layout.image_tokens = built.model->has_vision() ? built.model->visual_tokens() : 0;
  layout.image_prefix = p.image_prefix;
  layout.text_prefix = p.text_prefix;
  layout.image_placeholder = p.image_placeholder;
  return layout;
}

void check_training_support(const config::RunConfig& cfg) {
  const adapters::FamilyEntry* entry = adapters::builtin_adapters().find(cfg.adapter.family);
  if (!entry) return;  // the config's validation names an unknown family
  if (cfg.train.activation_checkpointing && !entry->activation_checkpointing_unsupported.empty())
    throw ConfigError({{"", "train.activation_checkpointing",
                        cat("not supported with adapter.family: ", entry->name, " (",
                            entry->activation_checkpointing_unsupported, ")"),
                        "set train.activation_checkpointing: false"}});
}

}  // namespace mmtune::runtime
