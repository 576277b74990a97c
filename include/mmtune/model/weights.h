// Loading frozen weights by their Hugging Face names into modules built with the right shapes.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <torch/torch.h>

#include <mmtune/io/safetensors.h>
#include <mmtune/model/llama.h>

namespace mmtune::model {

/// Copies every parameter and buffer of `module` from `checkpoint` (same names), casting to the
/// parameter's dtype and device. All problems — missing tensors, unexpected tensors (except names
/// in `ignore`), wrong shapes — are reported together in one mmtune::CheckpointError.
/// `checkpoint_name` maps a module name to the checkpoint's name for it (default: identity).
void load_weights(torch::nn::Module& module, const io::SafetensorsCheckpoint& checkpoint,
                  const std::vector<std::string>& ignore = {},
                  const std::function<std::string(const std::string&)>& checkpoint_name = {});

/// Builds a LlamaDecoder from a Hugging Face directory (config.json + safetensors) directly in
/// `options` (device, dtype) and loads its weights, quantizing every Linear to `quantize` as it
/// goes (a pre-quantized directory loads as written; asking it for other bits or group is a
/// UsageError). Throws mmtune::CheckpointError.
LlamaDecoder load_llama(const std::string& dir, const torch::TensorOptions& options, const Quantization& quantize = {});

/// "cpu" | "cuda" | "cuda:N" and "fp32" | "bf16" | "fp16" -> options; throws mmtune::UsageError
/// when CUDA is asked for and this build or machine has none.
torch::TensorOptions model_options(const std::string& device, const std::string& dtype);

}  // namespace mmtune::model
