// Preloaded into the second numerics pass (scripts/test.sh) so that MKL takes the code paths it
// takes on an Intel CPU (issue 17: tests pass on every x86-64 CPU).
//
// MKL chooses its GEMM kernels by CPU vendor first and instruction set second: on an AMD CPU it
// runs its AMD (Zen) kernels whatever MKL_ENABLE_INSTRUCTIONS says, so capping MKL at AVX2 changed
// nothing on the AMD machines CI draws, and an Intel machine's fp32 products (another blocking of
// the reduction, measured: another result and a different rounding error) were never exercised
// there. MKL asks the vendor through one exported service function of the library it is linked
// into (LibTorch's libtorch_cpu.so exports it); answering "Intel" from a preloaded library makes it
// pick its Intel kernels for the instruction sets this CPU has (it still checks those by cpuid).
// On an Intel CPU the answer is the true one and nothing changes.
//
// mmtune_mkl_vendor_queries() counts the questions, so a test can prove that MKL asked
// (tests/kernels/check_mkl_as_on_intel.py): a LibTorch whose MKL stops asking would otherwise make
// this pass a silent no-op.
#include <atomic>

namespace {
std::atomic<long> queries{0};
}  // namespace

extern "C" {

__attribute__((visibility("default"))) int mkl_serv_intel_cpu_true() {
  queries.fetch_add(1, std::memory_order_relaxed);
  return 1;
}

__attribute__((visibility("default"))) long mmtune_mkl_vendor_queries() { return queries.load(); }

}  // extern "C"
