// The typed run configuration: one struct per YAML section, defaults in code. The schema holds the
// keys of every recipe (LaVIN/MMA, IAA, MoLE, LoRA); families add their own `adapter.<family>`
// subtree through the adapter registry, never a new top-level section.
// Fields are listed once in each section's visit() (src/config/config.cpp); `mmtune config keys`
// prints them all with types, defaults and help.
#pragma once

#include <mmtune/config/schema.h>

namespace mmtune::config {

/// Sampling settings shared by eval and chat.
struct GenerationConfig : Section {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;
  int64_t top_k = 0;         // 0 = off
  double repetition_penalty = 1.0;
  int64_t seed = 1;
  std::vector<std::string> stop;  // stop strings, in addition to EOS
  std::string compat = "none";    // eval only: none | lavin (LaVIN's batched loop, runtime/generator.h)
  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;
};

/// The frozen LLaMA-family decoder.
struct ModelConfig : Section {
  std::string path;       // Hugging Face directory: config.json + *.safetensors (+ tokenizer.model)
  std::string tokenizer;  // tokenizer.model or tokenizer.json; empty = inside `path`
  std::string id;         // base-model id recorded in adapter_config.json; empty = directory name
  std::string arch;       // named shape (llama-7b | llama-13b | llama3-8b) for dry runs without weights
  std::string dtype;                    // the frozen weights' dtype; "" = the top-level `dtype` (load_config
                                        // copies one into the other: after loading both hold the same)
  std::string quantize = "none";        // none | int8 | int4: the frozen Linear layers (model/quantize.h)
  int64_t quant_group = 128;            // int4 group size: 32 | 64 | 128 | 256
  std::string quant_fallback = "none";  // int4: none | int8 for weights whose inputs the group does not divide
  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;
};

/// The frozen CLIP ViT and the glue that maps its features into the LLM.
struct VisionConfig : Section {
  std::string path;                   // HF CLIPVisionModel directory; empty = text-only model
  std::string arch;                   // named shape (clip-vit-l14 | clip-vit-l14-336) for dry runs
  std::string feature = "cls_every";  // cls_every (LaVIN) | patch_layer (LLaVA, IAA, MoLE)
  int64_t cls_every = 4;              // CLS token after every N-th block (LaVIN: 4 -> 6 tokens)
  int64_t layer = -2;                 // patch_layer: hidden state of this block (-1 = last)
  int64_t image_size = 224;
  int64_t max_image_pixels = 89478485;  // larger pictures are refused before decoding (PIL's limit)
  std::string preprocess = "resize";  // resize (no crop) | pad_square | resize_center_crop
  std::string interpolation = "bicubic";
  std::string norm = "imagenet";      // imagenet (LaVIN) | clip
  std::string projector = "mlp_silu"; // mlp_silu (LaVIN neck) | linear | mlp2x_gelu
  int64_t projector_hidden = 128;     // hidden width of mlp_silu (mlp2x_gelu uses the LLM width)
  bool start_end_tokens = false;      // learnable vectors around the visual span (LLaVA-MoLE)
  std::string quantize = "none";      // none | int8 | int4: the blocks' Linear layers (group, fallback: model.*)
  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;
};

/// Which adapter family, and the options of each family named in the file.
struct AdapterConfig : Section {
  std::string family = "none";  // none | a registered family (mma, iaa, mole, lora)
  /// `adapter.<family>` subtrees present in the config; the selected family's is always present
  /// after loading (with defaults when the file has none).
  std::map<std::string, std::unique_ptr<FamilyConfig>> options;

  AdapterConfig() = default;
  AdapterConfig(const AdapterConfig& other);
  AdapterConfig& operator=(const AdapterConfig& other);
  AdapterConfig(AdapterConfig&&) = default;
  AdapterConfig& operator=(AdapterConfig&&) = default;

  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;

