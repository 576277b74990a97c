// Where every floating-point tolerance in the tests comes from (issue 17).
//
// fp32 results differ between CPUs: ATen and oneDNN pick other kernels by instruction set (AVX2,
// AVX-512, AVX-512 bf16, AMX) and MKL by vendor as well (Intel vs AMD; scripts/test.sh's second
// pass runs MKL's Intel kernels on any CPU, tests/kernels/mkl_as_on_intel.cpp), with other
// blockings and other reduction orders, so a constant tuned on one machine fails on the next. The
// tests therefore never compare fp32 numbers against a constant; they measure the fp32 noise of the
// very computation under test, in the same run, by doing it in float64 too:
//
//  * Parity against an oracle (transformers, peft, a re-implementation from the spec): the oracle
//    writes every output in float32 and float64 (scripts/reference/precision.py: NAME, NAME.fp64).
//      - algorithm check: mmtune in float64 vs the oracle in float64      <= kFp64Tolerance
//      - fp32 check:      mmtune in float32 vs the oracle in float32     <= fp32_bound(noise)
//        noise = max |oracle fp32 - oracle fp64|, the oracle's own fp32 error on these inputs.
//  * Two ways to one result inside mmtune (a row alone vs in a batch, cached decoding vs the full
//    forward, grouped vs naive dispatch, 1 rank vs 2): both ways run in float64 and in float32.
//      - float64: the two ways agree to kFp64Tolerance (1e-12 where the issue asks for it)
//      - float32: they agree to fp32_bound(noise), noise = the larger of each way's |fp32 - fp64|.
//
// fp32_bound(noise) = max(kNoiseFactor * noise, kNoiseFloor * max(1, scale)): two fp32
// implementations of one function each err by about the measured noise, so their difference is at
// most about twice it; k = 4 leaves a factor two for kernels whose rounding is less lucky on these
// inputs than the oracle's. The floor (~10 fp32 ulps of the largest value compared) covers outputs
// that fp32 happens to compute (nearly) exactly, where the measured noise is ~0.
//
// A noise that is not rounding (a flipped argmax, a tie in top-1 routing) would make the bound
// vacuous, so the helpers also require noise <= kMaxNoise * max(1, scale).
//
// Float64 paths: transformers keeps RMSNorm's statistics and the RoPE angles in float32 even in a
// float64 model; mmtune does the same (layers.cpp), so the float64 comparison is exact up to
// float64 rounding. Each check prints one "[numerics] ..." line with the measured numbers.
#pragma once

#include <torch/types.h>

#include <string>

#include <mmtune/config/config.h>
#include <mmtune/runtime/build_model.h>

namespace mmtune::testing {

inline constexpr double kNoiseFactor = 4.0;      // k
inline constexpr double kNoiseFloor = 1e-6;      // times max(1, |largest value|)
inline constexpr double kFp64Tolerance = 1e-9;   // the algorithm check, independent of the CPU
inline constexpr double kMaxNoise = 1e-3;        // times max(1, scale): larger is not rounding noise

/// max |a - b| over the positions where `mask` is true (broadcast from the left: a [B, T] mask
/// selects rows of [B, T, V]; undefined = everywhere), computed in float64.
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask = {});
/// max |a| over `mask`, as above.
double max_abs(const torch::Tensor& a, const torch::Tensor& mask = {});

/// The fp32 tolerance from a measured fp32-vs-fp64 noise (see the top of this file).
double fp32_bound(double noise, double scale);

/// One output computed by mmtune and by an oracle, each in float32 and float64 (ours64 may be
/// undefined where mmtune has no float64 path for it; then only the fp32 check runs). Checks
/// |ours32 - oracle32| <= fp32_bound(|oracle32 - oracle64|) and |ours64 - oracle64| <= fp64_tol,
/// prints a "[numerics]" line and returns the fp32 bound (for margins of discrete decisions).
double expect_oracle_parity(const std::string& label, const torch::Tensor& ours32, const torch::Tensor& ours64,
                            const torch::Tensor& oracle32, const torch::Tensor& oracle64,
                            const torch::Tensor& mask = {}, double fp64_tol = kFp64Tolerance);

/// One result computed two ways by mmtune (a: e.g. a row alone, b: the row in a batch), each in
/// float32 and float64. Checks |a64 - b64| <= fp64_tol and |a32 - b32| <= fp32_bound(noise) with
/// noise = max(|a32 - a64|, |b32 - b64|); prints a "[numerics]" line; returns the fp32 bound.
double expect_same_result(const std::string& label, const torch::Tensor& a32, const torch::Tensor& b32,
                          const torch::Tensor& a64, const torch::Tensor& b64, const torch::Tensor& mask = {},
                          double fp64_tol = kFp64Tolerance);

/// Scalars (a loss, an NLL sum): the same as expect_oracle_parity with 0-d values; NaN for a
/// missing float64 value.
double expect_oracle_parity(const std::string& label, double ours32, double ours64, double oracle32, double oracle64,
                            double fp64_tol = kFp64Tolerance);

/// The float64 twin of a float32 model for the checks above: `cfg` built again with dtype fp64
/// (the frozen weights loaded in float64 and the adapters' master weights cast: the model's
/// working dtype is fixed when it is built) and `m32`'s trainable tensors copied in by name
/// (exact: fp32 values are float64 values).
runtime::BuiltModel fp64_twin(const config::RunConfig& cfg, const runtime::BuiltModel& m32);

/// The same for a bare LLaMA with `adapter` attached (adapters::attach_to_llama): loaded again from
/// `dir` in float64, the adapter attached and cast, every parameter copied from `m32` by name.
/// (model->to(kFloat64) on a built model is not enough: its masks, RoPE tables and KV cache keep
/// the dtype it was built with.)
model::LlamaDecoder llama_fp64_twin(const std::string& dir, const config::AdapterConfig& adapter,
                                    model::LlamaDecoderImpl& m32);

}  // namespace mmtune::testing
