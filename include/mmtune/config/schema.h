// How a config section describes itself: each section lists its fields once, in visit(), and the
// same list drives YAML reading (strict: unknown key, wrong type and bad choice are errors with
// file:line), printing (`mmtune config print`), key listing (`mmtune config keys`) and
// "did you mean" suggestions. Defaults are the C++ member initialisers.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <mmtune/core/errors.h>

namespace mmtune::config {

class Visitor;
struct AdapterConfig;

/// Collects config problems; the loader resolves each key to its file:line or override.
class Problems {
 public:
  virtual ~Problems() = default;
  /// `key` is a full dotted path ("train.lr").
  virtual void add(const std::string& key, std::string message, std::string hint = {}) = 0;
};

/// A config section: a struct whose fields are listed once in visit().
struct Section {
  virtual ~Section() = default;
  virtual void visit(Visitor& v) = 0;
  /// Cross-field checks (ranges, exactly-one-of); `path` is this section's dotted path.
  virtual void validate(Problems& problems, const std::string& path) const {}
};

/// The options of one adapter family: the `adapter.<family>` subtree. Implemented next to each
/// family in adapters/ and created by name through a FamilyCatalog (the adapter registry).
struct FamilyConfig : Section {
  virtual std::string family() const = 0;
  virtual std::unique_ptr<FamilyConfig> clone() const = 0;
};

/// Where the config loader finds family option structs by name (adapters::AdapterRegistry).
class FamilyCatalog {
 public:
  virtual ~FamilyCatalog() = default;
  virtual std::vector<std::string> family_names() const = 0;
  /// nullptr when `name` is not registered.
  virtual std::unique_ptr<FamilyConfig> make_family_config(std::string_view name) const = 0;
};

/// A reference to one typed field.
using FieldRef = std::variant<bool*, int64_t*, double*, std::string*, std::optional<int64_t>*,
                              std::optional<double>*, std::vector<int64_t>*, std::vector<double>*,
                              std::vector<std::string>*>;

struct FieldInfo {
  std::string_view help;
  const std::vector<std::string>* choices = nullptr;  // string fields restricted to these values
};

/// Walks a section's fields. Concrete visitors: reader, writer, key lister (src/config/).
class Visitor {
 public:
  virtual ~Visitor() = default;
  virtual void field(std::string_view key, FieldRef ref, const FieldInfo& info) = 0;
  virtual void section(std::string_view key, Section& s, std::string_view help) = 0;
  /// The dynamic `adapter.<family>` subtrees.
  virtual void families(AdapterConfig& adapter) = 0;

  template <class T>
  void operator()(std::string_view key, T& value, std::string_view help) {
    field(key, FieldRef(&value), FieldInfo{help});
  }
  void choice(std::string_view key, std::string& value, const std::vector<std::string>& choices,
              std::string_view help) {
    field(key, FieldRef(&value), FieldInfo{help, &choices});
  }
};

}  // namespace mmtune::config
