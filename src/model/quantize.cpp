#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/model/quantize.h>

#include <ATen/ops/_convert_weight_to_int4pack.h>
#include <ATen/ops/_convert_weight_to_int4pack_for_cpu.h>
#include <ATen/ops/_weight_int4pack_mm.h>
#include <ATen/ops/_weight_int4pack_mm_for_cpu.h>
#include <ATen/ops/_weight_int8pack_mm.h>

#ifdef MMTUNE_WITH_CUDA_TORCH  // a CUDA build of torch (third_party/cmake/MmtuneTorch.cmake)
#include <ATen/cuda/CUDAContext.h>
#endif

#include <algorithm>

namespace mmtune::model {

namespace {

constexpr int64_t kInt4NMultiple = 16;  // both int4 kernels take N in multiples of 16 (we pad)
constexpr int64_t kTinygemmMaxRows = 16;  // CUDA int4: more input rows go through cuBLAS (below)
constexpr int64_t kCpuFp32KernelMaxRows = 1;  // CPU, fp32 activations: more rows go through MKL (below)
constexpr int64_t kPackRows = 1024;       // CPU int4 packing, rows at a time (a multiple of 16 and of the kernels' blocks)

bool valid_group(int64_t g) { return g == 32 || g == 64 || g == 128 || g == 256; }

// CUDA's int4 packing tiles K by innerKTiles x 16 (2, 4 or 8 tiles).
int64_t inner_k_tiles(int64_t k) { return k % 128 == 0 ? 8 : k % 64 == 0 ? 4 : 2; }

torch::Tensor int4_values(const torch::Tensor& qweight) {
  // uint8 [N, K / 2] -> uint8 [N, K], values 0..15 (even k from the high nibble)
  const torch::Tensor hi = torch::bitwise_right_shift(qweight, 4);
  const torch::Tensor lo = torch::bitwise_and(qweight, 15);
  return torch::stack({hi, lo}, -1).view({qweight.size(0), qweight.size(1) * 2});
}

}  // namespace

std::string mode_for(const Quantization& q, const std::string& name, int64_t n, int64_t k, const std::string& key) {
  if (q.mode == "int8") return "int8";
  if (q.mode != "int4") throw UsageError("unknown quantization '" + q.mode + "' for " + name, "use none, int8 or int4");
  if (!valid_group(q.group))
    throw UsageError(cat("int4 group size ", q.group, " is not one the kernels take"), "set model.quant_group to 32, 64, 128 or 256");
  if (k % q.group == 0) return "int4";
  if (q.fallback == "int8") return "int8";
  std::string fix;
  for (int64_t g : {256, 128, 64, 32})
    if (k % g == 0) {
      fix = cat("set model.quant_group=", g, key == "model.quantize" ? ", " : " (shared with the LLM), ");
      break;
    }
  throw UsageError(cat(name, " has ", k, " inputs, which int4 group size ", q.group, " does not divide (", n, " x ", k, ")"),
                   fix + "set model.quant_fallback=int8 to keep such weights in int8, or use " + key + "=int8");
}

int64_t QuantizedWeight::entries() const {
  return mode == "int4" ? scales.size(0) * group * scales.size(1) : qweight.numel();  // [K/G, N, 2] : [N, K]
}

QuantizedWeight quantize_weight(const torch::Tensor& w, const std::string& mode, int64_t group) {
  torch::NoGradGuard no_grad;
  if (mode != "int8" && mode != "int4") throw std::invalid_argument("quantize_weight: unknown mode " + mode);
  // always on the CPU: CUDA divides by a scalar through its reciprocal, which would round some codes
  // differently there; the codes must not depend on the device a model is loaded onto
  const torch::Tensor src = w.detach().to(torch::kCPU);  // [N, K], no copy for a CPU weight
  const int64_t n = src.size(0), k = src.size(1);
  if (mode == "int4" && (!valid_group(group) || k % group != 0 || k % 2 != 0))
    throw std::invalid_argument(cat("quantize_weight: group ", group, " does not fit ", k, " inputs"));
  // A few rows at a time (~4M values, 16 MB in fp32): every row is quantized on its own, so the
  // codes are the same, and the fp32 temporaries stay small (a whole 32000 x 4096 head in fp32
  // with its intermediates took 2.6 GB at once)
  const int64_t rows = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(k, 1));
  QuantizedWeight q;
  q.mode = mode;
  if (mode == "int8") {
    torch::Tensor codes = torch::empty({n, k}, torch::kInt8);  // [N, K]
    torch::Tensor scales = torch::empty({n}, torch::kFloat32);  // [N]
    for (int64_t r = 0; r < n; r += rows) {
      const int64_t m = std::min(rows, n - r);
      const torch::Tensor wf = src.narrow(0, r, m).to(torch::kFloat32);  // [m, K]
      torch::Tensor s = wf.abs().amax(1) / 127.0;                          // [m]
      s = torch::where(s > 0, s, torch::ones_like(s));  // an all-zero row: q = 0 with any scale
      codes.narrow(0, r, m).copy_((wf / s.unsqueeze(1)).round_().clamp_(-128, 127));
      scales.narrow(0, r, m).copy_(s);
    }
    q.qweight = codes.to(w.device());
    q.scales = scales.to(w.device());
    return q;
  }
  q.group = group;
  const int64_t ng = k / group;
  torch::Tensor codes = torch::empty({n, k / 2}, torch::kUInt8);            // [N, K/2]
  torch::Tensor sz = torch::empty({n, ng, 2}, torch::kBFloat16);            // [N, K/g, 2] (scale, zero)
  for (int64_t r = 0; r < n; r += rows) {
    const int64_t m = std::min(rows, n - r);
    const torch::Tensor g = src.narrow(0, r, m).to(torch::kFloat32).view({m, ng, group});  // [m, K/g, g]
    const torch::Tensor mx = g.amax(-1), mn = g.amin(-1);                                  // [m, K/g]
    const torch::Tensor s = ((mx - mn).clamp_min(1e-6) / 15.0).to(torch::kBFloat16).to(torch::kFloat32);
    const torch::Tensor z = (mn + s * 8.0).to(torch::kBFloat16).to(torch::kFloat32);
    const torch::Tensor lowest = (z - s * 8.0).unsqueeze(-1);  // [m, K/g, 1]
    const torch::Tensor v = (g - lowest).div_(s.unsqueeze(-1)).round_().clamp_(0, 15).to(torch::kUInt8).view({m, k});
    // two codes per byte, the even input in the high nibble
    codes.narrow(0, r, m).copy_(torch::bitwise_or(torch::bitwise_left_shift(v.slice(1, 0, k, 2), 4), v.slice(1, 1, k, 2)));
    sz.narrow(0, r, m).copy_(torch::stack({s, z}, -1));
  }
  q.qweight = codes.to(w.device());
  q.scales = sz.transpose(0, 1).contiguous().to(w.device());  // [K/g, N, 2] bf16
  return q;
}

