#include <mmtune/runtime/memory_check.h>

#include <mmtune/config/schema.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

#include <iomanip>
#include <sstream>

namespace mmtune::runtime {
namespace {

std::string gib(int64_t bytes) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (int64_t{1} << 30) << " GiB";
  return s.str();
}

// The largest integer option of a family's config section: the size to name in the error.
class LargestInt final : public config::Visitor {
 public:
  void field(std::string_view key, config::FieldRef ref, const config::FieldInfo&) override {
    if (auto* v = std::get_if<int64_t*>(&ref); v && **v > value) {
      value = **v;
      name = key;
    }
    if (auto* v = std::get_if<std::optional<int64_t>*>(&ref); v && (*v)->has_value() && ***v > value) {
      value = ***v;
      name = key;
    }
  }
  void section(std::string_view, config::Section& s, std::string_view) override { s.visit(*this); }
  void families(config::AdapterConfig&) override {}
  std::string name;
  int64_t value = 0;
};

}  // namespace

ModelBytes model_bytes(const BuiltModel& meta) {
  ModelBytes b;
  for (const auto& p : meta.model->named_parameters(true)) {
    const auto& t = p.value();
    if (t.requires_grad()) b.trainable += t.numel() * 4;  // fp32 master weights
    else b.frozen += t.numel() * static_cast<int64_t>(t.element_size());
  }
  for (const auto& buf : meta.model->named_buffers(true))  // quantized codes and scales, rotary tables
    b.frozen += buf.value().numel() * static_cast<int64_t>(buf.value().element_size());
  return b;
}

void check_fits_in_memory(const config::RunConfig& cfg, const ModelBytes& bytes, int64_t available) {
  if (available < 0 || bytes.frozen + bytes.trainable <= available) return;
  const std::string need = cat("the model as configured needs ", gib(bytes.frozen + bytes.trainable), " (frozen ",
                               gib(bytes.frozen), ", adapters ", gib(bytes.trainable), "), more than the ",
                               gib(available), " of memory available");
  const auto family = cfg.adapter.options.find(cfg.adapter.family);
  if (bytes.trainable >= bytes.frozen && family != cfg.adapter.options.end()) {
    LargestInt largest;
    family->second->visit(largest);
    const std::string key = "adapter." + cfg.adapter.family + "." + largest.name;
    throw ConfigError({{"", key, cat("is ", largest.value, ": ", need),
                        cat("lower ", key, " (`mmtune train --dry-run` counts the parameters without allocating)")}});
  }
  throw ConfigError({{"", "model.dtype",
                      cat("is ", cfg.dtype, (cfg.model.quantize == "none" ? "" : " with model.quantize " + cfg.model.quantize),
                          " for ", cfg.model.path.empty() ? cfg.model.arch : cfg.model.path + "/config.json", "'s sizes: ", need),
                      "set model.dtype: bf16 or model.quantize: int8 / int4 (vision.quantize for the ViT; `mmtune train --dry-run` lists the memory "
                      "of each choice), or use a machine with more memory"}});
}

}  // namespace mmtune::runtime
