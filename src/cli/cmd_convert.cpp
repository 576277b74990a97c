// mmtune convert: plain-LoRA conversions (merge into the frozen weights, PEFT export / import), and
// `mmtune convert quantize` (a pre-quantized base, docs/QUANTIZATION.md).
// Pickle formats are converted by Python scripts only; the C++ never unpickles.
#include <mmtune/adapters/lora.h>
#include <mmtune/adapters/peft.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/strings.h>
#include <mmtune/model/quantize.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>

#include <chrono>

#include "commands.h"

namespace mmtune::cli {
namespace {

struct ConvertArgs {
  ConfigArgs config;
  std::string checkpoint, out;
  bool merge = false, to_peft = false, from_peft = false;
  // convert quantize
  std::string quant_in, quant_out, fallback = "none";
  int bits = 0;
  int64_t group = 128;
  CLI::App* quantize = nullptr;
};

int run_quantize(const ConvertArgs& a) {
  model::Quantization q;
  q.mode = a.bits == 4 ? "int4" : "int8";
  q.group = a.group;
  q.fallback = a.fallback;
  const auto t0 = std::chrono::steady_clock::now();
  const auto s = model::write_quantized_model(a.quant_in, a.quant_out, q);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info() << "wrote " << a.quant_out << " (" << q.describe() << "): " << s.quantized << " weights quantized"
              << (s.fallback ? cat(", ", s.fallback, " in int8 (fallback)") : std::string()) << ", " << s.copied
              << " tensors copied, " << s.bytes_in / (1 << 20) << " MB -> " << s.bytes_out / (1 << 20) << " MB in "
              << s.shards << " shard(s), " << sec << " s";
  return 0;
}

// The config file, then `front` (the adapter's own options), then the user's overrides.
config::RunConfig load_with(const ConfigArgs& a, std::vector<std::string> front) {
  const auto user = a.all_overrides();
  front.insert(front.end(), user.begin(), user.end());
  return config::load_config(a.path, front, adapters::builtin_adapters());
}

// base + the mmtune LoRA checkpoint in `dir`, loaded; throws UsageError for another family.
runtime::BuiltModel load_lora_checkpoint(const ConvertArgs& a, config::RunConfig& cfg, const std::string& mode) {
  if (adapters::is_peft_adapter(a.checkpoint))
    throw UsageError(a.checkpoint + " is a PEFT adapter; " + mode + " reads mmtune adapters",
                     "convert it with --from-peft first" + std::string(mode == "--to-peft" ? " (or use it as it is)" : ""));
  cfg = load_with(a.config, runtime::adapter_overrides(a.checkpoint));
  const adapters::FamilyEntry* entry = adapters::builtin_adapters().find(cfg.adapter.family);
  if (!entry || !entry->peft_form) {
    const std::vector<std::string> with =
        adapters::builtin_adapters().family_names([](const adapters::FamilyEntry& e) { return e.peft_form; });
    throw UsageError(a.checkpoint + " holds a '" + cfg.adapter.family + "' adapter; " + mode + " converts " +
                         join(with, ", ") + " adapters only",
                     "routed experts (MoLE) and the other families have no single-weight or PEFT form");
  }
  runtime::BuiltModel built = runtime::build_model(cfg, runtime::Weights::kLoad);
  runtime::load_adapter(a.checkpoint, cfg, built);
  return built;
}

int run_convert(const ConvertArgs& a) {
  if (a.quantize->parsed()) return run_quantize(a);
  if (a.config.path.empty() || a.checkpoint.empty() || a.out.empty())
    throw UsageError("convert needs --config, --checkpoint and --out (or the quantize subcommand)", "see `mmtune convert --help`");
  if (a.merge + a.to_peft + a.from_peft != 1)
    throw UsageError("convert needs exactly one of --merge, --to-peft, --from-peft", "see `mmtune convert --help`");
  config::RunConfig cfg;
  if (a.merge) {
    runtime::BuiltModel built = load_lora_checkpoint(a, cfg, "--merge");
    const int64_t n = adapters::merge_lora(built.model->llm());
    adapters::save_llama(built.model->llm(), cfg.model.path, a.out);
    log::info() << "merged " << n << " LoRA projections into " << a.out << " (a Hugging Face LLaMA directory)";
  } else if (a.to_peft) {
    runtime::BuiltModel built = load_lora_checkpoint(a, cfg, "--to-peft");
    const std::string base = cfg.model.id.empty() ? cfg.model.path : cfg.model.id;
    adapters::export_peft(built.model->llm(), cfg.adapter.selected<adapters::LoraConfig>(), base, a.out);
    log::info() << "wrote the PEFT adapter " << a.out << " (PeftModel.from_pretrained(base, '" << a.out << "'))";
  } else {
    std::string base;
    const adapters::LoraConfig peft = adapters::read_peft_config(a.checkpoint, &base);
    cfg = load_with(a.config, adapters::lora_overrides(peft));
    runtime::BuiltModel built = runtime::build_model(cfg, runtime::Weights::kLoad);
    adapters::import_peft(built.model->llm(), a.checkpoint);
    runtime::save_adapter(a.out, cfg, built);
    log::info() << "wrote the mmtune adapter " << a.out << " from PEFT " << a.checkpoint
                << (base.empty() ? "" : " (made for " + base + ")");
  }
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ConvertArgs>();
  auto* cmd = app.add_subcommand("convert", "Convert checkpoints (LoRA merge, PEFT export / import); pickles via scripts/");
  add_config_args(cmd, args->config, /*required=*/false);
  cmd->add_option("--checkpoint", args->checkpoint, "adapter directory: mmtune's (--merge, --to-peft) or PEFT's (--from-peft)");
  cmd->add_option("--out", args->out, "output directory");
  auto* q = cmd->add_subcommand("quantize", "A pre-quantized base model directory (int8 / int4, docs/QUANTIZATION.md)");
  q->add_option("--in", args->quant_in, "Hugging Face LLaMA directory (config.json + safetensors)")->required();
  q->add_option("--out", args->quant_out, "new directory to write (must not exist)")->required();
  q->add_option("--bits", args->bits, "4 (int4, group-wise) or 8 (int8, per output channel)")
      ->required()
      ->check(CLI::IsMember({4, 8}));
  q->add_option("--group", args->group, "int4: inputs per scale and zero point")->check(CLI::IsMember({32, 64, 128, 256}));
  q->add_option("--fallback", args->fallback, "int4: none (refuse) | int8 for weights whose inputs the group does not divide")
      ->check(CLI::IsMember({"none", "int8"}));
  q->footer("Example:\n  mmtune convert quantize --in models/llama-7b-hf --out models/llama-7b-int4 --bits 4 --group 128\n"
            "Load it like any model directory (model.path / --model); it loads as written.");
  args->quantize = q;
  auto* merge = cmd->add_flag("--merge", args->merge, "fold a LoRA adapter into the base weights: a Hugging Face LLaMA directory");
  auto* to = cmd->add_flag("--to-peft", args->to_peft, "write a LoRA adapter in PEFT's layout (adapter_model.safetensors + adapter_config.json)");
  auto* from = cmd->add_flag("--from-peft", args->from_peft, "read a PEFT LoRA adapter into mmtune's adapter layout");
  merge->excludes(to)->excludes(from);
  to->excludes(from);
  cmd->footer(
      "Examples:\n"
      "  mmtune convert --config configs/x.yaml --checkpoint runs/x/checkpoint-last --merge --out merged/\n"
      "  mmtune convert --config configs/x.yaml --checkpoint runs/x/checkpoint-last --to-peft --out peft/\n"
      "  mmtune convert --config configs/x.yaml --checkpoint peft/ --from-peft --out runs/x/from-peft\n"
      "  mmtune convert quantize --in models/llama-7b-hf --out models/llama-7b-int4 --bits 4\n"
      "The config gives the base model (model.path); the checkpoint gives the adapter's options.\n"
      "Formats that exist only as pickles are converted by Python scripts (the C++ never loads a pickle):\n"
      "  python scripts/convert_meta_llama.py   Meta consolidated .pth + params.json -> HF safetensors\n"
      "  python scripts/convert_openai_clip.py  OpenAI CLIP .pt -> HF-named safetensors (vision tower)\n"
      "  python scripts/convert_llama2c.py      llama2.c .bin -> HF safetensors directory\n"
      "The papers' released checkpoints (docs/REPRODUCING.md):\n"
      "  python scripts/convert_lavin_checkpoint.py  LaVIN checkpoint-N.pth -> mma adapter directory\n"
      "  python scripts/convert_mole_checkpoint.py   LLaVA-MoLE .pt (adapter or full state_dict) -> mole adapter\n"
      "  python scripts/convert_iaa_checkpoint.py    official IAA HF directory -> base/ + one iaa adapter per\n"
      "                                              workflow (mm/, g/)");
  cmd->callback([&action, args] { action = [args]() -> int { return run_convert(*args); }; });
}

}  // namespace mmtune::cli
