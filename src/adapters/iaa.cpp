#include <mmtune/adapters/iaa.h>
#include <mmtune/core/strings.h>

#include <algorithm>

namespace mmtune::adapters {
namespace {
const std::vector<std::string> kGates{"none", "parallel", "gated"};
const std::vector<std::string> kGateTypes{"scalar", "linear"};
const std::vector<std::string> kParts{"projector", "layers", "embedding", "norm", "head"};
}  // namespace

void IaaConfig::visit(config::Visitor& v) {
  v("insert_layers", insert_layers, "frozen layers followed by an inserted layer (IAA-14 default)");
  v("workflow", workflow, "workflow name this adapter serves");
  v.choice("gate", gate, kGates, "none = inserted output replaces the stream; parallel / gated = zero-init gate");
  v.choice("gate_type", gate_type, kGateTypes, "gate shape when gate != none");
  v("trainable", trainable, "parts trained: projector, layers, embedding, norm, head (stage 1: [projector])");
  v("image_token", image_token, "prompt placeholder replaced by the image's patch embeddings");
}

void IaaConfig::validate(config::Problems& p, const std::string& path) const {
  if (insert_layers.empty()) p.add(path + ".insert_layers", "must name at least one layer");
  std::vector<int64_t> sorted = insert_layers;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    p.add(path + ".insert_layers", "lists a layer twice");
  if (!sorted.empty() && sorted.front() < 0) p.add(path + ".insert_layers", "layer indices must be >= 0");
  if (workflow.empty() || workflow == "text")
    p.add(path + ".workflow", "must be a name other than 'text' (the untouched LLM)");
  for (const auto& t : trainable) {
    if (std::find(kParts.begin(), kParts.end(), t) == kParts.end()) {
      auto m = closest_match(t, kParts);
      p.add(path + ".trainable", "unknown part '" + t + "'; parts: " + join(kParts, ", "),
            m ? "did you mean " + *m + "?" : std::string());
    }
  }
  if (trainable.empty()) p.add(path + ".trainable", "must name at least one part");
}

FamilyEntry iaa_family() {
  return {"iaa", "inner-adaptor layers interleaved into a frozen LLM, one workflow per adapter",
          [] { return std::make_unique<IaaConfig>(); }, {}, {}, {}};
}

}  // namespace mmtune::adapters
