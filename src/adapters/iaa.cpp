// IAA's options, one workflow's decoder adapter (copied layers, embedding, norm, head, projector)
// and the registry entry. The maths is in include/mmtune/adapters/iaa.h.
#include <mmtune/adapters/iaa.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

#include <algorithm>
#include <set>

namespace mmtune::adapters {
namespace {
const std::vector<std::string> kGates{"none", "parallel", "gated"};
const std::vector<std::string> kGateTypes{"scalar", "linear"};
const std::vector<std::string> kParts{"projector", "layers", "embedding", "norm", "head"};

bool is_identifier(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}
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
  if (workflow == "text") {
    p.add(path + ".workflow", "must be a name other than 'text' (the untouched LLM)");
  } else if (!is_identifier(workflow)) {
    // it names a module (llm.adapters.iaa_<workflow>) and KV-cache slots
    p.add(path + ".workflow", "must be a lowercase identifier (a-z, 0-9, _), got '" + workflow + "'",
          "e.g. mm or g");
  }
  for (const auto& t : trainable) {
    if (std::find(kParts.begin(), kParts.end(), t) == kParts.end()) {
      auto m = closest_match(t, kParts);
      p.add(path + ".trainable", "unknown part '" + t + "'; parts: " + join(kParts, ", "),
            m ? "did you mean " + *m + "?" : std::string());
    }
  }
  if (trainable.empty()) p.add(path + ".trainable", "must name at least one part");
}

std::string iaa_module_name(const std::string& workflow) { return "iaa_" + workflow; }

namespace {

// Copies `src` into `dst`'s own storage (allocated by the module's constructor): the workflow never
// aliases a frozen tensor, so training it cannot touch the base.
void copy_into(torch::Tensor& dst, const torch::Tensor& src, const std::string& name) {
  TORCH_CHECK(dst.sizes() == src.sizes(), "IAA copy of ", name, ": shape ", dst.sizes(), " vs ", src.sizes());
  torch::NoGradGuard no_grad;
  dst.copy_(src);
}

// A frozen decoder parameter by its module-tree name ("model.norm.weight"); undefined if absent.
torch::Tensor base_parameter(model::LlamaDecoderImpl& base, const std::string& name) {
  const auto params = base.named_parameters(/*recurse=*/true);
  const torch::Tensor* p = params.find(name);
  return p ? *p : torch::Tensor();
}

// A fresh LlamaBlock (uninitialised storage of its own) filled with frozen layer i's tensors, by
// name; the frozen block's own adapters (other families) are not copied.
// A quantized base gives its dequantized weights (the inserted layers are trained in full precision).
model::LlamaBlock copy_of_layer(model::LlamaDecoderImpl& base, int64_t i) {
  model::LlamaConfig c = base.config();
  c.quantization = {};
  model::LlamaBlock block(c, base.options(), i);
  const auto src = base.block(i).named_parameters(/*recurse=*/true);
  for (auto& p : block->named_parameters(/*recurse=*/true)) {
    if (const torch::Tensor* s = src.find(p.key())) {
      copy_into(p.value(), *s, cat("layer ", i, ".", p.key()));
      continue;
    }
    const std::string& key = p.key();
    auto* proj = key.size() > 7 ? model::find_projection(base.block(i), key.substr(0, key.size() - 7)) : nullptr;
    TORCH_CHECK(proj && proj->quantized(), "frozen layer ", i, " has no parameter ", key);
    copy_into(p.value(), model::dequantize_weight(proj->quantized_weight(), p.value().scalar_type()),
              cat("layer ", i, ".", key));
  }
  return block;
}

}  // namespace

IaaDecoderAdapterImpl::IaaDecoderAdapterImpl(const IaaConfig& c, model::LlamaDecoderImpl& base,
                                             const VisualPath& visual)
    : workflow_(c.workflow), insert_layers_(c.insert_layers) {
  const model::LlamaConfig& lc = base.config();
  const torch::TensorOptions o = base.options();  // the frozen stack's dtype and device
  std::sort(insert_layers_.begin(), insert_layers_.end());
  for (int64_t i : insert_layers_) {
    if (i < 0 || i >= lc.num_layers) {
      throw Error(cat("adapter.iaa.insert_layers names layer ", i, ", but the model has ", lc.num_layers, " layers"),
                  cat("use indices 0..", lc.num_layers - 1, " (IAA-14's default set is for 32-layer models)"));
    }
  }
  const std::set<std::string> parts(c.trainable.begin(), c.trainable.end());
  auto trains = [&](const char* part) { return parts.count(part) > 0; };
  const std::string key = "iaa." + workflow_;
  // first, so that a bad vision.projector fails before gigabytes of layers are copied
  if (visual.width > 0) {
    projector_ = register_module("mm_projector", VisualProjector(visual.projector, visual.width, lc.hidden_size, o.device()));
    for (auto& p : projector_->parameters()) p.requires_grad_(trains("projector"));
  }

  // inserted layer k: a copy of frozen layer S[k], with its gate
  slot_of_layer_.assign(lc.num_layers, -1);
  auto list = register_module("layers", torch::nn::ModuleList());
  const int64_t n = static_cast<int64_t>(insert_layers_.size());
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = insert_layers_[k];
    model::LlamaBlock block = copy_of_layer(base, i);
    if (c.gate != "none") block->attach("gate", IaaGate(c.gate, c.gate_type, lc.hidden_size, key, k, n, o).ptr());
    for (auto& p : block->parameters()) p.requires_grad_(trains("layers"));
    list->push_back(block);
    layers_.push_back(block);
    slot_of_layer_[i] = k;
    cache_keys_.push_back(cat(key, ".", k));
  }

