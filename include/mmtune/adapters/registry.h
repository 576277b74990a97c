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

namespace mmtune::adapters {

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
};

class AdapterRegistry final : public config::FamilyCatalog {
 public:
  /// Throws mmtune::Error on a duplicate or malformed name.
  void add(FamilyEntry entry);
  /// nullptr if absent.
  const FamilyEntry* find(std::string_view name) const;
  const std::vector<FamilyEntry>& entries() const { return entries_; }

  std::vector<std::string> family_names() const override;
  std::unique_ptr<config::FamilyConfig> make_family_config(std::string_view name) const override;

 private:
  std::vector<FamilyEntry> entries_;
};

/// Adds every family mmtune ships (mma, iaa, mole, lora) to `registry`.
void register_builtin_adapters(AdapterRegistry& registry);

/// A process-wide registry holding the built-in families (built on first use).
const AdapterRegistry& builtin_adapters();

}  // namespace mmtune::adapters