torch::Tensor dequantize_weight(const QuantizedWeight& q, torch::Dtype dtype) {
  // one rounding to `dtype` of the fp32 result; each op computes in fp32 for bf16 / fp16 outputs
  torch::NoGradGuard no_grad;
  const int64_t n = q.qweight.size(0);
  if (q.mode == "int8") {
    torch::Tensor w = torch::empty({n, q.qweight.size(1)}, q.qweight.options().dtype(dtype));  // [N, K]
    return at::mul_out(w, q.qweight, q.scales.to(torch::kFloat32).unsqueeze(1));
  }
  const int64_t k = q.qweight.size(1) * 2;
  const torch::Tensor v = int4_values(q.qweight).to(dtype).sub_(8).view({n, k / q.group, q.group});  // exact
  const torch::Tensor sz = q.scales.to(dtype).transpose(0, 1);  // [N, K/g, 2]; bf16 values: exact in any float
  // (q - 8) s is exact in fp32 (4 x 8 significant bits); + z rounds once
  torch::Tensor w = torch::empty({n, k / q.group, q.group}, v.options());
  at::addcmul_out(w, sz.select(-1, 1).unsqueeze(-1), v, sz.select(-1, 0).unsqueeze(-1));
  return w.view({n, k});
}

void check_int4_cuda_capability(const torch::Device& device, int major, int minor, const std::string& key) {
  if (major >= 8) return;
  throw UsageError(cat("int4 weights (", key, "=int4) on ", device, ", a GPU of compute capability ", major, ".", minor,
                       ": LibTorch's int4 CUDA kernel runs on compute capability 8.0 (Ampere) and later only"),
                   cat("use ", key, "=int8 on this GPU (or no quantization with dtype bf16 / fp16)"));
}

