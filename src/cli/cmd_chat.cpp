// mmtune chat --config FILE [--checkpoint DIR] [--image PATH]: a REPL over generate/chat.h.
// A terminal gets a "> " prompt and the answer streamed; piped stdin is read one message per line
// and each answer is printed on one line (notes and errors on stderr), so a session can be
// scripted. Ctrl-C during an answer stops that answer (kept, partial, in the history); at the
// prompt it leaves.
#include <mmtune/adapters/workflows.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/signals.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/collate.h>
#include <mmtune/data/image.h>
#include <mmtune/generate/chat.h>
#include <mmtune/runtime/conversation.h>
#include <mmtune/runtime/generator.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/lm_loss.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include <c10/util/Exception.h>
#include <unistd.h>

#include "commands.h"

namespace mmtune::cli {

namespace {

namespace fs = std::filesystem;

struct ChatArgs : AdapterArgs {
  std::string image;
  std::optional<double> temperature, top_p;
  std::optional<int64_t> top_k, max_new_tokens, seed;
};

runtime::SamplingOptions sampling_options(const config::GenerationConfig& g, const ChatArgs& a,
                                           data::Template t) {
  runtime::SamplingOptions s;
  s.max_new_tokens = a.max_new_tokens.value_or(g.max_new_tokens);
  s.temperature = a.temperature.value_or(g.temperature);
  s.top_p = a.top_p.value_or(g.top_p);
  s.top_k = a.top_k.value_or(g.top_k);
  s.repetition_penalty = g.repetition_penalty;
  s.seed = static_cast<uint64_t>(a.seed.value_or(g.seed));
  s.stop = g.stop;
  for (auto& stop : runtime::template_stops(t)) s.stop.push_back(stop);
  return s;
}

// A directory of this process's own under the temp directory, made on first use and removed with
// everything in it when the session ends.
class SpoolDir {
 public:
  SpoolDir() = default;
  SpoolDir(const SpoolDir&) = delete;
  SpoolDir& operator=(const SpoolDir&) = delete;
  ~SpoolDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& get() {
    if (path_.empty()) {
      std::error_code ec;
      const fs::path p = fs::temp_directory_path(ec) / cat("mmtune-chat-", ::getpid());
      if (ec || !(fs::create_directories(p, ec) || fs::is_directory(p)))
        throw Error(cat("could not make a directory for pictures read from pipes at ", p.string()),
                    "check that the temp directory (TMPDIR) is writable");
      path_ = p;
    }
    return path_;
  }

 private:
  fs::path path_;
};

class ChatRepl {
 public:
  ChatRepl(const ChatArgs& a, config::RunConfig cfg)
      : cfg_(std::move(cfg)), tty_(::isatty(STDIN_FILENO) == 1) {
    built_ = build_adapted_model(a, cfg_, served_);
    tok_ = text::load_tokenizer(cfg_.model.tokenizer.empty() ? cfg_.model.path
                                                              : cfg_.model.tokenizer);
    collate_ = data::collate_options(cfg_.data, cfg_.vision);
    collate_.pad_to_max_length = false;
    collate_.skip_bad_samples = false;
    const data::Template templ = data::parse_template(cfg_.data.template_name);
    sampling_ = sampling_options(cfg_.chat.generation, a, templ);
    runtime::ChatOptions o;
    o.templ = templ;
    o.system = cfg_.chat.system;
    layout_ = runtime::sequence_layout(cfg_, built_);
    o.layout = layout_;
    o.llava_data = cfg_.data.format == "llava_json";
    const int64_t context = built_.model->llm().config().max_position_embeddings;
    o.max_prompt_tokens =
        std::min(cfg_.data.max_length,
                 context - runtime::prefix_positions(*built_.model, tok_->bos_id()) - sampling_.max_new_tokens);
    session_.emplace(*tok_, o);
    workflows_ = adapters::workflow_names(built_.model->llm());
    if (!cfg_.chat.workflow.empty()) set_workflow(cfg_.chat.workflow);
    log::info() << "chat: " << cfg_.model.path << " + " << cfg_.adapter.family << " adapter"
                << (!served_.empty()      ? " workflows " + join(served_, ", ")
                    : a.checkpoint.empty() ? " (fresh, untrained)"
                                           : " from " + a.checkpoint)
                << ", template " << cfg_.data.template_name << ", prompt budget "
                << o.max_prompt_tokens << " positions, "
                << (sampling_.temperature > 0 ? cat("temperature ", sampling_.temperature)
                                              : std::string("greedy"));
  }

