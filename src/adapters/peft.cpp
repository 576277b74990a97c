// Plain LoRA <-> Hugging Face PEFT files, and the merged model as a Hugging Face directory. The
// layout is described in include/mmtune/adapters/peft.h.
#include <mmtune/adapters/peft.h>
#include <mmtune/core/atomic_file.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/io/safetensors.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

namespace mmtune::adapters {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

LoraBlockImpl* lora_block(model::LlamaDecoderImpl& model, int64_t layer) {
  for (const auto& a : model.block(layer).block_adapters()) {
    if (auto* l = dynamic_cast<LoraBlockImpl*>(a.get())) return l;
  }
  return nullptr;
}

void make_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw CheckpointError(dir, "cannot create the directory: " + ec.message(), "check the --out path");
}

// Capped list for one-line errors.
std::string listed(const std::vector<std::string>& v) {
  std::vector<std::string> c(v.begin(), v.begin() + std::min<size_t>(v.size(), 4));
  if (v.size() > 4) c.push_back(cat("... (", v.size(), " in all)"));
  return join(c, ", ");
}

json read_json(const fs::path& p) {
  const std::string text = read_checkpoint_file(
      p, "a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors", kMaxMetadataFileBytes);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw CheckpointError(p.string(), std::string("is not valid JSON: ") + e.what());
  }
}

// A PEFT option that changes the maths must hold its neutral value.
void require_neutral(const json& j, const std::string& key, std::vector<std::string>& bad) {
  if (!j.contains(key)) return;
  const json& v = j[key];
  const bool neutral = v.is_null() || (v.is_boolean() && !v.get<bool>()) || (v.is_object() && v.empty()) ||
                       (v.is_array() && v.empty()) || (v.is_string() && (v == "none" || v.get<std::string>().empty()));
  if (!neutral) bad.push_back(key + "=" + v.dump());
}

}  // namespace

std::string peft_lora_name(int64_t layer, Proj p, bool a) {
  return cat("base_model.model.model.layers.", layer, ".", llama_projection_path(p), a ? ".lora_A.weight" : ".lora_B.weight");
}

void export_peft(model::LlamaDecoderImpl& model, const LoraConfig& c, const std::string& base_model,
                 const std::string& dir) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::vector<int64_t> layers;
  std::set<int> targets;
  for (const auto& t : c.targets) targets.insert(static_cast<int>(projection_from_name(t)));
  for (int64_t i = 0; i < model.config().num_layers; ++i) {
    LoraBlockImpl* lora = lora_block(model, i);
    if (!lora) continue;
    layers.push_back(i);
    if (std::abs(lora->scale() - c.alpha / static_cast<double>(c.rank)) > 1e-12)
      throw Error(cat("layer ", i, "'s LoRA has scale ", lora->scale(), ", the options give ", c.alpha / c.rank),
                  "export with the options the model was built from");
    for (int p = 0; p < kNumProjs; ++p) {
      const Proj proj = static_cast<Proj>(p);
      if (lora->uses(proj) != static_cast<bool>(targets.count(p)))
        throw Error(cat("layer ", i, "'s LoRA targets do not match adapter.lora.targets [", join(c.targets, ", "), "]"),
                    "export with the options the model was built from");
      if (!lora->uses(proj)) continue;
      auto [a, b] = lora->pair(proj);
      tensors.emplace_back(peft_lora_name(i, proj, true), a.detach().to(torch::kCPU, torch::kFloat32));
      tensors.emplace_back(peft_lora_name(i, proj, false), b.detach().to(torch::kCPU, torch::kFloat32));
    }
  }
  if (tensors.empty()) throw Error("the model carries no LoRA adapter to export", "--to-peft converts adapter.family lora checkpoints");
  make_dir(dir);
  io::save_safetensors((fs::path(dir) / kPeftWeightsFile).string(), tensors, {{"format", "pt"}});

  json modules = json::array();
  for (int p : targets) modules.push_back(std::string(projection_name(static_cast<Proj>(p))) + "_proj");
  const bool all_layers = static_cast<int64_t>(layers.size()) == model.config().num_layers && c.layers.empty();
  const double alpha = c.alpha;
  json j = {{"peft_type", "LORA"},
            {"task_type", "CAUSAL_LM"},
            {"base_model_name_or_path", base_model},
            {"r", c.rank},
            {"lora_alpha", alpha == std::floor(alpha) ? json(static_cast<int64_t>(alpha)) : json(alpha)},
            {"lora_dropout", c.dropout},
            {"target_modules", modules},
            {"bias", "none"},
            {"fan_in_fan_out", false},
            {"inference_mode", true},
            {"init_lora_weights", true},
            {"layers_to_transform", all_layers ? json(nullptr) : json(layers)},
            {"layers_pattern", nullptr},
            {"modules_to_save", nullptr},
            {"rank_pattern", json::object()},
            {"alpha_pattern", json::object()},
            {"use_rslora", false},
            {"use_dora", false},
            {"revision", nullptr}};
  write_file_atomically((fs::path(dir) / kPeftConfigFile).string(), j.dump(2) + "\n");
}

