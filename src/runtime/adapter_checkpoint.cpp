#include <mmtune/core/atomic_file.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/core/version.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/checkpoint.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <set>

namespace mmtune::runtime {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Writes a config section's fields as JSON (only the selected adapter family's options).
class JsonWriter final : public config::Visitor {
 public:
  explicit JsonWriter(json& out) : out_(out) {}
  void field(std::string_view key, config::FieldRef ref, const config::FieldInfo&) override {
    std::visit(
        [&](auto* p) {
          using T = std::decay_t<decltype(*p)>;
          if constexpr (std::is_same_v<T, std::optional<int64_t>> || std::is_same_v<T, std::optional<double>>) {
            out_[std::string(key)] = p->has_value() ? json(**p) : json(nullptr);
          } else {
            out_[std::string(key)] = *p;
          }
        },
        ref);
  }
  void section(std::string_view key, config::Section& s, std::string_view) override {
    json sub = json::object();
    JsonWriter w(sub);
    s.visit(w);
    out_[std::string(key)] = sub;
  }
  void families(config::AdapterConfig& adapter) override {
    auto it = adapter.options.find(adapter.family);
    if (it != adapter.options.end()) section(adapter.family, *it->second, "");
  }

 private:
  json& out_;
};

// Vision keys that shape the visual path (paths and dry-run names are the user's business).
const std::set<std::string> kVisionKeys{"feature", "cls_every", "layer", "image_size", "preprocess", "interpolation",
                                        "norm", "projector", "projector_hidden", "start_end_tokens"};

json read_config(const std::string& dir) {
  const fs::path p = fs::path(dir) / kAdapterConfigFile;
  const std::string text = read_checkpoint_file(
      p,
      fs::exists(dir) ? "an adapter directory holds adapter_config.json and adapter_model.safetensors"
                      : "check the --checkpoint path",
      kMaxMetadataFileBytes);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw CheckpointError(p.string(), std::string("is not valid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("format") || j["format"] != "mmtune.adapter" || !j.contains("family") ||
      !j.contains("adapter")) {
    throw CheckpointError(p.string(), "is not an mmtune adapter config (format 'mmtune.adapter' with family and adapter)",
                          "official LaVIN .pth checkpoints convert with scripts/convert_lavin_checkpoint.py");
  }
  // the fields the readers below take as given (a wrong type escaped as nlohmann's exception; fuzz)
  std::vector<std::string> wrong;
  if (!j["family"].is_string()) wrong.push_back("family (a string)");
  if (!j["adapter"].is_object()) wrong.push_back("adapter (an object)");
  for (const char* k : {"base_model", "vision_model", "vision"})
    if (j.contains(k) && !j[k].is_object() && !j[k].is_null()) wrong.push_back(std::string(k) + " (an object)");
  if (j.contains("base_model") && j["base_model"].is_object() && j["base_model"].contains("id") &&
      !j["base_model"]["id"].is_string())
    wrong.push_back("base_model.id (a string)");
  if (!wrong.empty())
    throw CheckpointError(p.string(), "has fields of the wrong type: " + join(wrong, ", "),
                          "adapter_config.json is written by mmtune train; re-save or re-convert the adapter");
  return j;
}

}  // namespace

std::string adapter_config_json(const config::RunConfig& cfg, const BuiltModel& built) {
  json j;
  j["format"] = "mmtune.adapter";
  j["version"] = 1;
  j["family"] = cfg.adapter.family;
  json adapter = json::object();
  JsonWriter aw(adapter);
  const_cast<config::AdapterConfig&>(cfg.adapter).visit(aw);
  j["adapter"] = adapter;
  json vision = json::object();
  JsonWriter vw(vision);
  const_cast<config::VisionConfig&>(cfg.vision).visit(vw);
  for (auto it = vision.begin(); it != vision.end();) it = kVisionKeys.count(it.key()) ? std::next(it) : vision.erase(it);
  j["vision"] = vision;
  const auto& lc = built.model->llm().config();
  // quantization as built, not as configured: a `convert quantize` directory loads quantized
  // whatever model.quantize says
  j["base_model"] = {{"id", cfg.model.id.empty() ? fs::path(cfg.model.path).filename().string() : cfg.model.id},
                     {"hidden_size", lc.hidden_size},
                     {"num_layers", lc.num_layers},
                     {"num_heads", lc.num_heads},
                     {"num_kv_heads", lc.num_kv_heads},
                     {"intermediate_size", lc.intermediate_size},
                     {"vocab_size", lc.vocab_size},
                     {"dtype", cfg.dtype},
                     {"quantize", lc.quantization.label()}};
  if (built.model->has_vision()) {
    const auto& vc = built.model->vision().config();
    j["vision_model"] = {{"id", fs::path(cfg.vision.path).filename().string()},
                         {"hidden_size", vc.hidden_size},
                         {"num_layers", vc.num_layers},
                         {"image_size", vc.image_size},
                         {"patch_size", vc.patch_size},
                         {"quantize", vc.quantization.label()}};
  } else {
    j["vision_model"] = nullptr;
  }
  int64_t n = 0;
  for (const auto& [name, t] : built.trainable) n += t.numel();
  j["trainable"] = cfg.train.trainable;
  j["trainable_parameters"] = n;
  j["mmtune_version"] = std::string(kVersion) + "+" + kGitRevision;
  return j.dump(2) + "\n";
}

