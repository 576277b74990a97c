// Strict YAML -> RunConfig: every key known, every value of the right type, all problems at once.
#include <mmtune/config/load.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <type_traits>

#include <yaml-cpp/yaml.h>

namespace mmtune::config {
namespace {

struct Override {
  std::string path;  // "train.lr"
  std::string text;  // "train.lr=1e-4" as typed
};

/// State of one load: where keys came from, what is known, what went wrong.
class LoadContext final : public Problems {
 public:
  LoadContext(std::string file, const FamilyCatalog& catalog) : file_(std::move(file)), catalog_(catalog) {
    for (const auto& k : list_keys(catalog)) known_.push_back(k.path);
    for (const auto& name : catalog.family_names()) known_.push_back("adapter." + name);
  }
  void add(const std::string& key, std::string message, std::string hint = {}) override {
    problems_.push_back({location_of(key), key, std::move(message), std::move(hint)});
  }
  void add_at(std::string location, std::string key, std::string message, std::string hint = {}) {
    problems_.push_back({std::move(location), std::move(key), std::move(message), std::move(hint)});
  }
  /// "override 'k=v'" if an override set this key (or an ancestor), else file:line:col.
  std::string location_of(const std::string& key) const {
    const Override* best = nullptr;
    for (const auto& o : overrides_) {
      if ((key == o.path || key.rfind(o.path + ".", 0) == 0) && (!best || o.path.size() > best->path.size()))
        best = &o;
    }
    if (best) return "override '" + best->text + "'";
    for (std::string k = key; !k.empty();) {
      if (auto it = locations_.find(k); it != locations_.end()) return it->second;
      const auto dot = k.rfind('.');
      k = dot == std::string::npos ? std::string() : k.substr(0, dot);
    }
    return file_;
  }
  void set_location(const std::string& key, const YAML::Mark& m) {
    if (m.line >= 0) locations_[key] = cat(file_, ":", m.line + 1, ":", m.column + 1);
  }
  /// "did you mean train.lr?": the same leaf name elsewhere, else the closest full path.
  std::string suggestion(const std::string& key) const {
    const std::string leaf = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
    for (const auto& k : known_) {
      const auto dot = k.rfind('.');
      if (k != key && (dot == std::string::npos ? k : k.substr(dot + 1)) == leaf) return "did you mean " + k + "?";
    }
    if (auto m = closest_match(key, known_)) return "did you mean " + *m + "?";
    return "run `mmtune config keys` to list every key";
  }
  std::vector<Override>& overrides() { return overrides_; }
  const FamilyCatalog& catalog() const { return catalog_; }
  std::vector<ConfigProblem>& problems() { return problems_; }

 private:
  std::string file_;
  const FamilyCatalog& catalog_;
  std::vector<std::string> known_;
  std::vector<Override> overrides_;
  std::map<std::string, std::string> locations_;
  std::vector<ConfigProblem> problems_;
};

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "null";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Scalar: return "'" + n.Scalar() + "'";
    default: return "nothing";
  }
}

std::optional<bool> parse_bool(const std::string& s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

std::optional<int64_t> parse_int(std::string s) {
  if (!s.empty() && s[0] == '+') s.erase(0, 1);
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> parse_float(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return v;
}

/// Parses one scalar into T, or returns an error message.
template <class T>
std::optional<std::string> parse_scalar(const YAML::Node& n, T& out) {
  if (!n.IsScalar()) return std::nullopt;  // handled by the caller
  const std::string& s = n.Scalar();
  if constexpr (std::is_same_v<T, bool>) {
    if (auto v = parse_bool(s)) { out = *v; return std::nullopt; }
    return "expected true or false, got " + describe(n);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    if (auto v = parse_int(s)) { out = *v; return std::nullopt; }
    return "expected an integer, got " + describe(n);
  } else if constexpr (std::is_same_v<T, double>) {
    const auto v = parse_float(s);
    if (!v) return "expected a number, got " + describe(n);
    // inf, nan and 1e400 (out of double's range) parse, but no key means them: a learning rate of
    // inf would skip every step as non-finite and still exit 0
    if (!std::isfinite(*v)) return "expected a finite number, got " + describe(n);
    out = *v;
    return std::nullopt;
  } else {
    out = s;
    return std::nullopt;
  }
}

template <class T>
constexpr const char* scalar_kind() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_same_v<T, int64_t>) return "an integer";
  else if constexpr (std::is_same_v<T, double>) return "a number";
  else return "a string";
}

template <class>
struct IsVector : std::false_type {};
template <class U>
struct IsVector<std::vector<U>> : std::true_type { using Elem = U; };
template <class>
struct IsOptional : std::false_type {};
template <class U>
struct IsOptional<std::optional<U>> : std::true_type { using Elem = U; };

/// Reads one YAML mapping into a Section; reports unknown keys when finished.
class Reader final : public Visitor {
 public:
  Reader(const YAML::Node& node, std::string prefix, LoadContext& ctx)
      : node_(node), prefix_(std::move(prefix)), ctx_(ctx) {
    index();
  }

