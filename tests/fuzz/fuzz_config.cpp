// libFuzzer target: a YAML run config plus `key.sub=value` overrides (one per line after the
// separator) through config::load_config, as `mmtune train --config F k=v ...` reads them. A config
// that loads must print (to_yaml) and load back to the same text: the saved config.yaml of a run is
// what --resume and eval read.
#include <sstream>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  const auto parts = fuzz::split(data, size, 2);
  const std::string path = fuzz::write_file("config.yaml", parts[0]);
  std::vector<std::string> overrides;
  std::istringstream lines{std::string(parts[1])};
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) overrides.push_back(line);
  std::string printed;
  try {
    printed = config::to_yaml(config::load_config(path, overrides, adapters::builtin_adapters()));
  } catch (const Error&) {
    return 0;  // the expected failure of a bad config
  }
  const std::string again = fuzz::write_file("resolved.yaml", printed);
  try {
    if (config::to_yaml(config::load_config(again, {}, adapters::builtin_adapters())) != printed)
      fuzz::finding("a loaded config printed and loaded back prints differently");
  } catch (const Error& e) {
    fuzz::finding(std::string("a loaded config printed does not load back: ") + e.what());
  }
  return 0;
}