void save_adapter(const std::string& dir, const config::RunConfig& cfg, const BuiltModel& built) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw CheckpointError(dir, "cannot create the directory: " + ec.message());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : built.trainable) tensors.emplace_back(name, t.detach().to(torch::kCPU, torch::kFloat32));
  io::save_safetensors((fs::path(dir) / kAdapterWeightsFile).string(), tensors,
                       {{"format", "pt"}, {"mmtune.family", cfg.adapter.family}});
  write_file_atomically((fs::path(dir) / kAdapterConfigFile).string(), adapter_config_json(cfg, built));
}

std::vector<std::string> adapter_overrides(const std::string& dir) {
  const json j = read_config(dir);
  std::vector<std::string> out;
  const json& a = j["adapter"];
  const std::string family = j["family"].get<std::string>();
  out.push_back("adapter.family=" + family);
  if (a.contains(family) && a[family].is_object()) {
    for (const auto& [k, v] : a[family].items()) {
      if (!v.is_null()) out.push_back("adapter." + family + "." + k + "=" + v.dump());
    }
  }
  if (j.contains("vision") && j["vision"].is_object()) {
    for (const auto& [k, v] : j["vision"].items()) {
      if (kVisionKeys.count(k) && !v.is_null()) out.push_back("vision." + k + "=" + v.dump());
    }
  }
  return out;
}

