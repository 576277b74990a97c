// Field lists, defaults' documentation and cross-field checks of every config section.
#include <mmtune/config/config.h>
#include <mmtune/core/strings.h>

#include <regex>

namespace mmtune::config {
namespace {

const std::vector<std::string> kDtypes{"fp32", "bf16", "fp16", "fp64"};
const std::vector<std::string> kModelDtypes{"", "fp32", "bf16", "fp16", "fp64"};
// model/sizes.h names these shapes; tests/unit/model/test_sizes.cpp keeps the lists in step
const std::vector<std::string> kQuantize{"none", "int8", "int4"};
const std::vector<std::string> kQuantFallback{"none", "int8"};
const std::vector<std::string> kLlamaArchs{"", "llama-7b", "llama-13b", "llama3-8b"};
const std::vector<std::string> kClipArchs{"", "clip-vit-l14", "clip-vit-l14-336"};
const std::vector<std::string> kVisionFeatures{"cls_every", "patch_layer"};
const std::vector<std::string> kGenerationCompat{"none", "lavin"};
const std::vector<std::string> kPreprocess{"resize", "pad_square", "resize_center_crop"};
const std::vector<std::string> kInterpolation{"bicubic", "bilinear"};
const std::vector<std::string> kNorms{"imagenet", "clip"};
const std::vector<std::string> kProjectors{"mlp_silu", "linear", "mlp2x_gelu"};
const std::vector<std::string> kDataFormats{"scienceqa", "llava_json"};
// LaVIN's ScienceQA prompt formats (input-output), spec §1.9.
// LaVIN's builder (data/prompt.h): every input x output pair, e.g. QCM-ALE.
const std::vector<std::string> kPromptFormats = [] {
  std::vector<std::string> all;
  for (const char* in : {"CQM", "QCM", "QCML", "QCME", "QCMLE", "QCLM", "QCEM", "QCLEM"})
    for (const char* out : {"A", "AL", "AE", "ALE", "AEL", "LA", "EA", "LEA", "ELA"})
      all.push_back(std::string(in) + "-" + out);
  return all;
}();
const std::vector<std::string> kTemplates{"plain", "vicuna_v1", "llama3_instruct"};
const std::vector<std::string> kPadding{"dynamic", "fixed"};
const std::vector<std::string> kBadSample{"error", "skip"};
const std::vector<std::string> kSchedules{"cosine", "constant"};
const std::vector<std::string> kPrecisions{"fp32", "bf16"};
const std::vector<std::string> kTrainable{"adapter", "all"};
const std::vector<std::string> kTasks{"scienceqa", "perplexity", "loss", "mcq", "grounding"};
const std::vector<std::string> kUnparsable{"wrong", "random"};
const std::vector<std::string> kBackends{"auto", "gloo", "nccl"};

void require_positive(Problems& p, const std::string& key, int64_t v) {
  if (v <= 0) p.add(key, cat("must be > 0, got ", v));
}
void require_non_negative(Problems& p, const std::string& key, double v) {
  if (v < 0) p.add(key, cat("must be >= 0, got ", format_double(v)));
}

}  // namespace

void GenerationConfig::visit(Visitor& v) {
  v("max_new_tokens", max_new_tokens, "tokens generated at most per answer");
  v("temperature", temperature, "sampling temperature; 0 = greedy");
  v("top_p", top_p, "nucleus sampling mass in (0, 1]");
  v("top_k", top_k, "sample among the k most likely tokens; 0 = off");
  v("repetition_penalty", repetition_penalty, "CTRL-style penalty on seen tokens; 1 = off");
  v("seed", seed, "sampling seed (deterministic output for a fixed seed)");
  v("stop", stop, "extra stop strings besides EOS");
  v.choice("compat", compat, kGenerationCompat,
           "none = each prompt prefilled whole; lavin = LaVIN's official batched loop (eval only)");
}

void GenerationConfig::validate(Problems& p, const std::string& path) const {
  require_positive(p, path + ".max_new_tokens", max_new_tokens);
  require_non_negative(p, path + ".temperature", temperature);
  if (!(top_p > 0 && top_p <= 1)) p.add(path + ".top_p", cat("must be in (0, 1], got ", format_double(top_p)));
  if (top_k < 0) p.add(path + ".top_k", cat("must be >= 0, got ", top_k));
  if (repetition_penalty <= 0) p.add(path + ".repetition_penalty", "must be > 0");
  if (compat != "none" && path != "eval.generation")
    p.add(path + ".compat", "only eval.generation takes a compat mode (it reproduces a paper's batched evaluation)",
          "remove it here; set eval.generation.compat");
  if (compat == "lavin" && repetition_penalty != 1.0)
    p.add(path + ".repetition_penalty", "must be 1 with compat lavin (LaVIN's loop has no repetition penalty)");
}

void ModelConfig::visit(Visitor& v) {
  v("path", path, "Hugging Face LlamaForCausalLM directory (config.json + safetensors)");
  v("tokenizer", tokenizer, "tokenizer.model / tokenizer.json; empty = the one inside model.path");
  v("id", id, "base-model id written to adapter_config.json; empty = the directory name");
  v.choice("arch", arch, kLlamaArchs, "named shape, used when model.path has no config.json (dry runs)");
  v.choice("dtype", dtype, kModelDtypes,
           "dtype of the frozen weights (LLaMA and ViT); empty = the top-level dtype, which it sets when given");
  v.choice("quantize", quantize, kQuantize, "weight-only quantization of the LLM's frozen Linear layers");
  v("quant_group", quant_group, "int4: inputs per scale and zero point (32, 64, 128 or 256)");
  v.choice("quant_fallback", quant_fallback, kQuantFallback,
           "int4: a weight whose inputs the group does not divide is refused (none) or kept in int8");
}

void ModelConfig::validate(Problems& p, const std::string& path) const {
  if (this->path.empty() && arch.empty()) p.add(path + ".path", "is required", "set it to a Hugging Face model directory");
  if (quant_group != 32 && quant_group != 64 && quant_group != 128 && quant_group != 256)
    p.add(path + ".quant_group", "must be 32, 64, 128 or 256, got " + std::to_string(quant_group),
          "the int4 kernels take these group sizes");
}

void VisionConfig::visit(Visitor& v) {
  v("path", path, "Hugging Face CLIPVisionModel directory; empty = text-only model");
  v.choice("arch", arch, kClipArchs, "named shape, used when vision.path has no config.json (dry runs)");
  v.choice("feature", feature, kVisionFeatures, "which ViT states become visual tokens");
  v("cls_every", cls_every, "cls_every: take the CLS token after every N-th block");
  v("layer", layer, "patch_layer: block whose patch tokens are used (-1 = last, -2 = penultimate)");
  v("image_size", image_size, "input side in pixels");
  v("max_image_pixels", max_image_pixels, "larger source pictures are refused from their header, before their pixels are decoded (and files larger than such a picture can be, before they are read)");
  v.choice("preprocess", preprocess, kPreprocess, "resize without crop | pad to square | resize + centre crop");
  v.choice("interpolation", interpolation, kInterpolation, "resize filter");
  v.choice("norm", norm, kNorms, "normalisation statistics");
  v.choice("projector", projector, kProjectors, "vision-to-LLM projector");
  v("projector_hidden", projector_hidden, "mlp_silu hidden width");
  v.choice("quantize", quantize, kQuantize,
           "weight-only quantization of the ViT blocks' Linear layers (group and fallback: model.quant_group, "
           "model.quant_fallback)");
  v("start_end_tokens", start_end_tokens, "learnable start/end vectors around the visual span");
}

void VisionConfig::validate(Problems& p, const std::string& path) const {
  require_positive(p, path + ".cls_every", cls_every);
  require_positive(p, path + ".image_size", image_size);
  require_positive(p, path + ".max_image_pixels", max_image_pixels);
  require_positive(p, path + ".projector_hidden", projector_hidden);
  if (quantize != "none" && this->path.empty() && arch.empty())
    p.add(path + ".quantize", "is " + quantize + " but there is no vision tower to quantize",
          "set vision.path (or vision.arch for a dry run), or remove vision.quantize");
}

AdapterConfig::AdapterConfig(const AdapterConfig& other) : family(other.family) {
  for (const auto& [name, opt] : other.options) options.emplace(name, opt->clone());
}

AdapterConfig& AdapterConfig::operator=(const AdapterConfig& other) {
  if (this != &other) {
    AdapterConfig copy(other);
    *this = std::move(copy);
  }
  return *this;
}

void AdapterConfig::visit(Visitor& v) {
  v("family", family, "adapter family: none, or a registered family (mmtune config keys lists them)");
  v.families(*this);
}

void AdapterConfig::validate(Problems& p, const std::string& path) const {
  for (const auto& [name, opt] : options) opt->validate(p, path + "." + name);
}

void DataConfig::visit(Visitor& v) {
  v.choice("format", format, kDataFormats, "data set layout");
  v("root", root, "scienceqa: folder with problems.json, pid_splits.json and images/");
  v("problems_file", problems_file, "scienceqa: problems file inside root");
  v("splits_file", splits_file, "scienceqa: split file inside root");
  v("captions_file", captions_file, "scienceqa: optional captions.json inside root");
  v("use_caption", use_caption, "scienceqa: append the caption to the context");
  v("json", json, "llava_json: conversations file");
  v("image_folder", image_folder, "llava_json: folder that image paths are relative to");
  v("train_split", train_split, "split used for training");
  v("val_split", val_split, "split used for validation loss");
  v.choice("prompt_format", prompt_format, kPromptFormats, "scienceqa input-output format (LaVIN)");
  v.choice("template", template_name, kTemplates, "conversation template");
  v("max_length", max_length, "tokens per sample at most (longer ones are truncated and counted)");
  v.choice("padding", padding, kPadding, "pad each batch to its longest sample, or to max_length");
  v("group_by_length", group_by_length, "batch samples of similar length together");
  v("num_workers", num_workers, "background prefetch threads");
  v.choice("on_bad_sample", on_bad_sample, kBadSample, "missing/corrupt image: fail, or skip and count");
  v("limit", limit, "use only the first N samples; 0 = all");
}

void DataConfig::validate(Problems& p, const std::string& path) const {
  require_positive(p, path + ".max_length", max_length);
  if (num_workers < 0) p.add(path + ".num_workers", "must be >= 0");
  if (limit < 0) p.add(path + ".limit", "must be >= 0");
}

void TrainConfig::visit(Visitor& v) {
  v("epochs", epochs, "passes over the training split");
  v("max_steps", max_steps, "stop after this many optimiser steps; 0 = run all epochs");
  v("warmup_epochs", warmup_epochs, "linear warm-up length in (fractional) epochs");
  v("warmup_steps", warmup_steps, "linear warm-up length in optimiser steps (instead of epochs)");
  v("micro_batch_size", micro_batch_size, "samples per rank per forward pass");
  v("global_batch_size", global_batch_size, "samples per optimiser step over all ranks");
  v("lr", lr, "absolute learning rate (exactly one of lr, blr)");
  v("blr", blr, "base learning rate: lr = blr * global_batch_size / 256 (LaVIN)");
  v("min_lr", min_lr, "learning rate at the end of the cosine");
  v.choice("schedule", schedule, kSchedules, "learning-rate schedule after warm-up");
  v("weight_decay", weight_decay, "AdamW decay on matrices (not on biases / 1-D tensors)");
  v("betas", betas, "AdamW betas");
  v("eps", eps, "AdamW epsilon");
  v("clip_grad", clip_grad, "max global gradient norm; 0 = off");
  v.choice("precision", precision, kPrecisions, "compute precision (autocast); master weights stay fp32");
  v("activation_checkpointing", activation_checkpointing, "recompute frozen blocks in backward");
  v.choice("trainable", trainable, kTrainable, "train the adapter only, or every parameter");
  v("log_every", log_every, "optimiser steps between metric lines");
  v("save_every", save_every, "optimiser steps between checkpoints; 0 = each epoch");
  v("keep_last", keep_last, "checkpoints kept");
  v("eval_every", eval_every, "optimiser steps between validation-loss runs; 0 = off");
}

void TrainConfig::validate(Problems& p, const std::string& path) const {
  if (lr.has_value() == blr.has_value()) {
    p.add(path + (lr ? ".blr" : ".lr"),
          lr ? "train.lr and train.blr are both set; set exactly one"
             : "no learning rate: set exactly one of train.lr and train.blr",
          "lr is absolute; blr is scaled by global_batch_size / 256");
  }
  if (lr && *lr <= 0) p.add(path + ".lr", "must be > 0");
  if (blr && *blr <= 0) p.add(path + ".blr", "must be > 0");
  require_positive(p, path + ".epochs", epochs);
  if (max_steps < 0) p.add(path + ".max_steps", "must be >= 0");
  require_non_negative(p, path + ".warmup_epochs", warmup_epochs);
  if (warmup_steps < 0) p.add(path + ".warmup_steps", "must be >= 0");
  if (warmup_epochs > 0 && warmup_steps > 0)
    p.add(path + ".warmup_steps", "warmup_epochs and warmup_steps are both set; set at most one");
  require_positive(p, path + ".micro_batch_size", micro_batch_size);
  require_positive(p, path + ".global_batch_size", global_batch_size);
  if (micro_batch_size > 0 && global_batch_size % micro_batch_size != 0)
    p.add(path + ".global_batch_size",
          cat("must be a multiple of micro_batch_size (", micro_batch_size, "), got ", global_batch_size));
  require_non_negative(p, path + ".min_lr", min_lr);
  require_non_negative(p, path + ".weight_decay", weight_decay);
  if (betas.size() != 2 || betas[0] < 0 || betas[0] >= 1 || betas[1] < 0 || betas[1] >= 1)
    p.add(path + ".betas", "must be two numbers in [0, 1)", "e.g. [0.9, 0.95]");
  if (eps <= 0) p.add(path + ".eps", "must be > 0");
  require_non_negative(p, path + ".clip_grad", clip_grad);
  require_positive(p, path + ".log_every", log_every);
  if (save_every < 0) p.add(path + ".save_every", "must be >= 0");
  require_positive(p, path + ".keep_last", keep_last);
  if (eval_every < 0) p.add(path + ".eval_every", "must be >= 0");
}

double TrainConfig::resolved_lr() const {
  if (lr) return *lr;
  if (blr) return *blr * static_cast<double>(global_batch_size) / 256.0;
  throw Error("no learning rate configured", "set train.lr or train.blr");
}

void EvalConfig::visit(Visitor& v) {
  v.choice("task", task, kTasks, "benchmark to run");
  v("split", split, "data split evaluated");
  v("batch_size", batch_size, "questions per generation batch");
  v("limit", limit, "evaluate only the first N items; 0 = all");
  v.choice("unparsable", unparsable, kUnparsable, "answers with no option letter: count wrong, or LaVIN's random pick");
  v("data", data, "task file for mcq / grounding (JSONL) and perplexity (text)");
  v.section("generation", generation, "sampling for generated answers");
}

void EvalConfig::validate(Problems& p, const std::string& path) const {
  require_positive(p, path + ".batch_size", batch_size);
  if (limit < 0) p.add(path + ".limit", "must be >= 0");
  generation.validate(p, path + ".generation");
}

ChatConfig::ChatConfig() {
  generation.max_new_tokens = 256;
  generation.temperature = 0.7;
  generation.top_p = 0.9;
  generation.seed = 0;
}

void ChatConfig::visit(Visitor& v) {
  v("system", system, "system prompt of the conversation template");
  v("workflow", workflow, "IAA workflow for new turns; empty = the model's default");
  v("stream", stream, "print tokens as they are generated");
  v.section("generation", generation, "sampling for answers");
}

void ChatConfig::validate(Problems& p, const std::string& path) const {
  generation.validate(p, path + ".generation");
}

void DistConfig::visit(Visitor& v) {
  v.choice("backend", backend, kBackends, "c10d backend");
  v("timeout_s", timeout_s, "seconds a collective may wait before the run fails");
}

void DistConfig::validate(Problems& p, const std::string& path) const {
  require_positive(p, path + ".timeout_s", timeout_s);
}

void RunConfig::visit(Visitor& v) {
  v("output_dir", output_dir, "where checkpoints, logs, metrics and the resolved config go");
  v("seed", seed, "global seed (data order, initialisation, dropout)");
  v("device", device, "cpu | cuda | cuda:N");
  v.choice("dtype", dtype, kDtypes, "dtype of the frozen weights (fp64: numerical checks only, slow)");
  v.section("model", model, "frozen LLaMA-family decoder");
  v.section("vision", vision, "frozen CLIP ViT and projector");
  v.section("adapter", adapter, "adapter family and its options");
  v.section("data", data, "training / evaluation data");
  v.section("train", train, "optimisation");
  v.section("eval", eval, "mmtune eval");
  v.section("chat", chat, "mmtune chat");
  v.section("dist", dist, "data-parallel settings (ranks come from torchrun's environment)");
}

void RunConfig::validate(Problems& p, const std::string& path) const {
  static const std::regex kDevice("cpu|cuda|cuda:[0-9]+");
  if (!std::regex_match(device, kDevice)) p.add("device", "must be cpu, cuda or cuda:N, got '" + device + "'");
  if (output_dir.empty()) p.add("output_dir", "must not be empty");
  model.validate(p, "model");
  if (dtype == "fp64" && model.quantize != "none")
    p.add("model.quantize", "cannot be combined with dtype fp64 (the quantized kernels take fp32, bf16, fp16)",
          "use dtype fp32 or bf16, or model.quantize: none for fp64 checks");
  if (dtype == "fp64" && vision.quantize != "none")
    p.add("vision.quantize", "cannot be combined with dtype fp64 (the quantized kernels take fp32, bf16, fp16)",
          "use dtype fp32 or bf16, or vision.quantize: none for fp64 checks");
  vision.validate(p, "vision");
  adapter.validate(p, "adapter");
  data.validate(p, "data");
  train.validate(p, "train");
  eval.validate(p, "eval");
  chat.validate(p, "chat");
  dist.validate(p, "dist");
}

}  // namespace mmtune::config