  // embedding [V, D], final norm [D], head [V, D] (a tied base: the head starts as the embedding)
  const torch::Tensor base_embed = base_parameter(base, "model.embed_tokens.weight");
  const torch::Tensor base_norm = base_parameter(base, "model.norm.weight");
  torch::Tensor base_head = base_parameter(base, "lm_head.weight");
  TORCH_CHECK(base_embed.defined() && base_norm.defined(), "the frozen decoder lacks model.embed_tokens / model.norm");
  if (auto* head = model::find_projection(base, "lm_head"); head && head->quantized())
    base_head = model::dequantize_weight(head->quantized_weight(), o.dtype().toScalarType());  // a quantized base
  if (!base_head.defined()) base_head = base_embed;  // tie_word_embeddings
  embed_tokens_ = register_module("embed_tokens", model::Embedding(lc.vocab_size, lc.hidden_size, o));
  copy_into(embed_tokens_->weight, base_embed, "embed_tokens");
  norm_ = register_module("norm", model::RMSNorm(lc.hidden_size, lc.rms_norm_eps, o));
  copy_into(norm_->weight, base_norm, "norm");
  lm_head_ = register_module("lm_head", model::Projection(lc.hidden_size, lc.vocab_size, false, o));
  copy_into(lm_head_->weight, base_head, "lm_head");
  embed_tokens_->weight.requires_grad_(trains("embedding"));
  norm_->weight.requires_grad_(trains("norm"));
  lm_head_->weight.requires_grad_(trains("head"));

  for (auto& p : parameters()) {
    if (p.requires_grad()) trainable_.push_back(p);
  }
}

torch::Tensor IaaDecoderAdapterImpl::project_visual(const torch::Tensor& features, ForwardContext& ctx) {
  if (projector_.is_empty()) {
    throw Error("IAA workflow '" + workflow_ + "' has no projector: the model was built without a vision tower",
                "set vision.path (or vision.arch for a dry run)");
  }
  return projector_->forward(features);  // [B, n, Cv] -> [B, n, D] fp32
}

std::vector<ScheduledBlock> IaaDecoderAdapterImpl::after_layer(int64_t layer, ForwardContext& ctx) {
  if (layer < 0 || layer >= static_cast<int64_t>(slot_of_layer_.size()) || slot_of_layer_[layer] < 0) return {};
  const int64_t k = slot_of_layer_[layer];
  return {ScheduledBlock{layers_[k].ptr(), cache_keys_[k]}};
}

FamilyEntry iaa_family() {
  FamilyEntry e{"iaa", "inner-adaptor layers interleaved into a frozen LLM, one workflow per adapter",
                [] { return std::make_unique<IaaConfig>(); }, {}, {}, {}};
  e.make_decoder_for = [](const config::FamilyConfig& o, model::LlamaDecoderImpl& llm,
                          const VisualPath& visual) -> std::shared_ptr<DecoderAdapterImpl> {
    return std::make_shared<IaaDecoderAdapterImpl>(dynamic_cast<const IaaConfig&>(o), llm, visual);
  };
  e.decoder_name = [](const config::FamilyConfig& o) {
    return iaa_module_name(dynamic_cast<const IaaConfig&>(o).workflow);
  };
  e.prompt_layout = [](const config::FamilyConfig& o) {
    return PromptLayout{"", "", dynamic_cast<const IaaConfig&>(o).image_token};
  };
  e.serves_workflows = true;  // one frozen LLM, one inserted-layer set per workflow
  return e;
}

}  // namespace mmtune::adapters
