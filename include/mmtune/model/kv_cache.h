// Key/value cache for incremental decoding: preallocated to a capacity, written in place.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace mmtune::model {

/// One attention layer's cache: k, v [B, Hkv, capacity, head_dim].
struct LayerCache {
  torch::Tensor k, v;
};

struct KVCache {
  std::vector<LayerCache> layers;            // one per frozen layer
  std::map<std::string, LayerCache> extra;   // blocks an adapter inserts (IAA), by cache key
  torch::Tensor key_valid;                   // [B, capacity] bool: cached position holds a real token
  int64_t length = 0;                        // positions filled so far
  int64_t capacity = 0;
  int64_t batch() const { return key_valid.defined() ? key_valid.size(0) : 0; }
};

}  // namespace mmtune::model
