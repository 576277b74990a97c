"""Both precisions from one oracle run (issue 17): the parity tests derive their fp32 tolerance from
the oracle's own fp32 noise, measured on the same weights and inputs in the same run.

A reference script computes its outputs once in float32 (what it always wrote) and once more with
every model, weight and floating input cast to float64, and writes both into one safetensors file:
`NAME` is the float32 result, `NAME.fp64` the float64 one (see tests/numerics.h for how the C++
side turns |NAME - NAME.fp64| into a bound). Integer outputs (ids, masks, generated tokens) are
written once.

transformers keeps some statistics in float32 even in a float64 model (LlamaRMSNorm's variance,
the RoPE angles; eager attention's softmax, which is why the references use SDPA); mmtune's float64
path does the same, so the float64 comparison checks the algorithm, not the CPU's kernels.
"""
import copy

import torch

FP64 = ".fp64"


def fp64(x):
    """A float64 copy of a module, tensor or dict of tensors (integer tensors unchanged)."""
    if isinstance(x, torch.nn.Module):
        return copy.deepcopy(x).double()
    if isinstance(x, dict):
        return {k: fp64(v) for k, v in x.items()}
    if torch.is_tensor(x) and x.is_floating_point():
        return x.double()
    return x


def both(out32, out64):
    """out32 as it is, plus every floating tensor of out64 under NAME.fp64 (contiguous)."""
    out = {k: v.contiguous() for k, v in out32.items()}
    for k, v in out64.items():
        if torch.is_tensor(v) and v.is_floating_point():
            if v.dtype != torch.float64:
                raise TypeError(f"{k}: the float64 run gave {v.dtype}")
            out[k + FP64] = v.contiguous()
    return out
