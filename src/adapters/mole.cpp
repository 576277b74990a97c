#include <mmtune/adapters/lora.h>
#include <mmtune/adapters/mole.h>
#include <mmtune/core/strings.h>

namespace mmtune::adapters {
namespace {
const std::vector<std::string> kGateModes{"st_top1", "none", "switch", "dense_soft"};
const std::vector<std::string> kBalance{"per_sample_cross_layer", "switch_per_layer"};
}  // namespace

void MoleConfig::visit(config::Visitor& v) {
  v("experts", experts, "LoRA experts per FFN projection (K)");
  v("rank", rank, "rank of every expert and of the attention LoRA");
  v("alpha", alpha, "LoRA alpha (scale alpha / r)");
  v("dropout", dropout, "dropout on LoRA inputs (training only)");
  v("attn_targets", attn_targets, "attention projections with plain LoRA (q k v o)");
  v.choice("gate_mode", gate_mode, kGateModes, "how the top-1 expert's delta is weighted");
  v.choice("balance_loss", balance_loss, kBalance, "load-balancing loss form");
  v("balance_weight", balance_weight, "weight w_bal of the balancing loss");
}

void MoleConfig::validate(config::Problems& p, const std::string& path) const {
  if (experts < 1) p.add(path + ".experts", cat("must be >= 1, got ", experts));
  validate_lora_options(p, path, rank, alpha, dropout, attn_targets, "attn_targets");
  for (const auto& t : attn_targets) {
    if (t == "gate" || t == "up" || t == "down")
      p.add(path + ".attn_targets", "'" + t + "' is an FFN projection: MoLE's experts own gate/up/down",
            "list only q, k, v, o here");
  }
  if (balance_weight < 0) p.add(path + ".balance_weight", "must be >= 0");
}

FamilyEntry mole_family() {
  return {"mole", "sparse top-1 mixture of LoRA experts on the FFN + LoRA on attention",
          [] { return std::make_unique<MoleConfig>(); }, {}, {}, {}};
}

}  // namespace mmtune::adapters
