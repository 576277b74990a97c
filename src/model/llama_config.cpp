#include <mmtune/core/errors.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/model/llama_config.h>

#include <filesystem>

#include <nlohmann/json.hpp>

namespace mmtune::model {
namespace {

using nlohmann::json;

template <class T>
T get_or(const json& j, const char* key, T fallback, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const json::exception&) {
    throw CheckpointError(path, cat("key '", key, "' has the wrong type: ", j[key].dump()),
                          "compare with a config.json written by transformers' save_pretrained");
  }
}

template <class T>
T require(const json& j, const char* key, const std::string& path) {
  if (!j.contains(key)) {
    throw CheckpointError(path, cat("missing key '", key, "'"), "is this a LlamaForCausalLM config.json?");
  }
  return get_or<T>(j, key, T{}, path);
}

// transformers 4 writes "rope_scaling": {"rope_type"|"type": ..., ...} and "rope_theta";
// transformers 5 writes "rope_parameters": {"rope_type": ..., "rope_theta": ..., ...}.
void read_rope(const json& j, LlamaConfig& c, const std::string& path) {
  c.rope_theta = get_or<double>(j, "rope_theta", c.rope_theta, path);
  json rs;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) rs = j["rope_parameters"];
  else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) rs = j["rope_scaling"];
  if (rs.is_null()) return;
  c.rope_theta = get_or<double>(rs, "rope_theta", c.rope_theta, path);
  std::string type = get_or<std::string>(rs, "rope_type", get_or<std::string>(rs, "type", "default", path), path);
  if (type != "default" && type != "llama3") {
    throw CheckpointError(path, "rope scaling type '" + type + "' is not supported", "supported: default, llama3");
  }
  c.rope_scaling.type = type;
  c.rope_scaling.factor = get_or<double>(rs, "factor", 1.0, path);
  c.rope_scaling.low_freq_factor = get_or<double>(rs, "low_freq_factor", 1.0, path);
  c.rope_scaling.high_freq_factor = get_or<double>(rs, "high_freq_factor", 4.0, path);
  c.rope_scaling.original_max_position_embeddings =
      get_or<int64_t>(rs, "original_max_position_embeddings", 8192, path);
}

// mmtune convert quantize writes "quantization": {"format": "mmtune", "bits": 4 | 8,
// "group_size": G, "fallback": "none" | "int8"} (docs/QUANTIZATION.md).
void read_quantization(const json& j, LlamaConfig& c, const std::string& path) {
  if (!j.contains("quantization")) return;
  const json& q = j["quantization"];
  if (!q.is_object() || q.value("format", std::string()) != "mmtune")
    throw CheckpointError(path, "'quantization' is not an mmtune quantization block",
                          "only directories written by `mmtune convert quantize` carry one");
  const int64_t bits = get_or<int64_t>(q, "bits", 0, path);
  if (bits != 4 && bits != 8) throw CheckpointError(path, cat("quantization.bits is ", bits), "4 or 8");
  c.quantization.mode = bits == 4 ? "int4" : "int8";
  c.quantization.group = get_or<int64_t>(q, "group_size", 128, path);
  c.quantization.fallback = get_or<std::string>(q, "fallback", "none", path);
}

int64_t first_id(const json& j, const char* key, int64_t fallback, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (j[key].is_array()) return j[key].empty() ? fallback : j[key][0].get<int64_t>();
  return get_or<int64_t>(j, key, fallback, path);
}

}  // namespace

LlamaConfig LlamaConfig::from_hf(const std::string& dir_or_file) {
  namespace fs = std::filesystem;
  const std::string path =
      fs::is_directory(dir_or_file) ? (fs::path(dir_or_file) / "config.json").string() : dir_or_file;
  const std::string text = read_checkpoint_file(
      path, "model.path must be a Hugging Face model directory with config.json", kMaxMetadataFileBytes);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw CheckpointError(path, std::string("not valid JSON: ") + e.what());
  }
  LlamaConfig c;
  c.vocab_size = require<int64_t>(j, "vocab_size", path);
  c.hidden_size = require<int64_t>(j, "hidden_size", path);
  c.intermediate_size = require<int64_t>(j, "intermediate_size", path);
  c.num_layers = require<int64_t>(j, "num_hidden_layers", path);
  c.num_heads = require<int64_t>(j, "num_attention_heads", path);
  c.num_kv_heads = get_or<int64_t>(j, "num_key_value_heads", c.num_heads, path);
  c.head_dim = get_or<int64_t>(j, "head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0, path);
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", 2048, path);
  c.rms_norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, path);
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false, path);
  c.bos_token_id = first_id(j, "bos_token_id", 1, path);
  c.eos_token_id = first_id(j, "eos_token_id", 2, path);
  read_rope(j, c, path);
  read_quantization(j, c, path);
  if (c.num_heads <= 0 || c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0 || c.head_dim <= 0 ||
      c.hidden_size <= 0 || c.num_layers <= 0 || c.vocab_size <= 0 || c.head_dim % 2 != 0) {
    throw CheckpointError(path, "inconsistent shape: " + c.describe(),
                          "heads must divide evenly into kv heads and head_dim must be even");
  }
  return c;
}

std::string Quantization::describe() const {
  if (mode == "int4") return cat("int4 (group ", group, fallback == "int8" ? ", int8 fallback)" : ")");
  return mode;
}

std::string Quantization::label() const { return mode == "int4" ? cat("int4-g", group) : mode; }

std::string LlamaConfig::describe() const {
  return cat("L=", num_layers, " D=", hidden_size, " H=", num_heads, "/", num_kv_heads, " hd=", head_dim,
             " F=", intermediate_size, " V=", vocab_size, tie_word_embeddings ? " tied" : " untied",
             rope_scaling.type == "default" ? "" : " rope=" + rope_scaling.type,
             quantization.enabled() ? " " + quantization.describe() : std::string());
}

}  // namespace mmtune::model
