// What this CPU offers LibTorch's kernels, where it changes which dtype pays (model loading warns).
#pragma once

#include <string>

namespace mmtune {

/// Whether LibTorch multiplies bf16 matrices on this CPU through oneDNN's vectorized kernels. It
/// needs AVX-512 BW, VL and DQ (LibTorch's own test before it hands a bf16 matmul to oneDNN; AVX512-BF16
/// or AMX make it faster still) and oneDNN not capped below AVX-512 by ONEDNN_MAX_CPU_ISA. Without
/// them a bf16 matmul runs ATen's reference loop: a 32 x 256 training step of tiny/llama-wide took
/// 269 s in bf16 vs 33 s with the kernels (AMD EPYC, oneDNN capped at AVX2 vs not).
bool cpu_has_fast_bf16_matmul();

/// The same from a /proc/cpuinfo "flags" line and ONEDNN_MAX_CPU_ISA's value (nullptr: unset).
bool cpu_has_fast_bf16_matmul(const std::string& cpuinfo_flags, const char* onednn_max_cpu_isa);

}  // namespace mmtune