namespace {

// The base the adapter in `j` (adapter_config.json at cfg_path) was trained on must have `built`'s shapes.
void check_base(const json& j, const std::string& cfg_path, const BuiltModel& built) {
  std::vector<std::string> mismatch;
  auto check = [&](const json& rec, const std::string& what, const std::map<std::string, int64_t>& have) {
    if (!rec.is_object()) return;
    for (const auto& [k, v] : have) {
      if (rec.contains(k) && rec[k].is_number_integer() && rec[k].get<int64_t>() != v)
        mismatch.push_back(cat(what, ".", k, " ", rec[k].get<int64_t>(), " (this model: ", v, ")"));
    }
  };
  const auto& lc = built.model->llm().config();
  check(j.value("base_model", json()), "base_model",
        {{"hidden_size", lc.hidden_size}, {"num_layers", lc.num_layers}, {"num_heads", lc.num_heads},
         {"num_kv_heads", lc.num_kv_heads}, {"intermediate_size", lc.intermediate_size}, {"vocab_size", lc.vocab_size}});
  const json vm = j.value("vision_model", json());
  if (vm.is_object() && !built.model->has_vision()) mismatch.push_back("vision_model (this model has no vision tower)");
  if (vm.is_object() && built.model->has_vision()) {
    const auto& vc = built.model->vision().config();
    check(vm, "vision_model", {{"hidden_size", vc.hidden_size}, {"num_layers", vc.num_layers},
                               {"image_size", vc.image_size}, {"patch_size", vc.patch_size}});
  }
  if (!mismatch.empty()) {
    const json bm = j.value("base_model", json());
    const std::string id = bm.is_object() ? bm.value("id", std::string("?")) : "?";
    throw CheckpointError(cfg_path, "was trained on another base: " + join(mismatch, ", "),
                          "load it on the base it was made for (base_model.id: " + id + ")");
  }
}

// An adapter carries over to another precision of the same base (trained on int4, served in bf16:
// QLoRA's use), so a difference is said, not refused: the outputs differ slightly from the
// training run's. Checkpoints written before these fields existed say nothing.
void note_base_precision(const json& j, const std::string& cfg_path, const config::RunConfig& cfg,
                         const BuiltModel& built) {
  std::vector<std::string> differ;
  auto compare = [&](const json& rec, const char* key, const std::string& what, const std::string& now) {
    if (rec.is_object() && rec.contains(key) && rec[key].is_string() && rec[key].get<std::string>() != now)
      differ.push_back(cat(what, " ", rec[key].get<std::string>(), " (now ", now, ")"));
  };
  const json bm = j.value("base_model", json()), vm = j.value("vision_model", json());
  compare(bm, "dtype", "dtype", cfg.dtype);
  compare(bm, "quantize", "model.quantize", built.model->llm().config().quantization.label());
  if (built.model->has_vision())
    compare(vm, "quantize", "vision.quantize", built.model->vision().config().quantization.label());
  if (!differ.empty())
    log::info() << cfg_path << ": the adapter was trained with " << join(differ, ", ")
                << "; it carries over to this precision, with outputs slightly different from the training run's";
}

// Copies dir's tensors into `targets` (name in the file -> model tensor); every target must be in
// the file with its shape and the file must hold nothing else, else one CheckpointError lists all.
void load_tensors(const std::string& dir, const std::vector<std::pair<std::string, torch::Tensor>>& targets) {
  const std::string weights_path = (fs::path(dir) / kAdapterWeightsFile).string();
  const auto file = io::SafetensorsFile::open(weights_path);
  std::set<std::string> in_file;
  for (const auto& n : file->names()) in_file.insert(n);
  std::vector<std::string> missing, wrong;
  for (const auto& [name, t] : targets) {
    if (!in_file.count(name)) {
      missing.push_back(name);
      continue;
    }
    const auto& info = file->info(name);
    if (info.shape != t.sizes().vec()) wrong.push_back(cat(name, " is ", c10::IntArrayRef(info.shape), " in the file, ", t.sizes(), " in the model"));
    in_file.erase(name);
  }
  if (!missing.empty() || !wrong.empty() || !in_file.empty()) {
    std::vector<std::string> parts;
    auto capped = [](const std::vector<std::string>& v) {
      std::vector<std::string> c(v.begin(), v.begin() + std::min<size_t>(v.size(), 5));
      if (v.size() > 5) c.push_back(cat("... (", v.size(), " in all)"));
      return join(c, ", ");
    };
    if (!missing.empty()) parts.push_back("missing " + capped(missing));
    if (!wrong.empty()) parts.push_back("wrong shape: " + capped(wrong));
    if (!in_file.empty()) parts.push_back("unexpected " + capped({in_file.begin(), in_file.end()}));
    throw CheckpointError(weights_path, "does not fit the model: " + join(parts, "; "),
                          "the adapter options in adapter_config.json must match the model it was saved from");
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : targets) const_cast<torch::Tensor&>(t).copy_(file->tensor(name));
}

// load_adapter and load_adapter_into after their own checks: j is dir's adapter_config.json, read once
void load_checked(const json& j, const std::string& dir, const config::RunConfig& cfg, const BuiltModel& built,
                  const std::vector<std::pair<std::string, torch::Tensor>>& targets) {
  const std::string cfg_path = (fs::path(dir) / kAdapterConfigFile).string();
  check_base(j, cfg_path, built);
  note_base_precision(j, cfg_path, cfg, built);
  load_tensors(dir, targets);
}

}  // namespace

void load_adapter(const std::string& dir, const config::RunConfig& cfg, BuiltModel& built) {
  const json j = read_config(dir);
  const std::string family = j["family"].get<std::string>();
  if (family != cfg.adapter.family) {
    throw CheckpointError((fs::path(dir) / kAdapterConfigFile).string(),
                          "holds a '" + family + "' adapter, but the config builds adapter.family '" +
                              cfg.adapter.family + "'",
                          "drop adapter.* from the config (the checkpoint sets it) or use a " + cfg.adapter.family + " checkpoint");
  }
  load_checked(j, dir, cfg, built, built.trainable);
}

void load_adapter_into(const std::string& dir, const config::RunConfig& cfg, const BuiltModel& built,
                       const std::vector<std::pair<std::string, torch::Tensor>>& targets) {
  load_checked(read_config(dir), dir, cfg, built, targets);
}

std::string resolve_adapter_dir(const std::string& spec) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(spec, ec))
    throw CheckpointError(spec, "no such checkpoint directory",
                          "--checkpoint takes an adapter directory (adapter_config.json + adapter_model.safetensors) "
                          "or a training output_dir");
  if (fs::exists(fs::path(spec) / kAdapterConfigFile)) return spec;
  if (auto latest = find_latest_checkpoint(spec)) {
    if (!fs::exists(fs::path(*latest) / kAdapterConfigFile))
      throw CheckpointError(*latest, "has no adapter_config.json", "checkpoints written by `mmtune train` have one");
    return *latest;
  }
  throw CheckpointError(spec, "holds neither adapter_config.json nor a complete checkpoint-<step> directory",
                        "--checkpoint takes an adapter directory or a training output_dir");
}

}  // namespace mmtune::runtime
