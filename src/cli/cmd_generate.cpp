// mmtune generate --model DIR --prompt TEXT: plain completion with a frozen model, streamed.
#include <mmtune/core/logging.h>
#include <mmtune/runtime/generator.h>
#include <mmtune/text/tokenizer.h>
#include <mmtune/model/weights.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "commands.h"

namespace mmtune::cli {

void add_generate_command(CLI::App& app, Action& action) {
  struct Args {
    std::string model, prompt, tokenizer, device = "cpu", dtype = "fp32";
    model::Quantization quant;
    runtime::SamplingOptions sampling;
    bool no_bos = false;
    bool ignore_eos = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("generate", "Complete a text prompt with a frozen model (streamed)");
  cmd->add_option("--model", args->model, "Hugging Face model directory (config.json + safetensors)")->required();
  cmd->add_option("--prompt", args->prompt, "text to continue (empty: start from BOS alone)");
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.model; default: the one in --model");
  cmd->add_option("--max-new-tokens", args->sampling.max_new_tokens, "tokens to generate at most")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", args->sampling.temperature, "0 = greedy")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", args->sampling.top_p, "nucleus mass in (0, 1]")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top-k", args->sampling.top_k, "0 = off")->check(CLI::NonNegativeNumber);
  cmd->add_option("--repetition-penalty", args->sampling.repetition_penalty, "> 0; 1 = off")
      ->check(CLI::Validator(
          [](std::string& v) {
            char* end = nullptr;
            const double x = std::strtod(v.c_str(), &end);
            return end != v.c_str() && *end == '\0' && x > 0 ? std::string() : "must be > 0 (1 = off), got " + v;
          },
          "> 0"));
  cmd->add_option("--seed", args->sampling.seed, "sampling seed");
  cmd->add_option("--stop", args->sampling.stop, "stop strings (repeatable)");
  cmd->add_option("--device", args->device, "cpu | cuda | cuda:N");
  cmd->add_option("--dtype", args->dtype, "fp32 | bf16 | fp16")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  cmd->add_option("--quantize", args->quant.mode, "none | int8 | int4: weight-only quantization of the Linear layers")
      ->check(CLI::IsMember({"none", "int8", "int4"}));
  cmd->add_option("--quant-group", args->quant.group, "int4 group size")->check(CLI::IsMember({32, 64, 128, 256}));
  cmd->add_option("--quant-fallback", args->quant.fallback, "int4: none | int8 for weights the group does not divide")
      ->check(CLI::IsMember({"none", "int8"}));
  cmd->add_flag("--no-bos", args->no_bos, "do not put BOS in front of the prompt");
  cmd->add_flag("--ignore-eos", args->ignore_eos, "keep generating after EOS (benchmarks)");
  cmd->footer("Example:\n  mmtune generate --model models/stories260K --prompt 'Once upon a time' --max-new-tokens 64\n"
              "(llama2.c checkpoints: python scripts/convert_llama2c.py IN.bin --tokenizer TOK.model --out DIR)");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      const auto options = model::model_options(args->device, args->dtype);
      std::error_code ec;  // the non-throwing overloads: a permission problem is reported like a missing dir
      if (!std::filesystem::is_directory(args->model, ec)) {
        throw UsageError("--model " + args->model +
                             (std::filesystem::exists(args->model, ec) ? " is not a directory" : " does not exist"),
                         "point --model at a Hugging Face model directory (config.json, *.safetensors, tokenizer.model)");
      }
      auto tok = text::load_tokenizer(args->tokenizer.empty() ? args->model : args->tokenizer);
      auto llm = model::load_llama(args->model, options, args->quant);
      model::pack_for_inference(*llm, options.dtype().toScalarType());  // int4 on CPU: each weight held once
      const std::vector<int64_t> ids = tok->encode(args->prompt, !args->no_bos, false);
      args->sampling.stop_at_eos = !args->ignore_eos;
      std::cout << args->prompt << std::flush;
      const auto t0 = std::chrono::steady_clock::now();
      const auto out = runtime::generate(*llm, *tok, {ids}, args->sampling,
                                          [](int64_t, const std::string& text) { std::cout << text << std::flush; });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cout << "\n";
      log::info() << "generated " << out[0].tokens.size() << " tokens (" << out[0].finish_reason << ") from a "
                  << ids.size() << "-token prompt in " << s << " s: " << out[0].tokens.size() / s << " tok/s";
      return 0;
    };
  });
}

}  // namespace mmtune::cli
