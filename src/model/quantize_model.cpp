// `mmtune convert quantize`: a full-precision Hugging Face LLaMA directory -> a pre-quantized one.
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/model/quantize.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

namespace mmtune::model {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The decoder's Linear weights, as LlamaDecoder builds them (an untied lm_head included).
bool is_linear_weight(const std::string& name, bool tied) {
  static const std::regex kLinear(R"(model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight)");
  return std::regex_match(name, kLinear) || (!tied && name == "lm_head.weight");
}

// The model files beside the weights that a loaded directory needs or keeps.
const char* const kSideFiles[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                  "generation_config.json"};

}  // namespace

QuantizedModelStats write_quantized_model(const std::string& in, const std::string& out, const Quantization& q,
                                          int64_t shard_bytes) {
  if (!q.enabled()) throw UsageError("convert quantize needs --bits 4 or 8", "pass --bits 4 (int4) or --bits 8 (int8)");
  std::error_code ec;
  if (fs::exists(out, ec)) throw UsageError(out + " already exists", "choose a new --out directory (nothing is overwritten)");
  const LlamaConfig config = LlamaConfig::from_hf(in);
  if (config.quantization.enabled())
    throw UsageError(in + " is already quantized (" + config.quantization.describe() + ")",
                     "quantize the full-precision model it was made from");
  json cfg_json;
  {
    // LlamaConfig::from_hf read and parsed it already
    cfg_json = json::parse(read_checkpoint_file(fs::path(in) / "config.json", "", kMaxMetadataFileBytes));
  }
  const auto ckpt = io::SafetensorsCheckpoint::open(in);
  // every weight's mode first: a group that does not fit is refused before anything is written
  std::map<std::string, std::string> modes;
  for (const auto& name : ckpt.names()) {
    if (!is_linear_weight(name, config.tie_word_embeddings)) continue;
    const auto& shape = ckpt.info(name).shape;
    if (shape.size() != 2) throw CheckpointError(ckpt.path(), name + " is not a matrix", "is this a LlamaForCausalLM directory?");
    modes[name] = mode_for(q, name.substr(0, name.size() - 7), shape[0], shape[1]);
  }
  if (modes.empty()) throw CheckpointError(ckpt.path(), "no decoder Linear weights found", "is this a LlamaForCausalLM directory?");

  const fs::path final_dir(out);
  const fs::path tmp = final_dir.parent_path() / cat(".", final_dir.filename().string(), ".tmp.", ::getpid());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  QuantizedModelStats stats;
  try {
    std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
    int64_t shard_size = 0;
    std::map<std::string, int64_t> shard_of;
    auto add = [&](const std::string& name, torch::Tensor t) {
      const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
      if (shard_size > 0 && shard_size + bytes > shard_bytes) {
        // write the full shard now (numbered by position; renamed with the total count below)
        io::save_safetensors((tmp / cat("shard-", shards.size(), ".part")).string(), shards.back());
        shards.back().clear();
        shards.emplace_back();
        shard_size = 0;
      }
      shard_of[name] = static_cast<int64_t>(shards.size());
      shards.back().emplace_back(name, std::move(t));
      shard_size += bytes;
      stats.bytes_out += bytes;
    };
    for (const auto& name : ckpt.names()) {
      const torch::Tensor src = ckpt.tensor(name);  // mmap'd
      stats.bytes_in += src.numel() * static_cast<int64_t>(src.element_size());
      const auto m = modes.find(name);
      if (m == modes.end()) {
        add(name, src);
        ++stats.copied;
        continue;
      }
      const std::string base = name.substr(0, name.size() - 7);  // without ".weight"
      QuantizedWeight qw = quantize_weight(src, m->second, m->second == "int4" ? q.group : 0);
      ckpt.release(name);
      add(base + ".qweight", std::move(qw.qweight));
      add(base + ".scales", std::move(qw.scales));
      ++(m->second == q.mode ? stats.quantized : stats.fallback);
    }
    io::save_safetensors((tmp / cat("shard-", shards.size(), ".part")).string(), shards.back());
    shards.back().clear();
    stats.shards = static_cast<int64_t>(shards.size());
    json index = {{"metadata", {{"total_size", stats.bytes_out}}}, {"weight_map", json::object()}};
    for (int64_t i = 1; i <= stats.shards; ++i) {
      char numbered[64];
      std::snprintf(numbered, sizeof numbered, "model-%05ld-of-%05ld.safetensors", static_cast<long>(i),
                    static_cast<long>(stats.shards));
      const std::string file = stats.shards == 1 ? std::string("model.safetensors") : std::string(numbered);
      fs::rename(tmp / cat("shard-", i, ".part"), tmp / file);
      for (const auto& [name, s] : shard_of)
        if (s == i) index["weight_map"][name] = file;
    }
    if (stats.shards > 1) std::ofstream(tmp / "model.safetensors.index.json") << index.dump(2) << "\n";
    cfg_json["quantization"] = {{"format", "mmtune"}, {"bits", q.mode == "int4" ? 4 : 8}, {"group_size", q.group},
                                {"fallback", q.fallback}};
    std::ofstream(tmp / "config.json") << cfg_json.dump(2) << "\n";
    for (const char* side : kSideFiles)
      if (fs::exists(fs::path(in) / side)) fs::copy_file(fs::path(in) / side, tmp / side);
    fs::rename(tmp, final_dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return stats;
}

}  // namespace mmtune::model