void check_int4_device(const torch::Device& device, const std::string& key) {
  if (device.is_cpu() || device.is_meta()) return;
  if (!device.is_cuda())
    throw UsageError(cat("int4 weights (", key, "=int4) on ", device, ": LibTorch has no int4 kernel for this device"),
                     cat("use ", key, "=int8, or device cpu / cuda"));
#ifdef MMTUNE_WITH_CUDA_TORCH
  if (!torch::cuda::is_available()) return;  // the device itself is refused elsewhere, with its own message
  const cudaDeviceProp* prop =
      at::cuda::getDeviceProperties(device.has_index() ? device.index() : at::cuda::current_device());
  check_int4_cuda_capability(device, prop->major, prop->minor, key);
#endif
}

PackedWeight pack_weight(const QuantizedWeight& q, torch::Dtype dtype, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  PackedWeight p;
  p.n = p.n_padded = q.qweight.size(0);
  p.dtype = dtype;
  if (q.mode == "int8") {
    // LibTorch's int8 kernel (CPU and CUDA) takes the activation dtype's scales: [N]
    p.weight = q.qweight.to(device);
    p.scales = q.scales.to(device, dtype);
    return p;
  }
  const int64_t n = q.qweight.size(0), k = q.qweight.size(1) * 2;
  p.n_padded = (n + kInt4NMultiple - 1) / kInt4NMultiple * kInt4NMultiple;
  torch::Tensor qw = q.qweight.to(device), sz = q.scales.to(device);  // [N, K/2], [K/g, N, 2]
  if (p.n_padded != n) {
    // padding rows: value 8 (= 0) with scale 0 and zero 0, sliced off the output
    qw = torch::cat({qw, torch::full({p.n_padded - n, k / 2}, 0x88, qw.options())}, 0);
    sz = torch::cat({sz, torch::zeros({sz.size(0), p.n_padded - n, 2}, sz.options())}, 1);
  }
  if (device.is_cuda()) {
    // the CUDA kernel (tinygemm) takes bf16 activations and bf16 scales / zeros
    p.dtype = torch::kBFloat16;
    p.weight = at::_convert_weight_to_int4pack(qw.contiguous(), inner_k_tiles(k));
    p.scales = sz.to(torch::kBFloat16).contiguous();
  } else if (device.is_cpu()) {
    // the kernel's API takes the codes as int32 [N, K]: 4 bytes per weight (a 32000 x 4096 head: 524
    // MB at once). Its layout is row-block-major, so 1024 rows at a time (a multiple of every ISA's
    // block) give the same bytes (Quantize.Int4CpuPackInRowChunksIsTheWholePack) for 16 MB each.
    p.weight = torch::empty({p.n_padded, k / 2}, torch::kUInt8);
    for (int64_t r = 0; r < p.n_padded; r += kPackRows) {
      const int64_t m = std::min(kPackRows, p.n_padded - r);
      p.weight.narrow(0, r, m).copy_(at::_convert_weight_to_int4pack_for_cpu(int4_values(qw.narrow(0, r, m)).to(torch::kInt32), 1));
    }
    p.scales = sz.to(dtype).contiguous();
  } else {
    throw UsageError(cat("int4 weights on ", device, ": LibTorch has no int4 kernel for this device"),
                     "use model.quantize=int8, or device cpu / cuda");
  }
  return p;
}

