// The explicit adapter registry: one entry per family, keyed by its lowercase config name.
// Families are added by register_builtin_adapters() (src/adapters/registry.cpp, one line each),
// never by static self-registration objects (a static library drops unreferenced object files,
// and the family would silently disappear).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <mmtune/adapters/adapter.h>
#include <mmtune/config/schema.h>

namespace mmtune::model {
class LlamaDecoderImpl;
}

namespace mmtune::adapters {

/// What shapes a decoder adapter's visual path (from vision.*).
struct VisualPath {
  int64_t width = 0;             // Cv: the ViT width; 0 for a text-only model
  std::string projector;         // vision.projector (mlp_silu | linear | mlp2x_gelu ...)
  int64_t projector_hidden = 0;  // vision.projector_hidden
  bool start_end_tokens = false; // vision.start_end_tokens: learnable vectors around the visual span
};

/// Where a family's visual tokens go in the text (data::SequenceLayout takes these strings).
struct PromptLayout {
  std::string image_prefix;                   // before the image slots of an image sample (LaVIN "Image: ")
  std::string text_prefix;                    // in their place for a text-only sample (LaVIN "Image: N/A")
  std::string image_placeholder = "<image>";  // a prompt containing it gets the slots there instead
};

/// What a family registers.
struct FamilyEntry {
  std::string name;         // config name: adapter.family: <name>, options under adapter.<name>
  std::string description;  // one line for `mmtune config keys` / errors
  /// The family's option struct with its defaults (validates its own `adapter.<name>` subtree).
  std::function<std::unique_ptr<config::FamilyConfig>()> make_config;
  /// The adapter for LLM block `layer` of `num_layers` (nullptr: none on that layer). Parameters are
  /// created in fp32 on `device` (trainable master weights). Empty for families without LLM blocks.
  std::function<std::shared_ptr<BlockAdapterImpl>(const config::FamilyConfig& options, const BlockShape& shape,
                                                  int64_t layer, int64_t num_layers, const torch::Device& device)>
      make_llm_block;
  /// The adapter for CLIP block `layer` (nullptr: none); empty when the family does not adapt the ViT.
  std::function<std::shared_ptr<BlockAdapterImpl>(const config::FamilyConfig& options, const BlockShape& shape,
                                                  int64_t layer, int64_t num_layers, const torch::Device& device)>
      make_vision_block;
  /// The decoder-level adapter (visual neck, modality embedding, mask edits, inserted layers...), or
  /// nullptr. `llm_width` D, `vision_width` (0 when text-only), `projector_hidden` from vision.*.
  std::function<std::shared_ptr<DecoderAdapterImpl>(const config::FamilyConfig& options, int64_t llm_width,
                                                    int64_t vision_width, int64_t projector_hidden,
                                                    const torch::Device& device)>
      make_decoder;
  /// Like make_decoder, for a decoder adapter built from the frozen decoder itself (IAA copies its
  /// layers, embedding, final norm and head); used instead of make_decoder when set. Parameters
  /// live on the decoder's device.
  std::function<std::shared_ptr<DecoderAdapterImpl>(const config::FamilyConfig& options,
                                                    model::LlamaDecoderImpl& llm, const VisualPath& visual)>
      make_decoder_for{};
  /// The name the decoder adapter is attached under (llm.adapters.<name>); unset: the family name.
  /// Lets several adapters of one family share a decoder (IAA: "iaa_<workflow>").
  std::function<std::string(const config::FamilyConfig& options)> decoder_name{};
  /// The family's prompt layout; unset: no prefixes, slots at "<image>" (LLaVA style).
  std::function<PromptLayout(const config::FamilyConfig& options)> prompt_layout{};

  // ---- Capabilities: what code outside adapters/ asks of a family instead of testing its name ----

  /// Why the family's LLM blocks cannot run under activation checkpointing (train.
  /// activation_checkpointing), e.g. state with gradients flowing from block to block; empty: they
  /// can. Asked by runtime::check_training_support (train, --dry-run, bench train).
  std::string activation_checkpointing_unsupported{};
  /// True when the visual path makes each row's features depend on the whole batch, so the vision
  /// tower must see every row of it (LaVIN's CLIP routing quirk); unset: never.
  std::function<bool(const config::FamilyConfig& options)> vision_whole_batch{};
  /// Adapters of this family load side by side on one frozen base as named workflows
  /// (`--adapter NAME=DIR` in eval, chat and serve; runtime/workflows.h).
  bool serves_workflows = false;
  /// The adapter has a PEFT / merged-weight form: `mmtune convert --to-peft`, `--merge` and
  /// `--from-peft` (adapters/peft.h).
  bool peft_form = false;
};

class AdapterRegistry final : public config::FamilyCatalog {
 public:
  /// Throws mmtune::Error on a duplicate or malformed name.
  void add(FamilyEntry entry);
  /// nullptr if absent.
  const FamilyEntry* find(std::string_view name) const;
  const std::vector<FamilyEntry>& entries() const { return entries_; }

  std::vector<std::string> family_names() const override;
  /// The names of the families that have a capability (`has(entry)`), in registration order: what an
  /// error about a missing capability lists.
  std::vector<std::string> family_names(const std::function<bool(const FamilyEntry&)>& has) const;
  std::unique_ptr<config::FamilyConfig> make_family_config(std::string_view name) const override;

 private:
  std::vector<FamilyEntry> entries_;
};

/// Adds every family mmtune ships (mma, iaa, mole, lora) to `registry`.
void register_builtin_adapters(AdapterRegistry& registry);

/// A process-wide registry holding the built-in families (built on first use).
const AdapterRegistry& builtin_adapters();

}  // namespace mmtune::adapters
