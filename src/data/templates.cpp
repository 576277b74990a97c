// Conversation templates: plain, LLaVA's vicuna_v1, Llama-3 instruct (see templates.h).
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/templates.h>

namespace mmtune::data {
namespace {

constexpr std::string_view kVicunaSystem =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, "
    "detailed, and polite answers to the user's questions.";

// Splits off the system text and checks that the rest alternates user, assistant, user, ...
std::string check_turns(Template t, const std::vector<Turn>& turns, size_t& first) {
  std::string system(default_system(t));
  first = 0;
  if (!turns.empty() && turns[0].role == Role::kSystem) {
    system = turns[0].text;
    first = 1;
  }
  if (first == turns.size()) {
    throw Error("a conversation needs at least one user turn",
                "give each sample a human/user message");
  }
  for (size_t i = first; i < turns.size(); ++i) {
    const Role want = (i - first) % 2 == 0 ? Role::kUser : Role::kAssistant;
    if (turns[i].role != want) {
      throw Error(
          "turn " + std::to_string(i) +
              " is out of order: turns must alternate user, assistant, user, ...",
          "a conversation is an optional system turn, then human/gpt turns starting with human");
    }
  }
  return system;
}

Rendered render_plain(const std::vector<Turn>& turns, size_t first, const std::string& system,
                      bool answered) {
  Rendered r;
  if (first == 1) r.prompt = system + "\n";
  const size_t end = turns.size() - (answered ? 1 : 0);
  for (size_t i = first; i < end; ++i) r.prompt += turns[i].text + "\n";
  if (answered) r.answer = turns.back().text;
  return r;
}

Rendered render_vicuna(const std::vector<Turn>& turns, size_t first, const std::string& system,
                       bool answered) {
  Rendered r{system + " ", ""};
  const size_t end = turns.size() - (answered ? 1 : 0);
  for (size_t i = first; i < end; ++i) {
    if (turns[i].role == Role::kUser) {
      r.prompt += "USER: " + turns[i].text + " ";
    } else {
      r.prompt += "ASSISTANT: " + turns[i].text + "</s>";
    }
  }
  r.prompt += "ASSISTANT:";
  if (answered) r.answer = " " + turns.back().text;
  return r;
}

Rendered render_llama3(const std::vector<Turn>& turns, size_t first, const std::string& system,
                       bool answered) {
  auto block = [](const char* role, const std::string& text) {
    return std::string("<|start_header_id|>") + role + "<|end_header_id|>\n\n" + trim(text) +
           "<|eot_id|>";
  };
  Rendered r{block("system", system), ""};
  const size_t end = turns.size() - (answered ? 1 : 0);
  for (size_t i = first; i < end; ++i)
    r.prompt += block(turns[i].role == Role::kUser ? "user" : "assistant", turns[i].text);
  r.prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  if (answered) r.answer = trim(turns.back().text);
  return r;
}

}  // namespace

Template parse_template(std::string_view name) {
  if (name == "plain") return Template::kPlain;
  if (name == "vicuna_v1") return Template::kVicunaV1;
  if (name == "llama3_instruct") return Template::kLlama3Instruct;
  throw Error("unknown conversation template '" + std::string(name) + "'",
              "data.template is one of plain | vicuna_v1 | llama3_instruct");
}

std::string_view default_system(Template t) {
  return t == Template::kPlain ? std::string_view() : kVicunaSystem;
}

Rendered render(Template t, const std::vector<Turn>& turns) {
  size_t first = 0;
  const std::string system = check_turns(t, turns, first);
  const bool answered = turns.back().role == Role::kAssistant;
  switch (t) {
    case Template::kPlain:
      return render_plain(turns, first, system, answered);
    case Template::kVicunaV1:
      return render_vicuna(turns, first, system, answered);
    case Template::kLlama3Instruct:
      return render_llama3(turns, first, system, answered);
  }
  throw Error("unreachable template");
}

}  // namespace mmtune::data