  int run(const std::string& first_image) {
    if (tty_) notes() << "mmtune chat. /help for commands, /quit or Ctrl-D to leave.\n";
    if (!first_image.empty()) attach_image(first_image, /*in_session=*/false);  // a bad --image is fatal
    std::string line;
    while (true) {
      if (tty_) std::cout << "> " << std::flush;
      if (!std::getline(std::cin, line)) {
        if (interrupt_requested()) throw Interrupted();  // Ctrl-C at the prompt leaves
        if (tty_) std::cout << "\n";
        return 0;
      }
      const generate::ChatCommand c = generate::parse_chat_line(line);
      using K = generate::ChatCommand::Kind;
      switch (c.kind) {
        case K::kEmpty:
          break;
        case K::kQuit:
          return 0;
        case K::kHelp:
          notes() << generate::chat_help();
          break;
        case K::kClear:
          session_->clear();
          notes() << "(conversation cleared)\n";
          break;
        case K::kImage:
          guarded([&] { attach_image(c.arg, /*in_session=*/true); }, false);  // a bad /image is not
          break;
        case K::kWorkflow:
          guarded([&] { set_workflow(c.arg); }, false);
          break;
        case K::kUnknown:
          log::error() << "unknown command " << c.arg
                       << " (hint: /help lists the commands; write //text to send '/text')";
          break;
        case K::kMessage:
          guarded([&] { answer(tty_ ? c.arg : generate::unescape_line(c.arg)); }, true);
          break;
      }
    }
  }

 private:
  // Runs `f`; an error is reported and the session goes on (a failed message still gets its
  // answer line in scripted mode, an empty one, so answers stay aligned with input lines).
  template <class F>
  void guarded(F&& f, bool answer_line) {
    try {
      f();
      return;
    } catch (const Interrupted&) {
      throw;
    } catch (const Error& e) {
      log::error() << e.one_line();
    } catch (const c10::Error& e) {
      log::error() << "torch: " << e.what_without_backtrace();
    }
    if (answer_line && !tty_) std::cout << "\n" << std::flush;
  }

  std::ostream& notes() { return tty_ ? std::cout : std::cerr; }

  // `in_session`: from /image (the session goes on after an error) or from --image (it ends)
  void attach_image(const std::string& path, bool in_session) {
    if (path.empty()) throw UsageError("/image needs a path", "/image PATH (a PNG or JPEG)");
    if (!built_.model->has_vision())
      throw UsageError("this model has no vision tower, it cannot look at " + path,
                       "set vision.path in the config");
    std::string readable;
    try {
      readable = spool_if_pipe(path);
      data::load_image(readable, collate_.image);  // checked here, not mid-answer
    } catch (const DataError& e) {
      // a pipe's copy is named as the user named the pipe (a DataError reads "<path>: <message>")
      const std::string what =
          e.path() == path ? std::string(e.what()) : path + std::string(e.what()).substr(e.path().size());
      throw Error(what, in_session ? "check the path; the picture must be a PNG or JPEG (the session goes on without it)"
                                   : "check the --image path; the picture must be a PNG or JPEG");
    }
    const bool restarted = session_->set_image(readable);
    notes() << (restarted ? "(new picture: started a new conversation)\n"
                          : "(picture attached to your next message)\n");
  }

  // A pipe (--image <(curl -s URL)) can be read once, and the session reads its picture again on
  // every turn: a pipe's bytes go to a file of the session's own first, read within the bound the
  // image reader puts on any image file. Files are used where they are.
  std::string spool_if_pipe(const std::string& path) {
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (!fs::exists(status) || fs::is_regular_file(status) || fs::is_directory(status)) return path;
    const std::string bytes = data::read_image_file(path, collate_.image.max_pixels);
    const fs::path dir = spool_.get();
    const fs::path copy = dir / cat("picture-", ++spooled_);
    std::ofstream f(copy, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f.flush()) throw Error(cat("could not keep the picture from ", path, " in ", dir.string()),
                                "check that the temp directory (TMPDIR) is writable and has space");
    return copy.string();
  }

  // "" lists the workflows; "auto" = text without a picture, the image workflow with one.
  void set_workflow(const std::string& name) {
    if (workflows_.size() < 2)
      throw UsageError(
          "this model has no IAA workflows (adapter.family " + cfg_.adapter.family + ")",
          "/workflow applies to IAA models");
    if (name.empty()) {
      notes() << "workflows: " << join(workflows_, ", ")
              << "; now: " << (pinned_.empty() ? "auto" : pinned_) << "\n";
      return;
    }
    if (name != "auto" && std::find(workflows_.begin(), workflows_.end(), name) == workflows_.end())
      throw UsageError("no workflow '" + name + "' in this model",
                       "workflows: auto, " + join(workflows_, ", "));
    pinned_ = name == "auto" ? "" : name;
    notes() << "(workflow: " << name << ")\n";
  }

