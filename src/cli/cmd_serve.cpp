// mmtune serve: the OpenAI-compatible HTTP server (serve/server.h) over a bare model (--model DIR,
// as generate takes it) or a config's model with its tuned adapters (--config, --checkpoint or
// --adapter NAME=DIR ..., as chat takes them).
#include <mmtune/core/memory.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/adapters/workflows.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/templates.h>
#include <mmtune/model/quantize.h>
#include <mmtune/model/weights.h>
#include <mmtune/serve/server.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/train/metrics.h>

#include <cstdio>
#include <filesystem>

#include "commands.h"

namespace mmtune::cli {
namespace {

struct ServeArgs : AdapterArgs {
  std::string model, templ = "plain", name, device = "cpu", dtype = "fp32";
  int64_t max_body_mb = 32;
  serve::ServerOptions server;
};

std::string base_name(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const std::string n = std::filesystem::path(path).filename().string();
  return n.empty() ? "mmtune" : n;
}

serve::ServedModel bare_model(const ServeArgs& a) {
  std::error_code ec;
  if (!std::filesystem::is_directory(a.model, ec)) {
    throw UsageError("--model " + a.model + (std::filesystem::exists(a.model, ec) ? " is not a directory" : " does not exist"),
                     "point --model at a Hugging Face model directory (config.json, *.safetensors, tokenizer.model)");
  }
  serve::ServedModel s;
  config::RunConfig& cfg = s.cfg;
  cfg.model.path = a.model;
  cfg.device = a.device;
  cfg.dtype = cfg.model.dtype = a.dtype;
  if (!a.config.quantize.empty()) cfg.model.quantize = a.config.quantize;
  if (a.config.quant_group > 0) cfg.model.quant_group = a.config.quant_group;
  if (!a.config.quant_fallback.empty()) cfg.model.quant_fallback = a.config.quant_fallback;
  cfg.adapter.family = "none";
  cfg.data.template_name = a.templ;
  cfg.chat.generation = config::GenerationConfig();  // mmtune generate's defaults (greedy), not chat's
  data::parse_template(a.templ);  // a bad --template fails here
  runtime::BuiltModel built = runtime::build_model(cfg, runtime::Weights::kLoad);
  built.model->eval();
  cfg.data.max_length = built.model->llm().config().max_position_embeddings;
  model::pack_for_inference(*built.model, built.model->llm().options().dtype().toScalarType());  // LLM and ViT
  s.layout = runtime::sequence_layout(cfg, built);
  s.model = built.model;
  s.ids = {a.name.empty() ? base_name(a.model) : a.name};
  return s;
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

// One frozen base, N adapters on it: what each takes (tensor bytes), and the process's RSS.
void log_memory(serve::ServedModel& s) {
  const auto m = adapters::adapter_memory(*s.model, s.model->llm());
  std::vector<std::string> parts{"frozen base " + mib(m.base_bytes)};
  for (const auto& [name, bytes] : m.decoder_adapters) parts.push_back("workflow " + name + " " + mib(bytes));
  if (m.other_trainable_bytes > 0) parts.push_back("adapter " + mib(m.other_trainable_bytes));
  log::info() << "serve: tensor memory " << join(parts, " + ") << "; process RSS " << mib(current_rss_bytes());
}

serve::ServedModel adapted_model(ServeArgs& a) {
  const std::string given = a.checkpoint;  // the id: the folder the user named (a run, not its checkpoint-N)
  if (!a.checkpoint.empty()) a.checkpoint = runtime::resolve_adapter_dir(a.checkpoint);
  serve::ServedModel s;
  s.cfg = adapter_run_config(a);
  std::vector<std::string> served;
  runtime::BuiltModel built = build_adapted_model(a, s.cfg, served);
  s.layout = runtime::sequence_layout(s.cfg, built);
  s.model = built.model;
  const auto workflows = adapters::workflow_names(s.model->llm());
  if (workflows.size() > 1) {
    s.workflows = true;
    s.ids = workflows;
  } else {
    s.ids = {!a.name.empty()         ? a.name
             : !given.empty()        ? base_name(given)
                                     : std::filesystem::path(a.config.path).stem().string()};
  }
  log::info() << "serve: " << s.cfg.model.path << " + " << s.cfg.adapter.family << " adapter"
              << (!served.empty() ? " workflows " + join(served, ", ")
                  : a.checkpoint.empty() ? " (fresh, untrained)"
                                         : " from " + a.checkpoint);
  return s;
}

}  // namespace

void add_serve_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (chat/completions, completions, models)");
  cmd->add_option("--model", args->model, "serve a bare Hugging Face model directory (instead of --config)");
  add_config_args(cmd, args->config, /*required=*/false);
  cmd->add_option("--checkpoint", args->checkpoint, "adapter directory or training output_dir (with --config)");
  cmd->add_option("--adapter", args->adapters, "NAME=DIR, repeatable: IAA workflows on one frozen base, each a model id")
      ->allow_extra_args(false);
  cmd->add_option("--host", args->server.host, "address to bind (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", args->server.port, "port (0 = any free port; the log names it)")->check(CLI::Range(0, 65535));
  cmd->add_option("--max-batch", args->server.max_batch, "requests decoded together")->check(CLI::Range(1, 1024));
  cmd->add_option("--max-queue", args->server.max_queue, "requests waiting beyond the batch; more get 503")
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--api-key", args->server.api_key, "require Authorization: Bearer KEY on /v1/*");
  cmd->add_option("--image-root", args->server.image_root, "image_url file paths are read only under this folder");
  cmd->add_option("--max-body-mb", args->max_body_mb, "request body limit in MiB (larger bodies get 413)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--shutdown-grace", args->server.shutdown_grace_s, "seconds running answers get after SIGTERM")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--name", args->name, "model id to serve under (default: the checkpoint's or model's folder name)");
  cmd->add_option("--template", args->templ, "--model: conversation template of chat requests (plain | vicuna_v1 | llama3_instruct)");
  cmd->add_option("--device", args->device, "--model: cpu | cuda | cuda:N");
  cmd->add_option("--dtype", args->dtype, "--model: fp32 | bf16 | fp16")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  cmd->footer(
      "Examples:\n  mmtune serve --model models/stories260K --port 8080\n"
      "  mmtune serve --config configs/lavin/tiny.yaml --checkpoint runs/lavin-tiny\n"
      "  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n"
      "       -d '{\"model\": \"lavin-tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      if (args->model.empty() == args->config.path.empty())
        throw UsageError("serve needs exactly one of --model DIR or --config FILE",
                         "--model for a bare model, --config (+ --checkpoint / --adapter) for a tuned one");
      if (!args->model.empty() && (!args->checkpoint.empty() || !args->adapters.empty()))
        throw UsageError("--checkpoint and --adapter need --config, not --model", "serve --config X --checkpoint DIR");
      args->server.max_body_bytes = args->max_body_mb << 20;
      serve::ServedModel served = args->model.empty() ? adapted_model(*args) : bare_model(*args);
      served.tokenizer = text::load_tokenizer(served.cfg.model.tokenizer.empty() ? served.cfg.model.path
                                                                                  : served.cfg.model.tokenizer);
      log_memory(served);
      return serve::run_server(std::move(served), args->server);
    };
  });
}

}  // namespace mmtune::cli