  void field(std::string_view key, FieldRef ref, const FieldInfo& info) override {
    const YAML::Node* n = take(key);
    if (!n) return;
    const std::string p = path(key);
    std::visit([&](auto* out) { read_value(p, *n, *out, info); }, ref);
  }

  void section(std::string_view key, Section& s, std::string_view) override {
    const YAML::Node* n = take(key);
    if (!n || n->IsNull()) return;  // absent or `key:` with nothing: defaults
    if (!n->IsMap()) {
      ctx_.add(path(key), "expected a mapping of keys, got " + describe(*n));
      return;
    }
    Reader child(*n, path(key), ctx_);
    s.visit(child);
    child.finish();
  }

  void families(AdapterConfig& adapter) override {
    for (const auto& name : ctx_.catalog().family_names()) {
      const YAML::Node* n = take(name);
      if (!n) continue;
      auto opt = ctx_.catalog().make_family_config(name);
      if (!n->IsNull() && !n->IsMap()) {
        ctx_.add(path(name), "expected a mapping of " + name + " options, got " + describe(*n));
        continue;
      }
      if (n->IsMap()) {
        Reader child(*n, path(name), ctx_);
        opt->visit(child);
        child.finish();
      }
      adapter.options[name] = std::move(opt);
    }
  }

  /// Every key of this mapping that no field asked for is an error.
  void finish() {
    for (const auto& [name, value] : entries_) {
      if (used_.count(name)) continue;
      const std::string p = path(name);
      ctx_.add(p, "unknown key", ctx_.suggestion(p));
    }
  }

 private:
  void index() {
    if (!node_.IsMap()) return;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      if (!it->first.IsScalar()) {
        ctx_.add(prefix_, "keys must be plain names, got " + describe(it->first));
        continue;
      }
      const std::string name = it->first.Scalar();
      ctx_.set_location(path(name), it->first.Mark());
      if (entries_.count(name)) {
        ctx_.add(path(name), "duplicate key", "keep one of them");
        continue;
      }
      entries_.emplace(name, it->second);
    }
  }

  const YAML::Node* take(std::string_view key) {
    auto it = entries_.find(std::string(key));
    if (it == entries_.end()) return nullptr;
    used_.insert(it->first);
    return &it->second;
  }

  std::string path(std::string_view key) const {
    return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
  }

  template <class T>
  void read_value(const std::string& p, const YAML::Node& n, T& out, const FieldInfo& info) {
    if constexpr (IsOptional<T>::value) {
      if (n.IsNull()) { out.reset(); return; }
      typename IsOptional<T>::Elem v{};
      read_value(p, n, v, info);
      out = v;
    } else if constexpr (IsVector<T>::value) {
      using E = typename IsVector<T>::Elem;
      if (n.IsNull()) { out.clear(); return; }
      if (!n.IsSequence()) {
        ctx_.add(p, std::string("expected a list of ") + scalar_kind<E>() + ", got " + describe(n), "write [a, b]");
        return;
      }
      T values;
      for (std::size_t i = 0; i < n.size(); ++i) {
        E v{};
        if (!n[i].IsScalar()) {
          ctx_.add(p, cat("item ", i, ": expected ", scalar_kind<E>(), ", got ", describe(n[i])));
          return;
        }
        if (auto err = parse_scalar(n[i], v)) {
          ctx_.add(p, cat("item ", i, ": ", *err));
          return;
        }
        values.push_back(std::move(v));
      }
      out = std::move(values);
    } else {
      if (n.IsNull() && std::is_same_v<T, std::string>) {
        // `key:` with nothing, or key=null: an empty string (no path, no name) -- unless the field
        // is a choice without "" among its values (found by fuzz_config: `vision.feature:` loaded
        // as '', and the config printed from it did not load back)
        if (info.choices && std::find(info.choices->begin(), info.choices->end(), "") == info.choices->end()) {
          ctx_.add(p, "expected one of " + join(*info.choices, " | ") + ", got nothing (null)",
                   "write one of them, or leave the key out for its default");
          return;
        }
        out = T{};
        return;
      }
      if (!n.IsScalar()) {
        ctx_.add(p, std::string("expected ") + scalar_kind<T>() + ", got " + describe(n));
        return;
      }
      if (auto err = parse_scalar(n, out)) {
        ctx_.add(p, *err);
        return;
      }
      if constexpr (std::is_same_v<T, std::string>) {
        if (info.choices && std::find(info.choices->begin(), info.choices->end(), out) == info.choices->end()) {
          auto m = closest_match(out, *info.choices);
          ctx_.add(p, "expected one of " + join(*info.choices, " | ") + ", got '" + out + "'",
                   m ? "did you mean " + *m + "?" : std::string());
        }
      }
    }
  }

  YAML::Node node_;
  std::string prefix_;
  LoadContext& ctx_;
  std::map<std::string, YAML::Node> entries_;
  std::set<std::string> used_;
};