  // The IAA workflow for the next turn; text-only conversations take the bare LLM unless pinned.
  void select_workflow() {
    if (workflows_.size() < 2) return;  // not IAA: the family's single decoder adapter stays on
    std::string wf = pinned_.empty()
                         ? (session_->has_image() ? workflows_[1] : adapters::kTextWorkflow)
                         : pinned_;
    if (wf == adapters::kTextWorkflow && session_->has_image())
      throw UsageError("the text workflow cannot see the picture",
                       "/workflow auto, or /clear to drop the picture");
    adapters::select_workflow(built_.model->llm(), wf);
  }

  void answer(const std::string& message) {
    const runtime::ChatTurn turn = session_->prepare(message);
    if (turn.dropped > 0)
      log::warn() << "dropped the oldest " << turn.dropped << " exchange"
                  << (turn.dropped > 1 ? "s" : "") << " to stay within the context (prompt now "
                  << turn.tokens << " positions)";
    select_workflow();
    const data::Batch batch = data::collate({turn.example}, *tok_, layout_, collate_);
    const model::MultimodalInput in =
        runtime::model_input(batch, built_.model->llm().options().device());
    runtime::SamplingOptions opt = sampling_;
    opt.seed +=
        static_cast<uint64_t>(turns_++);  // each turn its own stream, the session reproducible
    runtime::StreamFilter filter(opt.stop);
    auto show = [&](const std::string& text) {
      if (!text.empty()) std::cout << (tty_ ? text : generate::escape_line(text)) << std::flush;
    };
    bool stopped = false;
    try {
      runtime::generate(*built_.model, *tok_, in, opt, [&](int64_t, const std::string& piece) {
        const std::string safe = filter.push(piece);
        if (cfg_.chat.stream) show(safe);
      });
    } catch (const Interrupted&) {
      clear_interrupt();
      stopped = true;
    }
    show(cfg_.chat.stream ? filter.finish() : filter.text());
    std::cout << "\n" << std::flush;
    if (stopped) log::warn() << "answer stopped (Ctrl-C); it stays in the history as it is";
    session_->commit(message, filter.text());
  }

  config::RunConfig cfg_;
  bool tty_;
  runtime::BuiltModel built_;
  std::unique_ptr<text::Tokenizer> tok_;
  data::CollateOptions collate_;
  runtime::SamplingOptions sampling_;
  std::optional<runtime::ChatSession> session_;
  data::SequenceLayout layout_;
  std::vector<std::string> workflows_;
  std::string pinned_;  // chat.workflow or /workflow NAME; empty = auto
  std::vector<std::string> served_;  // --adapter NAME=DIR as given
  int64_t turns_ = 0;
  SpoolDir spool_;       // pictures read from pipes, removed when the session ends
  int64_t spooled_ = 0;
};

}  // namespace

void add_chat_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ChatArgs>();
  auto* cmd = app.add_subcommand("chat", "Interactive chat, text or image + text, streaming");
  add_config_args(cmd, args->config);
  cmd->add_option("--checkpoint", args->checkpoint,
                  "adapter directory, or a training output_dir (its latest checkpoint), as eval takes it "
                  "(default: fresh adapters)");
  cmd->add_option("--adapter", args->adapters,
                  "NAME=DIR, repeatable: IAA workflows served together on one frozen base (instead of "
                  "--checkpoint); /workflow NAME switches, auto picks the first for a picture")
      ->allow_extra_args(false);  // one value per --adapter: overrides after it stay positional
  cmd->add_option("--image", args->image, "image for the first turn: a PNG or JPEG file, or a pipe (--image <(curl -s URL))");
  cmd->add_option("--temperature", args->temperature,
                  "0 = greedy (default: chat.generation.temperature)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", args->top_p, "nucleus mass in (0, 1]")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top-k", args->top_k, "0 = off")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "answer length limit")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", args->seed, "sampling seed (turn n uses seed + n)");
  cmd->footer(
      "Example:\n  mmtune chat --config configs/lavin/tiny.yaml --checkpoint runs/lavin-tiny "
      "--image cat.png\n  (in the session: /image PATH, /clear, /workflow NAME, /help, /quit)\n"
      "Scripted: printf 'Hi\\n/image cat.png\\nWhat is it?\\n' | mmtune chat --config ... "
      "--temperature 0\n"
      "  (one message per line: a newline inside a message is the two characters \\n, a\n"
      "  backslash is \\\\, as in the answer lines)");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      if (!args->checkpoint.empty()) args->checkpoint = runtime::resolve_adapter_dir(args->checkpoint);
      ChatRepl repl(*args, adapter_run_config(*args));
      return repl.run(args->image);
    };
  });
}

}  // namespace mmtune::cli
