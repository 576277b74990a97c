// Conversation templates (data.template): a list of turns -> Example::prompt + Example::answer.
//
// The last assistant reply is the answer; everything before it, ending in the template's cue for
// the assistant, is the prompt (earlier assistant replies are context, not supervised). A
// conversation that ends with a user turn renders a generation prompt and an empty answer.
// collate encodes prompt + answer as one string and appends the tokenizer's EOS, so the templates
// never write the final end-of-turn token themselves; where a template separates the cue from the
// reply with a space, the space starts the answer ("ASSISTANT:" + " B"), so the prompt's tokens are
// a prefix of the prompt + answer tokens.
//
//   plain            turns joined by "\n" (a leading system turn too); the prompt ends with "\n"
//                    when there is an answer to follow: "q\n" + "a"
//   vicuna_v1        LLaVA's conv_vicuna_v1 (separator style TWO, sep " ", sep2 "</s>"):
//                    "{system} USER: {q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT:" + " {a2}"
//   llama3_instruct  Llama-3-Instruct's chat template with add_generation_prompt, contents trimmed:
//                    "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
//                    "<|start_header_id|>user<|end_header_id|>\n\n{q}<|eot_id|>"
//                    "<|start_header_id|>assistant<|end_header_id|>\n\n" + "{a}"
//                    without the leading <|begin_of_text|>: collate adds BOS (and the Llama-3
//                    instruct tokenizer's EOS, <|eot_id|>, after the answer).
// vicuna_v1 and llama3_instruct default to the Vicuna system line (LLaVA, IAA spec §2.8, MoLE
// spec §3.7) unless the conversation starts with a system turn.
// Special-token strings inside a prompt ("</s>" between Vicuna turns, "<|eot_id|>" ...) become
// their token ids only if the tokenizer parses special tokens in text; SentencePiece's encode
// does not (earlier turns are context only, so this affects multi-turn context, never labels).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mmtune::data {

enum class Template { kPlain, kVicunaV1, kLlama3Instruct };
enum class Role { kSystem, kUser, kAssistant };

struct Turn {
  Role role;
  std::string text;
};

/// The prompt / answer pair a template renders.
struct Rendered {
  std::string prompt;
  std::string answer;  // empty when the conversation ends with a user turn (generation)
};

/// "plain" | "vicuna_v1" | "llama3_instruct" (data.template). Throws mmtune::Error listing the
/// names otherwise.
Template parse_template(std::string_view name);

/// The system line a template uses when the conversation has none ("" for plain).
std::string_view default_system(Template t);

/// Renders `turns`: an optional leading system turn, then user and assistant turns alternating,
/// starting with a user turn. Throws mmtune::Error (with a hint) on any other order or when there
/// is no user turn.
Rendered render(Template t, const std::vector<Turn>& turns);

}  // namespace mmtune::data
