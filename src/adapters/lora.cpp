#include <mmtune/adapters/lora.h>
#include <mmtune/core/strings.h>

#include <algorithm>

namespace mmtune::adapters {

const std::vector<std::string>& lora_projection_names() {
  static const std::vector<std::string> kNames{"q", "k", "v", "o", "gate", "up", "down"};
  return kNames;
}

void validate_lora_options(config::Problems& p, const std::string& path, int64_t rank, double alpha,
                           double dropout, const std::vector<std::string>& targets,
                           const std::string& targets_key) {
  if (rank <= 0) p.add(path + ".rank", cat("must be > 0, got ", rank));
  if (alpha <= 0) p.add(path + ".alpha", "must be > 0");
  if (dropout < 0 || dropout >= 1) p.add(path + ".dropout", "must be in [0, 1)");
  const auto& names = lora_projection_names();
  for (const auto& t : targets) {
    if (std::find(names.begin(), names.end(), t) == names.end()) {
      auto m = closest_match(t, names);
      p.add(path + "." + targets_key, "unknown projection '" + t + "'; projections: " + join(names, ", "),
            m ? "did you mean " + *m + "?" : std::string());
    }
  }
}

void LoraConfig::visit(config::Visitor& v) {
  v("rank", rank, "LoRA rank r");
  v("alpha", alpha, "LoRA alpha (scale alpha / r)");
  v("dropout", dropout, "dropout on the LoRA input (training only)");
  v("targets", targets, "projections adapted: q k v o gate up down");
  v("layers", layers, "layer indices adapted; empty = all");
}

void LoraConfig::validate(config::Problems& p, const std::string& path) const {
  validate_lora_options(p, path, rank, alpha, dropout, targets, "targets");
  if (targets.empty()) p.add(path + ".targets", "must name at least one projection");
  for (int64_t l : layers) {
    if (l < 0) p.add(path + ".layers", cat("layer indices must be >= 0, got ", l));
  }
}

FamilyEntry lora_family() {
  return {"lora", "plain LoRA on chosen projections", [] { return std::make_unique<LoraConfig>(); }};
}

}  // namespace mmtune::adapters
