"""Proves that tests/kernels/mkl_as_on_intel.cpp takes effect when preloaded (issue 17).

Run with LD_PRELOAD=<libmmtune_mkl_as_on_intel.so>: an fp32 product through LibTorch's MKL must
ask the preloaded library for the CPU vendor at least once. Prints the count and the product's fp32
error against float64. Exits 0 when MKL asked, 77 (ctest: skipped) when this LibTorch has no MKL,
1 otherwise (not preloaded, or MKL never asked).
"""
import ctypes
import os
import sys

import torch


def operands() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(257, 1031, generator=g), torch.randn(1031, 263, generator=g)


def main() -> int:
    if not torch.backends.mkl.is_available():
        print("[mkl-as-on-intel] this LibTorch has no MKL: nothing to redirect")
        return 77
    try:
        queries = ctypes.CDLL(None).mmtune_mkl_vendor_queries
    except AttributeError:
        print("[mkl-as-on-intel] the library is not preloaded (LD_PRELOAD=" + os.environ.get("LD_PRELOAD", "") + ")")
        return 1
    queries.restype = ctypes.c_long
    torch.set_num_threads(1)
    a, b = operands()
    before = queries()  # measured with torch 2.11: 0; MKL asks at its first BLAS call and keeps the answer
    c = a @ b  # [257, 263] fp32, through MKL's sgemm
    n = queries()
    err = (c.double() - a.double() @ b.double()).abs().max().item()
    print(f"[mkl-as-on-intel] MKL asked the vendor {n} time(s), {n - before} of them in the first fp32 product; "
          f"its max error vs float64 {err:.3e} (257x1031x263)")
    if n < 1:
        print("[mkl-as-on-intel] MKL never asked: the preloaded answer does not reach it (a LibTorch whose MKL "
              "no longer exports mkl_serv_intel_cpu_true?); the numerics pass would not run Intel's kernels")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
