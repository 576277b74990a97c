// mmtune convert: checkpoint conversions. Pickle formats are converted by Python scripts only; the
// C++ never unpickles.
#include "commands.h"

namespace mmtune::cli {

void add_convert_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("convert", "Convert checkpoints (LoRA merge, PEFT export); pickles via scripts/");
  cmd->footer(
      "Formats that exist only as pickles are converted by Python scripts (the C++ never loads a pickle).\n"
      "Examples:\n"
      "  python scripts/convert_meta_llama.py   Meta consolidated .pth + params.json -> HF safetensors\n"
      "  python scripts/convert_openai_clip.py  OpenAI CLIP .pt -> HF-named safetensors (vision tower)\n"
      "  python scripts/convert_llama2c.py      llama2.c .bin -> HF safetensors directory\n"
      "(these scripts arrive with issue #4)");
  cmd->callback([&action] {
    action = []() -> int { not_built_yet("convert", "issue #4 (converter scripts) and #9 (LoRA merge / PEFT export)"); };
  });
}

}  // namespace mmtune::cli
