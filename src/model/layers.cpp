#include <mmtune/model/layers.h>

#include <cmath>

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace mmtune::model {

namespace F = torch::nn::functional;

ProjectionImpl::ProjectionImpl(int64_t in, int64_t out, bool has_bias, const torch::TensorOptions& options,
                               const std::string& quant, int64_t group) {
  quant_.mode = quant;
  if (quant == "none") {
    weight = register_parameter("weight", torch::empty({out, in}, options), /*requires_grad=*/false);
  } else if (quant == "int8") {
    quant_.qweight = register_buffer("qweight", torch::empty({out, in}, options.dtype(torch::kInt8)));  // [N, K]
    quant_.scales = register_buffer("scales", torch::empty({out}, options.dtype(torch::kFloat32)));     // [N]
  } else if (quant == "int4") {
    if (group <= 0 || in % group != 0) throw std::invalid_argument("Projection: int4 group must divide the inputs");
    quant_.group = group;
    quant_.qweight = register_buffer("qweight", torch::empty({out, in / 2}, options.dtype(torch::kUInt8)));  // [N, K/2]
    quant_.scales =
        register_buffer("scales", torch::empty({in / group, out, 2}, options.dtype(torch::kBFloat16)));  // [K/g, N, 2]
  } else {
    throw std::invalid_argument("Projection: unknown quantization " + quant);
  }
  if (has_bias) bias = register_parameter("bias", torch::empty({out}, options), false);
}

void ProjectionImpl::set_quantized(const QuantizedWeight& q) {
  TORCH_CHECK(q.mode == quant_.mode && q.group == quant_.group, "set_quantized: mode or group differs");
  torch::NoGradGuard no_grad;
  quant_.qweight.copy_(q.qweight);
  quant_.scales.copy_(q.scales);
}

int64_t ProjectionImpl::pack_for_inference(torch::Dtype dtype) {
  const torch::Device device = quantized() ? quant_.qweight.device() : torch::Device(torch::kCPU);
  // CUDA keeps the codes: beyond a few rows it multiplies the dequantized weight (model/quantize.cpp)
  if (!quantized() || inference_only_ || !device.is_cpu()) return 0;
  std::lock_guard<std::mutex> lock(pack_mutex_);
  packed_ = pack_weight(quant_, dtype, device);
  packed_version_ = -1;
  inference_only_ = true;
  if (quant_.mode != "int4") return 0;  // int8: the kernel reads the stored codes themselves
  // fp32 activations keep the codes: beyond a few rows the weight is dequantized from them for MKL
  // (model/quantize.cpp), far faster than LibTorch's fp32 int4 kernel on every row
  if (dtype == torch::kFloat32) return 0;
  const int64_t freed = quant_.qweight.numel();
  quant_.qweight.set_data(torch::empty({0, quant_.qweight.size(1)}, quant_.qweight.options()));
  return freed;
}

torch::Tensor ProjectionImpl::forward(const torch::Tensor& x) {
  if (!quantized()) return F::linear(x, weight, bias);
  if (inference_only_) {
    const torch::Dtype want = x.is_cuda() && quant_.mode == "int4" ? torch::kBFloat16 : x.scalar_type();
    TORCH_CHECK(x.device() == packed_.weight.device() && packed_.dtype == want &&
                    !(torch::GradMode::is_enabled() && x.requires_grad()),
                "a projection packed for inference takes ", packed_.dtype, " inputs on ", packed_.weight.device(),
                " without gradients");
    torch::Tensor y = quantized_linear(x, quant_, packed_);
    return bias.defined() ? y + bias : y;
  }
  {
    // the kernels' layout, rebuilt when the buffers were written since or the input moved
    std::lock_guard<std::mutex> lock(pack_mutex_);
    const int64_t version = static_cast<int64_t>(quant_.qweight._version() + quant_.scales._version());
    const torch::Dtype want = x.is_cuda() && quant_.mode == "int4" ? torch::kBFloat16 : x.scalar_type();
    if (!packed_.weight.defined() || packed_version_ != version || packed_.weight.device() != x.device() ||
        packed_.dtype != want) {
      packed_ = pack_weight(quant_, x.scalar_type(), x.device());
      packed_version_ = version;
    }
  }
  torch::Tensor y = quantized_linear(x, quant_, packed_);
  return bias.defined() ? y + bias : y;
}

ProjectionImpl* find_projection(torch::nn::Module& root, const std::string& path) {
  const auto modules = root.named_modules();
  const auto* m = modules.find(path);
  return m ? dynamic_cast<ProjectionImpl*>(m->get()) : nullptr;
}

EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({vocab, dim}, options), false);
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids, const torch::Tensor& table) {
  return torch::embedding(table.defined() ? table : weight, ids);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, const torch::TensorOptions& options) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}, options), false);
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x, const torch::Tensor& weight_override) {
  const auto& w = weight_override.defined() ? weight_override : weight;
  const torch::Tensor xf = x.to(torch::kFloat32);
  const torch::Tensor normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return w * normed.to(x.scalar_type());
}

namespace {

// Llama-3.1 scaling: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
torch::Tensor llama3_scale(torch::Tensor inv_freq, const RopeScaling& s) {
  const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
  const torch::Tensor wavelen = 2 * M_PI / inv_freq;
  torch::Tensor scaled = torch::where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq);
  const torch::Tensor smooth =
      (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  const torch::Tensor blended = (1 - smooth) * scaled / s.factor + smooth * scaled;
  const torch::Tensor medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen);
  return torch::where(medium, blended, scaled);
}

}  // namespace

Rope::Rope(const LlamaConfig& c, const torch::Device& device) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // inv_freq[i] = theta^(-2i / head_dim), i < head_dim / 2; computed like transformers (int64 arange
  // cast to float) so the bits match.
  torch::Tensor exponents = torch::arange(0, c.head_dim, 2, f32.dtype(torch::kInt64)).to(torch::kFloat32) /
                            static_cast<double>(c.head_dim);
  inv_freq_ = 1.0 / torch::pow(c.rope_theta, exponents);
  if (c.rope_scaling.type == "llama3") inv_freq_ = llama3_scale(inv_freq_, c.rope_scaling);
}

RopeTables Rope::tables(const torch::Tensor& positions, torch::Dtype dtype) const {
  // freqs [B, T, hd/2] = positions x inv_freq; emb = cat(freqs, freqs) -> [B, T, hd]
  const torch::Tensor freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_.to(positions.device());
  const torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& rope) {
  const int64_t half = x.size(-1) / 2;
  const torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * rope.cos.unsqueeze(1) + rotated * rope.sin.unsqueeze(1);
}

int64_t pack_for_inference(torch::nn::Module& root, torch::Dtype activation_dtype) {
  int64_t freed = 0;
  for (const auto& m : root.modules()) {
    auto* proj = dynamic_cast<ProjectionImpl*>(m.get());
    if (!proj || !proj->quantized()) continue;  // nothing to pack, nothing to trim
    freed += proj->pack_for_inference(activation_dtype);
#ifdef __GLIBC__
    // packing's temporaries (the codes unpacked to int32 for the kernel's API) and the freed codes
    // stay on glibc's heap otherwise: a 7B int4 model held 1.4 GB more after packing without this
    ::malloc_trim(0);
#endif
  }
  return freed;
}

}  // namespace mmtune::model
