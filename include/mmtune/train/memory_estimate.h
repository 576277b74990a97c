// `mmtune train --dry-run`'s memory table: the peak memory a training run of a config would take,
// for each frozen-weight dtype and quantization, from the model's shapes alone (a meta-device build).
//
// What is counted (bytes on the compute device; on CPU that is the peak resident set):
//   baseline     what this process already holds (LibTorch loaded, the config read), measured
//   weights      every frozen tensor in the row's dtype; a quantized Linear as its codes and scales
//                (training holds both the stored codes and the kernel's layout: int4 twice)
//   trainable    the adapters' fp32 master weights, their gradients and AdamW's two moments: 16 B each
//   activations  what autograd keeps for the backward pass of one micro-batch at full length
//                (train.micro_batch_size x data.max_length), counted per tensor that LlamaBlock,
//                ClipBlock and the adapters' hook sites save (docs/MEMORY.md lists them)
//   transient    the backward's peak on top of that: the larger of the head's (the supervised rows'
//                fp32 log-softmax, its gradient and the logits' gradient: 3 x N x V x 4 B) and
//                the last block's (the MLP's gradients; with activation checkpointing also the
//                recomputed block's saved tensors)
// Full-length batches with every position supervised are the worst case; dynamic padding and
// prompt tokens without a label make a real run's peak smaller.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mmtune/config/config.h>

namespace mmtune::train {

struct MemoryEstimate {
  std::string dtype;        // fp32 | bf16 | fp16 | fp64: the frozen weights and the activations
  std::string quantize;     // none | int8 | int4
  bool chosen = false;      // the config's own choice
  std::string unavailable;  // why this choice cannot run with the config (then the sizes are 0)
  int64_t baseline = 0, weights = 0, trainable = 0, activations = 0, transient = 0;
  int64_t total() const { return baseline + weights + trainable + activations + transient; }
};

/// The config's own dtype / quantize first, then the other combinations of {fp32, bf16} x
/// {none, int8, int4}. `baseline_bytes` is added to every row (the caller's measured RSS).
std::vector<MemoryEstimate> estimate_memory(const config::RunConfig& cfg, int64_t baseline_bytes);

/// The table as text: one row per choice, the config's own marked with '*'.
std::string format_memory_estimates(const std::vector<MemoryEstimate>& rows, const config::RunConfig& cfg);

}  // namespace mmtune::train