namespace {

// j[key] if it is a string, else "" (a missing key, null or another type).
std::string string_or_empty(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The options of the PEFT config `j` (read from `path`); a json::exception means a value of the
// wrong type somewhere (read_peft_config turns it into a CheckpointError).
LoraConfig parse_peft_config(const fs::path& path, const json& j, std::string* base_model) {
  if (!j.is_object() || string_or_empty(j, "peft_type") != "LORA")
    throw CheckpointError(path.string(), "is not a PEFT LoRA config (peft_type LORA)",
                          j.is_object() && string_or_empty(j, "format") == "mmtune.adapter"
                              ? "this is an mmtune adapter; use --to-peft"
                              : "only PEFT LoRA adapters convert");
  std::vector<std::string> bad;
  // options that change the forward (init-only and backward-only ones, e.g. corda / velora, are fine)
  for (const char* k : {"use_dora", "use_rslora", "rank_pattern", "alpha_pattern", "modules_to_save", "fan_in_fan_out",
                        "exclude_modules", "layer_replication", "lora_bias", "target_parameters", "trainable_token_indices",
                        "alora_invocation_tokens", "use_qalora", "kasa_config", "monteclora_config", "use_bdlora",
                        "arrow_config"})
    require_neutral(j, k, bad);
  if (j.contains("bias") && j["bias"] != "none") bad.push_back("bias=" + j["bias"].dump());
  if (!bad.empty())
    throw CheckpointError(path.string(), "uses PEFT features mmtune's LoRA does not compute: " + join(bad, ", "),
                          "merge them in Python (merge_and_unload) or retrain with plain LoRA");
  LoraConfig c;
  try {
    c.rank = j.at("r").get<int64_t>();
    c.alpha = j.at("lora_alpha").get<double>();
    c.dropout = j.value("lora_dropout", 0.0);
  } catch (const json::exception& e) {
    throw CheckpointError(path.string(), std::string("r / lora_alpha missing or not numbers: ") + e.what());
  }
  const json modules = j.value("target_modules", json());
  if (!modules.is_array() || modules.empty())
    throw CheckpointError(path.string(), "target_modules must be a list of module names, got " + modules.dump(),
                          "regex or 'all-linear' targets: list the projections explicitly (q_proj, v_proj, ...)");
  c.targets.clear();
  for (const auto& m : modules) {
    const std::string name = m.is_string() ? m.get<std::string>() : m.dump();
    const auto& known = lora_projection_names();
    const std::string shortname = name.size() > 5 && name.ends_with("_proj") ? name.substr(0, name.size() - 5) : "";
    if (std::find(known.begin(), known.end(), shortname) == known.end())
      throw CheckpointError(path.string(), "target module '" + name + "' is not a LLaMA projection mmtune adapts",
                            "mmtune's LoRA targets q_proj k_proj v_proj o_proj gate_proj up_proj down_proj");
    // PEFT matches target_modules as a set: a name listed twice is one target
    if (std::find(c.targets.begin(), c.targets.end(), shortname) == c.targets.end()) c.targets.push_back(shortname);
  }
  const json layers = j.value("layers_to_transform", json());
  const bool indices = layers.is_array() && std::all_of(layers.begin(), layers.end(), [](const json& v) {
    return v.is_number_integer();
  });
  if (layers.is_number_integer()) c.layers = {layers.get<int64_t>()};
  else if (indices) c.layers = layers.get<std::vector<int64_t>>();
  else if (!layers.is_null())
    throw CheckpointError(path.string(),
                          "layers_to_transform must be null, a layer index or a list of them, got " + layers.dump(),
                          "PEFT writes null (every layer) or the layer indices");
  std::sort(c.layers.begin(), c.layers.end());  // PEFT tests membership: order and repeats mean nothing
  c.layers.erase(std::unique(c.layers.begin(), c.layers.end()), c.layers.end());
  if (base_model) *base_model = string_or_empty(j, "base_model_name_or_path");
  return c;
}

}  // namespace

LoraConfig read_peft_config(const std::string& dir, std::string* base_model) {
  const fs::path path = fs::path(dir) / kPeftConfigFile;
  const json j = read_json(path);
  try {
    return parse_peft_config(path, j, base_model);
  } catch (const json::exception& e) {
    throw CheckpointError(path.string(), std::string("holds a value of the wrong type: ") + e.what(),
                          "compare it with the adapter_config.json PEFT's save_pretrained writes");
  }
}

bool is_peft_adapter(const std::string& dir) {
  const fs::path p = fs::path(dir) / kPeftConfigFile;
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return false;
  const json j = json::parse(read_checkpoint_file(p, "check the --checkpoint path", kMaxMetadataFileBytes), nullptr,
                             /*allow_exceptions=*/false);
  return j.is_object() && j.contains("peft_type");
}

std::vector<std::string> lora_overrides(const LoraConfig& c) {
  return {"adapter.family=lora",
          cat("adapter.lora.rank=", c.rank),
          "adapter.lora.alpha=" + json(c.alpha).dump(),
          "adapter.lora.dropout=" + json(c.dropout).dump(),
          "adapter.lora.targets=" + json(c.targets).dump(),
          "adapter.lora.layers=" + json(c.layers).dump()};
}

void import_peft(model::LlamaDecoderImpl& model, const std::string& dir) {
  const std::string path = (fs::path(dir) / kPeftWeightsFile).string();
  const auto file = io::SafetensorsFile::open(path);
  std::set<std::string> unexpected;
  for (const auto& n : file->names()) unexpected.insert(n);
  std::vector<std::string> missing, wrong;
  std::vector<std::pair<std::string, torch::Tensor>> plan;
  for (int64_t i = 0; i < model.config().num_layers; ++i) {
    LoraBlockImpl* lora = lora_block(model, i);
    if (!lora) continue;
    for (int p = 0; p < kNumProjs; ++p) {
      if (!lora->uses(static_cast<Proj>(p))) continue;
      auto [a, b] = lora->pair(static_cast<Proj>(p));
      for (auto [name, t] : {std::pair{peft_lora_name(i, static_cast<Proj>(p), true), a},
                             std::pair{peft_lora_name(i, static_cast<Proj>(p), false), b}}) {
        if (!file->contains(name)) {
          missing.push_back(name);
          continue;
        }
        unexpected.erase(name);
        const auto& shape = file->info(name).shape;
        if (shape != t.sizes().vec()) wrong.push_back(cat(name, " ", c10::IntArrayRef(shape), " (model: ", t.sizes(), ")"));
        else plan.emplace_back(name, t);
      }
    }
  }
  if (plan.empty() && missing.empty()) throw Error("the model carries no LoRA adapter to load PEFT weights into", "build it with read_peft_config's options");
  std::vector<std::string> parts;
  if (!missing.empty()) parts.push_back("missing " + listed(missing));
  if (!wrong.empty()) parts.push_back("wrong shape " + listed(wrong));
  if (!unexpected.empty()) parts.push_back("unexpected " + listed({unexpected.begin(), unexpected.end()}));
  if (!parts.empty())
    throw CheckpointError(path, "does not fit the model: " + join(parts, "; "),
                          "build the model with the adapter's adapter_config.json (r, target_modules, layers_to_transform)");
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : plan) t.copy_(file->tensor(name));
}

void save_llama(model::LlamaDecoderImpl& model, const std::string& source_dir, const std::string& out_dir) {
  const fs::path src(source_dir), out(out_dir);
  if (!fs::exists(src / "config.json")) throw CheckpointError((src / "config.json").string(), "not found", "model.path must be a Hugging Face LLaMA directory");
  if (fs::exists(out) && fs::equivalent(src, out)) throw CheckpointError(out_dir, "is the source model directory", "write the merged model elsewhere");
  make_dir(out_dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model.named_parameters(true)) {
    if (p.key().find("adapters.") != std::string::npos) continue;  // adapters (merged or not) stay out
    tensors.emplace_back(p.key(), p.value().detach().to(torch::kCPU));
  }
  io::save_safetensors((out / "model.safetensors").string(), tensors, {{"format", "pt"}});
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "added_tokens.json"}) {
    if (!fs::exists(src / f)) continue;
    std::error_code ec;
    fs::copy_file(src / f, out / f, fs::copy_options::overwrite_existing, ec);
    if (ec) throw CheckpointError((out / f).string(), "cannot copy from " + source_dir + ": " + ec.message());
  }
}

}  // namespace mmtune::adapters