namespace {

torch::Tensor kernel_matmul(const torch::Tensor& x, const QuantizedWeight& q, const PackedWeight& p) {
  const int64_t k = x.size(-1);
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = p.n;
  torch::Tensor x2 = x.reshape({-1, k});  // [M, K]
  if (x2.size(0) == 0) return torch::empty(out_shape, x.options());
  // Where LibTorch's kernel is the slow way, the weight is dequantized into a transient copy in the
  // activation dtype (one layer's at a time) and multiplied by cuBLAS / MKL:
  // - CUDA: the int8 kernel is slower than cuBLAS on the dequantized weight at every batch (H200, 7B:
  //   17 vs 42 decoded tok/s at batch 1, 65 vs 3358 prefill tok/s), and tinygemm's int4 kernel is
  //   built for a few rows (prefill at 2000 vs 18800 tok/s).
  // - CPU with fp32 activations: the int8 and int4 kernels loop over the input rows, their time grows
  //   with every row (one core, a 2048 x 2048 weight: int8 3.4 ms per row, 740 ms at 256 rows, vs 18 ms
  //   for MKL on the dequantized weight; int4 8.6 ms per row, 650 ms at 64 rows vs 23 ms; a training
  //   step of 32 x 256 positions took 312 s instead of 33 s with bf16 activations). (pack_for_inference
  //   keeps the int4 codes for fp32 activations; the check below is for a layer packed for another dtype.)
  const bool dequantize =
      x2.is_cuda() ? q.mode == "int8" || x2.size(0) > kTinygemmMaxRows
                   : x2.is_cpu() && x2.scalar_type() == torch::kFloat32 && x2.size(0) > kCpuFp32KernelMaxRows &&
                         q.qweight.numel() > 0;
  if (dequantize) return torch::nn::functional::linear(x2, dequantize_weight(q, x2.scalar_type())).view(out_shape);
  x2 = x2.to(p.dtype).contiguous();
  torch::Tensor y;  // [M, N_padded]
  if (q.mode == "int8") y = at::_weight_int8pack_mm(x2, p.weight, p.scales);
  else if (x2.is_cuda()) y = at::_weight_int4pack_mm(x2, p.weight, q.group, p.scales);
  else y = at::_weight_int4pack_mm_for_cpu(x2, p.weight, q.group, p.scales);
  if (p.n_padded != p.n) y = y.narrow(1, 0, p.n);
  return y.to(x.scalar_type()).view(out_shape);
}

// The kernels have no derivative: forward through them, backward through the dequantized weight.
class QuantizedLinearFn : public torch::autograd::Function<QuantizedLinearFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const QuantizedWeight* q,
                               const PackedWeight* p) {
    ctx->saved_data["qweight"] = q->qweight;
    ctx->saved_data["scales"] = q->scales;
    ctx->saved_data["mode"] = q->mode;
    ctx->saved_data["group"] = q->group;
    return kernel_matmul(x, *q, *p);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    QuantizedWeight q;
    q.qweight = ctx->saved_data["qweight"].toTensor();
    q.scales = ctx->saved_data["scales"].toTensor();
    q.mode = ctx->saved_data["mode"].toStringRef();
    q.group = ctx->saved_data["group"].toInt();
    const torch::Tensor& gy = grads[0];  // [.., N]
    const torch::Tensor w = dequantize_weight(q, gy.scalar_type());  // [N, K]
    return {gy.matmul(w), torch::Tensor(), torch::Tensor()};        // [.., K]
  }
};

}  // namespace

torch::Tensor quantized_linear(const torch::Tensor& x, const QuantizedWeight& q, const PackedWeight& p) {
  if (torch::GradMode::is_enabled() && x.requires_grad()) return QuantizedLinearFn::apply(x, &q, &p);
  return kernel_matmul(x, q, p);
}

int64_t quantized_bytes(const std::string& mode, int64_t n, int64_t k, int64_t group) {
  if (mode == "int8") return n * k + 4 * n;
  return n * k / 2 + (k / group) * n * 2 * 2;
}

}  // namespace mmtune::model
