"""Seeded builders shared by the kernel tests (no tests here): weights whose zeros follow a block
pattern, full-range activation codes and quantization parameters, and the ISAs to cover."""
from __future__ import annotations

import contextlib

import torch

import fastdistilbert
from fastdistilbert import ops
from fastdistilbert import quantization as Q

PATTERNS = ("dense", "4x1", "1x4")
AVAILABLE_ISAS = fastdistilbert.available_isas() if ops.EXTENSION_AVAILABLE else []
FAST_ISAS = [isa for isa in AVAILABLE_ISAS if isa != "ref"]


def weight_with_zeros(n: int, k: int, density: float, zeros: str, seed: int, zero_rows: tuple = ()):
    """int8 weight [n, k] (its scale and a bias) whose nonzeros follow `zeros` ("4x1", "1x4" or
    "dense" = unstructured) at about `density`; rows in `zero_rows` are all zero."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    if zeros == "4x1":
        keep = (torch.rand((n + 3) // 4, k, generator=g) < density).repeat_interleave(4, 0)[:n]
    elif zeros == "1x4":
        keep = (torch.rand(n, (k + 3) // 4, generator=g) < density).repeat_interleave(4, 1)[:, :k]
    else:
        keep = torch.rand(n, k, generator=g) < density
    w = w * keep
    for r in zero_rows:
        w[r] = 0
    weight_q, scale = Q.quantize_weight(w)
    return weight_q, scale, torch.randn(n, generator=g)


def codes(k: int, t: int, seed: int, dtype=torch.uint8) -> torch.Tensor:
    """Activation codes over the full range, extremes included."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = (0, 256) if dtype == torch.uint8 else (-128, 128)
    x = torch.randint(lo, hi, (k, t), generator=g, dtype=torch.int32)
    x.view(-1)[:: 7] = hi - 1
    x.view(-1)[3:: 11] = lo
    return x.to(dtype)


def act_params(t: int, seed: int, per_token: bool = True, zero_point: bool = True):
    g = torch.Generator().manual_seed(seed)
    size = t if per_token else 1
    scale = torch.rand(size, generator=g) * 0.05 + 1e-3
    zp = torch.randint(0, 256, (size,), generator=g, dtype=torch.int32) if zero_point else torch.zeros(size, dtype=torch.int32)
    return scale, zp


@contextlib.contextmanager
def forced_isa(isa: str):
    fastdistilbert.set_isa(isa)
    try:
        yield
    finally:
        fastdistilbert.set_isa("auto")


@contextlib.contextmanager
def threads(n: int):
    """torch's intra-op thread count set to n while active."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def output_sentinel(byte: int):
    """Every GEMM output is pre-filled with `byte` while active (elements a kernel misses then differ)."""
    torch.ops.fastdistilbert.set_output_sentinel(byte)
    try:
        yield
    finally:
        torch.ops.fastdistilbert.set_output_sentinel(-1)
