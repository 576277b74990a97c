// Printing configs (mmtune config print, the resolved config saved with every run) and listing
// every key of the schema (mmtune config keys).
#include <mmtune/core/atomic_file.h>
#include <mmtune/config/load.h>
#include <mmtune/core/strings.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <type_traits>

#include <unistd.h>

#include "yaml_text.h"

namespace mmtune::config {
namespace detail {
namespace {

template <class>
inline constexpr bool kAlwaysFalse = false;

std::string quote(const std::string& s) {
  // Single-quoted YAML: only ' needs escaping (doubled). Plain when unambiguous and simple.
  bool plain = !s.empty();
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '/')) plain = false;
  }
  if (plain && (s == "true" || s == "false" || s == "null" || s == "~" ||
                std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-' || s[0] == '.')) {
    plain = false;
  }
  if (plain) return s;
  // a line break or other control character: double-quoted with escapes (inside single quotes YAML
  // folds a line break into a space, so the saved config.yaml would read back differently)
  if (std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    static const char* kHex = "0123456789abcdef";
    std::string out = "\"";
    for (char c : s) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') out += std::string("\\") + c;
      else if (c == '\n') out += "\\n";
      else if (c == '\t') out += "\\t";
      else if (u < 0x20 || u == 0x7f) out += std::string("\\x") + kHex[u >> 4] + kHex[u & 15];
      else out += c;
    }
    return out + "\"";
  }
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("''") : std::string(1, c);
  return out + "'";
}

template <class T>
std::string scalar_text(const T& v) {
  if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
  else if constexpr (std::is_same_v<T, int64_t>) return std::to_string(v);
  else if constexpr (std::is_same_v<T, double>) return format_double(v);
  else if constexpr (std::is_same_v<T, std::string>) return quote(v);
  else static_assert(kAlwaysFalse<T>);
}

}  // namespace

std::string value_text(const FieldRef& ref) {
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::optional<int64_t>> || std::is_same_v<T, std::optional<double>>) {
          return p->has_value() ? scalar_text(**p) : "~";
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>> ||
                             std::is_same_v<T, std::vector<std::string>>) {
          std::vector<std::string> parts;
          for (const auto& x : *p) parts.push_back(scalar_text(x));
          return "[" + join(parts, ", ") + "]";
        } else {
          return scalar_text(*p);
        }
      },
      ref);
}

std::string type_name(const FieldRef& ref) {
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, bool>) return "bool";
        else if constexpr (std::is_same_v<T, int64_t>) return "int";
        else if constexpr (std::is_same_v<T, double>) return "float";
        else if constexpr (std::is_same_v<T, std::string>) return "string";
        else if constexpr (std::is_same_v<T, std::optional<int64_t>>) return "int or null";
        else if constexpr (std::is_same_v<T, std::optional<double>>) return "float or null";
        else if constexpr (std::is_same_v<T, std::vector<int64_t>>) return "list of int";
        else if constexpr (std::is_same_v<T, std::vector<double>>) return "list of float";
        else return "list of string";
      },
      ref);
}

}  // namespace detail

namespace {

/// Emits block-style YAML, one `key: value` per line, sections indented by two spaces.
class Writer final : public Visitor {
 public:
  explicit Writer(std::ostringstream& out, int indent = 0) : out_(out), indent_(indent) {}
  void field(std::string_view key, FieldRef ref, const FieldInfo&) override {
    line(key) << " " << detail::value_text(ref) << "\n";
  }
  void section(std::string_view key, Section& s, std::string_view) override {
    line(key) << "\n";
    Writer child(out_, indent_ + 2);
    s.visit(child);
  }
  void families(AdapterConfig& adapter) override {
    for (auto& [name, opt] : adapter.options) section(name, *opt, "");
  }

 private:
  std::ostream& line(std::string_view key) { return out_ << std::string(indent_, ' ') << key << ":"; }
  std::ostringstream& out_;
  int indent_;
};

/// Collects every key with its type, default and help.
class Lister final : public Visitor {
 public:
  Lister(std::vector<KeyInfo>& out, const FamilyCatalog& catalog, std::string prefix = {})
      : out_(out), catalog_(catalog), prefix_(std::move(prefix)) {}
  void field(std::string_view key, FieldRef ref, const FieldInfo& info) override {
    std::string type = detail::type_name(ref);
    if (info.choices) type = "one of " + join(*info.choices, " | ");
    out_.push_back({path(key), type, detail::value_text(ref), std::string(info.help)});
  }
  void section(std::string_view key, Section& s, std::string_view) override {
    Lister child(out_, catalog_, path(key));
    s.visit(child);
  }
  void families(AdapterConfig&) override {
    for (const auto& name : catalog_.family_names()) {
      auto opt = catalog_.make_family_config(name);
      section(name, *opt, "");
    }
  }

 private:
  std::string path(std::string_view key) const {
    return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
  }
  std::vector<KeyInfo>& out_;
  const FamilyCatalog& catalog_;
  std::string prefix_;
};

}  // namespace

std::string to_yaml(const RunConfig& config) {
  RunConfig copy = config;  // visit() is non-const: the same code reads and writes fields
  std::ostringstream out;
  Writer w(out);
  copy.visit(w);
  return out.str();
}

void save_resolved_config(const RunConfig& config, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create output directory " + dir + ": " + ec.message(), "check output_dir");
  const fs::path final_path = fs::path(dir) / "config.yaml";
  write_file_atomically(final_path.string(),
                        cat("# Resolved mmtune config (file + overrides + defaults); rerun with:\n",
                            "#   mmtune train --config ", final_path.string(), "\n", to_yaml(config)),
                        "check free space and permissions of output_dir");
}

std::vector<KeyInfo> list_keys(const FamilyCatalog& catalog) {
  std::vector<KeyInfo> out;
  RunConfig defaults;
  Lister l(out, catalog);
  defaults.visit(l);
  return out;
}

}  // namespace mmtune::config