  /// The selected family's options as their concrete type; throws mmtune::Error if the family is
  /// another one.
  template <class T>
  const T& selected() const {
    auto it = options.find(family);
    const T* p = it == options.end() ? nullptr : dynamic_cast<const T*>(it->second.get());
    if (!p) throw Error("adapter.family is '" + family + "', not the family this code expects");
    return *p;
  }
};

struct DataConfig : Section {
  std::string format = "scienceqa";  // scienceqa | llava_json
  std::string root;                  // scienceqa: folder with problems.json, pid_splits.json, images/
  std::string problems_file = "problems.json";
  std::string splits_file = "pid_splits.json";
  std::string captions_file;         // optional captions.json
  bool use_caption = false;
  std::string json;                  // llava_json: the conversations file
  std::string image_folder;          // llava_json: folder the "image" fields are relative to
  std::string train_split = "train";
  std::string val_split = "val";
  std::string prompt_format = "QCM-ALE";
  std::string template_name = "plain";  // YAML key `template`: plain | vicuna_v1 | llama3_instruct
  int64_t max_length = 512;
  std::string padding = "dynamic";   // dynamic (to the batch's longest) | fixed (to max_length)
  bool group_by_length = false;
  int64_t num_workers = 2;           // background prefetch threads
  std::string on_bad_sample = "error";  // error | skip (skips are counted and reported)
  int64_t limit = 0;                 // use the first N samples only; 0 = all
  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;
};

struct TrainConfig : Section {
  int64_t epochs = 1;
  int64_t max_steps = 0;             // optimiser steps; 0 = run all epochs
  double warmup_epochs = 0.0;
  int64_t warmup_steps = 0;          // alternative to warmup_epochs; at most one may be non-zero
  int64_t micro_batch_size = 4;      // samples per rank per forward
  int64_t global_batch_size = 32;    // fixed across world sizes; accumulation = global / (micro * world)
  std::optional<double> lr;          // absolute learning rate ...
  std::optional<double> blr;         // ... or base LR scaled by global_batch_size / 256 (LaVIN)
  double min_lr = 0.0;
  std::string schedule = "cosine";   // cosine | constant (both after linear warm-up)
  double weight_decay = 0.02;
  std::vector<double> betas{0.9, 0.95};
  double eps = 1e-8;
  double clip_grad = 0.0;            // max global grad norm; 0 = no clipping
  std::string precision = "fp32";    // fp32 | bf16 (autocast; fp32 master weights)
  bool activation_checkpointing = false;
  std::string trainable = "adapter"; // adapter | all (full fine-tuning, adapter.family none)
  int64_t log_every = 1;
  int64_t save_every = 0;            // optimiser steps between checkpoints; 0 = each epoch
  int64_t keep_last = 2;
  int64_t eval_every = 0;            // steps between validation-loss runs; 0 = off
  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;
  /// The learning rate applied: lr, or blr * global_batch_size / 256.
  double resolved_lr() const;
};

struct EvalConfig : Section {
  std::string task = "scienceqa";  // scienceqa | perplexity | loss | mcq | grounding
  std::string split = "test";
  int64_t batch_size = 16;
  int64_t limit = 0;                 // 0 = all
  std::string unparsable = "wrong";  // wrong | random (LaVIN's protocol: seeded random option)
  std::string data;                  // task file (mcq / grounding JSONL, perplexity text)
  GenerationConfig generation;
  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;
};

struct ChatConfig : Section {
  std::string system;
  std::string workflow;      // IAA: the workflow new turns use; empty = the model's default
  bool stream = true;
  GenerationConfig generation;
  ChatConfig();
  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;
};

struct DistConfig : Section {
  std::string backend = "auto";  // auto (nccl on CUDA, gloo on CPU) | gloo | nccl
  int64_t timeout_s = 600;       // a collective waiting longer fails (a dead rank ends the run)
  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;
};

/// The whole run.
struct RunConfig : Section {
  std::string output_dir = "runs/mmtune";
  int64_t seed = 0;
  std::string device = "cpu";  // cpu | cuda | cuda:N
  std::string dtype = "fp32";  // frozen weights: fp32 | bf16 | fp16
  ModelConfig model;
  VisionConfig vision;
  AdapterConfig adapter;
  DataConfig data;
  TrainConfig train;
  EvalConfig eval;
  ChatConfig chat;
  DistConfig dist;
  void visit(Visitor& v) override;
  void validate(Problems& p, const std::string& path) const override;
};

}  // namespace mmtune::config
