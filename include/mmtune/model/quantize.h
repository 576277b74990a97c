// Weight-only quantization of the frozen Linear layers (docs/QUANTIZATION.md has the formats).
//   int8: per output channel, symmetric.  q = round(w / s).clamp(-128, 127), s = max|w_row| / 127 (fp32)
//         w ~ q * s
//   int4: per group of `group` inputs, asymmetric with a float zero point (torchao's / gpt-fast's
//         scheme, the one LibTorch's int4 kernels implement):
//         s = bf16((max - min) / 15), z = bf16(min + 8 s), q = round((w - (z - 8 s)) / s).clamp(0, 15)
//         w ~ (q - 8) s + z
// The matrix products run in LibTorch's own kernels (at::_weight_int8pack_mm, the int4pack kernels
// on CPU and CUDA); the gradient with respect to the input (QLoRA-style training through a frozen
// quantized base) is grad_y @ dequantize(W). The frozen weights never get a gradient.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include <mmtune/model/llama_config.h>

namespace mmtune::model {

/// The stored form of one quantized weight W [N, K] (the tensors a pre-quantized checkpoint holds).
struct QuantizedWeight {
  std::string mode = "none";  // int8 | int4
  int64_t group = 0;        // int4
  torch::Tensor qweight;    // int8: int8 [N, K];  int4: uint8 [N, K / 2], even k in the high nibble
  torch::Tensor scales;     // int8: fp32 [N];     int4: bf16 [K / group, N, 2] (scale, zero)
  /// N x K, the entries of the weight this stands for: from the scales for int4, whose codes
  /// pack_for_inference may have freed.
  int64_t entries() const;
};

/// The mode one weight of N outputs and K inputs gets under `q` ("int4", or "int8" by the int4
/// fallback); throws mmtune::UsageError naming `name` and the fix when it cannot be quantized
/// (`key`: the config key that asked for it, model.quantize or vision.quantize).
std::string mode_for(const Quantization& q, const std::string& name, int64_t n, int64_t k,
                     const std::string& key = "model.quantize");

/// Quantizes w [N, K] (any float dtype; computed in fp32 on w's device) to `mode`.
QuantizedWeight quantize_weight(const torch::Tensor& w, const std::string& mode, int64_t group);

/// W [N, K] in `dtype` from its quantized form.
torch::Tensor dequantize_weight(const QuantizedWeight& q, torch::Dtype dtype);

/// The kernels' own layout of one weight, built on first use on the input's device.
struct PackedWeight {
  torch::Tensor weight;        // int8: the int8 matrix; int4: the kernel's packed tensor
  torch::Tensor scales;        // int8: [N] in the activation dtype; int4: [K / g, N_pad, 2]
  torch::Dtype dtype = torch::kFloat32;  // activation dtype the kernel takes
  int64_t n = 0, n_padded = 0;           // int4: N rounded up to the kernels' multiple of 16
  bool dequantized = false;    // no kernel for this device / dtype: `weight` is W itself
};

/// Throws mmtune::UsageError naming `key` (model.quantize / vision.quantize) and the fix when int4
/// weights cannot run on `device`: LibTorch's CUDA int4 kernel (tinygemm) and its packing are built
/// for compute capability 8.0 (Ampere) and later only; devices other than CPU and CUDA have none.
void check_int4_device(const torch::Device& device, const std::string& key);
/// The CUDA part of check_int4_device for a device of compute capability major.minor (testable
/// without such a device).
void check_int4_cuda_capability(const torch::Device& device, int major, int minor, const std::string& key);

/// Builds the kernel layout of `q` for inputs of `dtype` on `device`.
PackedWeight pack_weight(const QuantizedWeight& q, torch::Dtype dtype, const torch::Device& device);

/// y [.., N] = x [.., K] W^T through the packed kernel; differentiable with respect to x.
torch::Tensor quantized_linear(const torch::Tensor& x, const QuantizedWeight& q, const PackedWeight& packed);

/// Bytes one stored weight of N x K takes under `mode` (qweight + scales).
int64_t quantized_bytes(const std::string& mode, int64_t n, int64_t k, int64_t group);

/// ProjectionImpl::pack_for_inference on every quantized projection under `root` (generate, eval,
/// chat, bench generate: processes that never train). Returns the bytes freed.
int64_t pack_for_inference(torch::nn::Module& root, torch::Dtype activation_dtype);

/// What write_quantized_model did.
struct QuantizedModelStats {
  int64_t quantized = 0, fallback = 0, copied = 0;  // tensors: quantized as asked, by the int8 fallback, as they were
  int64_t bytes_in = 0, bytes_out = 0;              // tensor data
  int64_t shards = 0;
};

/// `mmtune convert quantize`: the Hugging Face LLaMA directory `in` -> a pre-quantized directory
/// `out` (docs/QUANTIZATION.md): every Linear of the decoder as `<name>.qweight` + `<name>.scales`,
/// the other tensors as they were, config.json with a "quantization" block, the tokenizer files.
/// One tensor at a time from the mmap'd input into shards of ~`shard_bytes`: the full-precision
/// model is never in memory. Written under a temporary name and renamed into place; `out` must not
/// exist. Throws mmtune::UsageError / CheckpointError / Error.
QuantizedModelStats write_quantized_model(const std::string& in, const std::string& out, const Quantization& q,
                                          int64_t shard_bytes = int64_t{2} << 30);

}  // namespace mmtune::model
