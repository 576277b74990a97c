#include <mmtune/adapters/iaa.h>
#include <mmtune/adapters/lora.h>
#include <mmtune/adapters/mma.h>
#include <mmtune/adapters/mole.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/core/errors.h>

#include <algorithm>

namespace mmtune::adapters {

void AdapterRegistry::add(FamilyEntry entry) {
  const bool ok_name = !entry.name.empty() && entry.name != "none" &&
                       std::all_of(entry.name.begin(), entry.name.end(),
                                   [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
  if (!ok_name) throw Error("adapter family name '" + entry.name + "' is not a lowercase identifier");
  if (find(entry.name)) throw Error("adapter family '" + entry.name + "' is registered twice");
  if (!entry.make_config) throw Error("adapter family '" + entry.name + "' registers no config");
  entries_.push_back(std::move(entry));
}

const FamilyEntry* AdapterRegistry::find(std::string_view name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::vector<std::string> AdapterRegistry::family_names() const {
  return family_names([](const FamilyEntry&) { return true; });
}

std::vector<std::string> AdapterRegistry::family_names(const std::function<bool(const FamilyEntry&)>& has) const {
  std::vector<std::string> names;
  for (const auto& e : entries_)
    if (has(e)) names.push_back(e.name);
  return names;
}

std::unique_ptr<config::FamilyConfig> AdapterRegistry::make_family_config(std::string_view name) const {
  const FamilyEntry* e = find(name);
  return e ? e->make_config() : nullptr;
}

void register_builtin_adapters(AdapterRegistry& registry) {
  registry.add(mma_family());
  registry.add(iaa_family());
  registry.add(mole_family());
  registry.add(lora_family());
}

const AdapterRegistry& builtin_adapters() {
  static const AdapterRegistry registry = [] {
    AdapterRegistry r;
    register_builtin_adapters(r);
    return r;
  }();
  return registry;
}

}  // namespace mmtune::adapters
