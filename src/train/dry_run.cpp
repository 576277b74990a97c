#include <mmtune/runtime/build_model.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/model/sizes.h>
#include <mmtune/train/dry_run.h>

#include <filesystem>
#include <iomanip>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace mmtune::train {
namespace {

namespace fs = std::filesystem;

// Folds "llm.model.layers.12.adapters.mma.adapter_attn.conv_A.weight" into "llm.model.layers.*.adapters.mma".
std::string group_of(const std::string& param) {
  static const std::regex index(R"(\.\d+\.)");
  std::string g = std::regex_replace(param, index, ".*.");
  const auto dot = g.rfind('.');
  g = dot == std::string::npos ? g : g.substr(0, dot);  // drop the parameter's own name
  // stop at the adapter family: "...adapters.mma.conv_A" -> "...adapters.mma"
  if (auto a = g.find("adapters."); a != std::string::npos) {
    const auto end = g.find('.', a + 9);
    const std::string family_path = end == std::string::npos ? g : g.substr(0, end);
    const std::string rest = end == std::string::npos ? "" : g.substr(end + 1);
    // keep named decoder-level parts (adapter_proj, adapter_modality_embedding) distinct
    if (rest.rfind("adapter_", 0) == 0) return family_path + "." + rest.substr(0, rest.find('.'));
    return family_path;
  }
  return g;
}

void count(const torch::nn::Module& m, const std::string& prefix, std::map<std::string, ParamGroup>& groups,
           std::map<std::string, std::set<std::string>>& instances, DryRun& d) {
  for (const auto& p : m.named_parameters(true)) {
    const std::string name = prefix + p.key();
    if (!p.value().requires_grad()) {
      d.frozen += p.value().numel();
      continue;
    }
    const std::string g = group_of(name);
    auto& pg = groups[g];
    pg.module = g;
    pg.params += p.value().numel();
    static const std::regex first_index(R"(\.(\d+)\.)");
    std::smatch mt;
    instances[g].insert(std::regex_search(name, mt, first_index) ? mt[1].str() : "");
    d.trainable += p.value().numel();
  }
}

}  // namespace

DryRun dry_run(const config::RunConfig& cfg) {
  DryRun d;
  d.llm = runtime::llm_shape(cfg.model).describe();
  if (auto vc = runtime::vision_shape(cfg.vision))
    d.vision = cat("ViT L=", vc->num_layers, " W=", vc->hidden_size, " ", vc->image_size, "px/", vc->patch_size);
  runtime::check_training_support(cfg);  // --dry-run refuses what the run would refuse
  const runtime::BuiltModel built = runtime::build_model(cfg, runtime::Weights::kMeta);
  std::map<std::string, ParamGroup> groups;
  std::map<std::string, std::set<std::string>> instances;
  count(*built.model, "", groups, instances, d);
  d.frozen = built.frozen_parameters;  // quantized weights are buffers, which count() does not see
  for (auto& [g, pg] : groups) {
    pg.instances = static_cast<int64_t>(instances[g].size());
    d.groups.push_back(pg);
  }
  return d;
}

std::string format_dry_run(const DryRun& d) {
  std::ostringstream os;
  auto num = [](int64_t v) {
    std::string s = std::to_string(v);
    for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(i, ",");
    return s;
  };
  os << "LLM: " << d.llm << "\n";
  if (!d.vision.empty()) os << "vision: " << d.vision << "\n";
  os << std::left << std::setw(58) << "module (trainable)" << std::right << std::setw(8) << "count" << std::setw(16)
     << "parameters" << "\n";
  for (const auto& g : d.groups) {
    os << std::left << std::setw(58) << g.module << std::right << std::setw(8) << g.instances << std::setw(16)
       << num(g.params) << "\n";
  }
  os << std::left << std::setw(66) << "trainable" << std::right << std::setw(16) << num(d.trainable) << "\n";
  os << std::left << std::setw(66) << "frozen" << std::right << std::setw(16) << num(d.frozen) << "\n";
  return os.str();
}

}  // namespace mmtune::train
