// Sizes from configs and files checked against this machine before anything is allocated: a
// config whose adapters or frozen model cannot fit (adapter.mma.dim=100000000) is a ConfigError
// naming the key, not an abort in the allocator or the OOM killer.
#pragma once

#include <cstdint>

#include <mmtune/config/config.h>
#include <mmtune/runtime/build_model.h>

namespace mmtune::runtime {

/// What the model built from `cfg` holds once allocated: the frozen weights (parameters and
/// quantized codes in their dtypes) and the trainable adapters' fp32 master weights, counted on a
/// meta-device build (no memory).
struct ModelBytes {
  int64_t frozen = 0, trainable = 0;
};
ModelBytes model_bytes(const BuiltModel& meta);

/// Throws ConfigError when `bytes` exceed `available` (bytes; < 0 = unknown: no check), naming the
/// key to change: the selected adapter family's largest size option when the adapters are the
/// larger part, else model.dtype / model.quantize (with model.path's config.json sizes).
void check_fits_in_memory(const config::RunConfig& cfg, const ModelBytes& bytes, int64_t available);

}  // namespace mmtune::runtime