/// Sets `path` (dotted) in the YAML tree to the value parsed from `value_text`.
void apply_override(YAML::Node& root, const std::string& text, LoadContext& ctx) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    ctx.add_at("override '" + text + "'", "", "expected key.sub=value", "e.g. train.lr=1e-4");
    return;
  }
  const std::string path = text.substr(0, eq);
  const std::string value_text = text.substr(eq + 1);
  ctx.overrides().push_back({path, text});
  YAML::Node value;
  try {
    value = YAML::Load(value_text);
  } catch (const YAML::Exception& e) {
    ctx.add(path, "cannot parse the value '" + value_text + "': " + e.msg, "quote it, e.g. key='a: b'");
    return;
  }
  const auto parts = split(path, '.');
  for (const auto& part : parts) {
    if (part.empty()) {
      ctx.add(path, "empty name in the key path");
      return;
    }
  }
  // Walk (creating missing sections) to the parent mapping, then set the leaf.
  YAML::Node cur;
  cur.reset(root);
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = cur[parts[i]];
    if (!next.IsDefined() || next.IsNull()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next.reset(cur[parts[i]]);
    } else if (!next.IsMap()) {
      ctx.add(path, "cannot set a key inside " + join({parts.begin(), parts.begin() + i + 1}, ".") +
                        ", which is " + describe(next));
      return;
    }
    cur.reset(next);
  }
  cur[parts.back()] = value;
}

std::string read_file(const std::string& path) {
  return read_whole_file(path, kMaxConfigFileBytes, "a config file", [&](const FileProblem& p) {
    using K = FileProblem::Kind;
    switch (p.kind) {
      case K::kMissing:
        throw ConfigError({{path, "", "config file not found",
                            "check the path; shipped configs are in configs/ (e.g. configs/lavin/tiny.yaml)"}});
      case K::kNotAFile:
        throw ConfigError({{path, "", "is a directory, not a config file", "pass a .yaml file"}});
      case K::kTooLarge:
        throw ConfigError({{path, "", p.message, "a config is a small YAML file; is this the right path?"}});
      case K::kUnreadable:
        throw ConfigError({{path, "", p.message, "check its permissions"}});
    }
  });
}

}  // namespace

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides,
                      const FamilyCatalog& catalog) {
  const std::string text = read_file(path);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError({{cat(path, ":", e.mark.line + 1, ":", e.mark.column + 1), "",
                        "malformed YAML: " + e.msg, "check indentation and quoting on that line"}});
  }
  if (root.IsNull()) {
    throw ConfigError({{path, "", "config file is empty",
                        "start from a shipped config, e.g. configs/lavin/tiny.yaml"}});
  }
  if (!root.IsMap()) {
    throw ConfigError({{path, "", "expected a mapping of sections at the top level, got " + describe(root),
                        "a config looks like `train:\\n  lr: 1e-4`"}});
  }

  LoadContext ctx(path, catalog);
  for (const auto& o : overrides) apply_override(root, o, ctx);

  RunConfig cfg;
  Reader reader(root, "", ctx);
  cfg.visit(reader);
  reader.finish();

  // The selected family must exist, and its options are always present (defaults if absent).
  const auto names = catalog.family_names();
  if (cfg.adapter.family != "none") {
    if (std::find(names.begin(), names.end(), cfg.adapter.family) == names.end()) {
      std::vector<std::string> allowed{"none"};
      allowed.insert(allowed.end(), names.begin(), names.end());
      auto m = closest_match(cfg.adapter.family, allowed);
      ctx.add("adapter.family",
              "unknown adapter family '" + cfg.adapter.family + "'; registered: " + join(allowed, ", "),
              m ? "did you mean " + *m + "?" : std::string());
    } else if (!cfg.adapter.options.count(cfg.adapter.family)) {
      cfg.adapter.options[cfg.adapter.family] = catalog.make_family_config(cfg.adapter.family);
    }
  }

  // model.dtype (the spelling, beside the frozen model's other keys) and the top-level
  // dtype name one setting: either may be given, both only when they agree
  if (!cfg.model.dtype.empty()) {
    const YAML::Node top = root["dtype"];
    if (top.IsDefined() && !top.IsNull() && top.IsScalar() && top.Scalar() != cfg.model.dtype) {
      ctx.add("model.dtype", "is " + cfg.model.dtype + " but dtype is " + top.Scalar() + ": they name the same setting",
              "give one of them");
    }
    cfg.dtype = cfg.model.dtype;
  }
  cfg.model.dtype = cfg.dtype;

  // Cross-field checks run even after reading problems, so a user sees everything at once; a key
  // that already has a reading problem gets no second (derived) complaint.
  auto& problems = ctx.problems();
  const std::size_t n_read = problems.size();
  cfg.validate(ctx, "");
  std::set<std::string> bad_keys;
  for (std::size_t i = 0; i < n_read; ++i) bad_keys.insert(problems[i].key);
  std::vector<ConfigProblem> all(problems.begin(), problems.begin() + n_read);
  for (std::size_t i = n_read; i < problems.size(); ++i) {
    if (!bad_keys.count(problems[i].key)) all.push_back(problems[i]);
  }
  if (!all.empty()) throw ConfigError(std::move(all));
  return cfg;
}

}  // namespace mmtune::config
