// Loading, overriding, printing and saving run configs.
#pragma once

#include <string>
#include <vector>

#include <mmtune/config/config.h>

namespace mmtune::config {

/// Reads a YAML config, applies `key.sub=value` overrides (torchtune style, in order, after the
/// file), checks every key, type and value, and returns the typed config.
/// Throws ConfigError listing every problem at once, each with file:line (or the override), the
/// key, and a hint such as "did you mean train.lr?".
/// `catalog` supplies the `adapter.<family>` option structs (adapters::AdapterRegistry).
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides,
                      const FamilyCatalog& catalog);

/// The config as YAML, every key present (defaults included), in schema order.
std::string to_yaml(const RunConfig& config);

/// Writes to_yaml(config) to `dir`/config.yaml through a temporary file and a rename, so the file
/// is never half-written. Creates `dir`. Throws mmtune::Error on I/O failure.
void save_resolved_config(const RunConfig& config, const std::string& dir);

/// One documented key of the schema.
struct KeyInfo {
  std::string path;           // "train.lr"
  std::string type;           // "float or null", "list of int", "one of a | b", ...
  std::string default_value;  // as YAML
  std::string help;
};

/// Every key of the schema, including each registered family's `adapter.<family>.*` keys.
std::vector<KeyInfo> list_keys(const FamilyCatalog& catalog);

}  // namespace mmtune::config
