"""Differential fuzzing of the kernel variants (no tests here): random GEMM cases, each run on every available
ISA and on the scalar `ref` variant, compared exactly (int32 accumulators and final outputs).

Used by tests/test_fuzz_kernels.py (a fixed, seeded set of cases) and benchmarks/fuzz_kernels.py (open-ended)."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from fastdistilbert import ops
from test_kernels_support import AVAILABLE_ISAS, PATTERNS, act_params, codes, forced_isa, output_sentinel, weight_with_zeros

AWKWARD = (1, 2, 3, 4, 5, 7, 8, 13, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129)
ISAS_UNDER_TEST = [isa for isa in AVAILABLE_ISAS if isa != "ref"]
ACC_SENTINEL = 0x7F  # int32 0x7F7F7F7F, never a real accumulator of these sizes


@dataclass(frozen=True)
class Case:
    seed: int
    n: int
    k: int
    t: int
    density: float
    zeros: str          # the structure of the weight's zeros: "4x1", "1x4" or "dense" (unstructured)
    pattern: str        # the kernel format it is packed in (independent of the zeros)
    signed: bool        # int8 activations (zero point 0) instead of uint8
    per_token: bool
    bias: bool
    gelu: bool
    residual: bool
    requantize: bool
    dynamic: bool       # fp32 activations through dynamic_quantized_linear


def random_case(rng: random.Random, max_dim: int = 320) -> Case:
    def size(limit):
        return rng.choice(AWKWARD) if rng.random() < 0.5 else rng.randint(1, limit)

    dynamic = rng.random() < 0.25
    return Case(seed=rng.randrange(2**31), n=size(max_dim), k=size(max_dim), t=size(max_dim // 2),
                density=rng.choice([0.0, 0.05, 0.1, 0.5, 0.8, 0.9, 1.0, rng.random()]),
                zeros=rng.choice(("4x1", "1x4", "dense")), pattern=rng.choice(PATTERNS),
                signed=not dynamic and rng.random() < 0.3, per_token=rng.random() < 0.5, bias=rng.random() < 0.7,
                gelu=rng.random() < 0.5, residual=rng.random() < 0.5,
                requantize=not dynamic and rng.random() < 0.3, dynamic=dynamic)


def _run(case: Case, packed, inputs, isa: str) -> tuple[torch.Tensor | None, torch.Tensor]:
    x, x_scale, x_zp, residual = inputs
    with forced_isa(isa), output_sentinel(0x00 if isa == "ref" else 0xFF):
        if case.dynamic:
            y = ops.dynamic_quantized_linear(x, packed, gelu=case.gelu, residual=residual)
            x_q = ops.quantize_per_token(x)[0]
        else:
            y = ops.quantized_linear(x, x_scale, x_zp, packed, gelu=case.gelu, residual=residual,
                                     out_scale=0.05 if case.requantize else None,
                                     out_zero_point=100 if case.requantize else None)
            x_q = x
    if x_q.dtype != torch.uint8:  # the accumulator op reads uint8 codes only; int8 is checked through `y`
        return None, y
    with output_sentinel(ACC_SENTINEL):
        acc = ops.quantized_linear_accumulators(x_q, packed, isa)
    return acc, y


def check_case(case: Case) -> list[str]:
    """Runs `case` on every available ISA; returns the mismatches against `ref` (empty when all agree)."""
    g = torch.Generator().manual_seed(case.seed)
    zero_rows = tuple(r for r in range(case.n) if case.n > 2 and torch.rand(1, generator=g).item() < 0.05)
    weight_q, scale, bias = weight_with_zeros(case.n, case.k, case.density, case.zeros, case.seed, zero_rows)
    packed = ops.pack_weight(weight_q, scale, bias if case.bias else None, case.pattern)
    residual = torch.randn(case.n, case.t, generator=g) * 3 if case.residual else None
    if case.dynamic:
        inputs = (torch.randn(case.k, case.t, generator=g) * 4, None, None, residual)
    else:
        x_scale, x_zp = act_params(case.t, seed=case.seed + 1, per_token=case.per_token, zero_point=not case.signed)
        inputs = (codes(case.k, case.t, seed=case.seed + 2, dtype=torch.int8 if case.signed else torch.uint8),
                  x_scale, x_zp, residual)
    want_acc, want_y = _run(case, packed, inputs, "ref")
    mismatches = []
    for isa in ISAS_UNDER_TEST:
        acc, y = _run(case, packed, inputs, isa)
        if acc is not None and not torch.equal(acc, want_acc):
            mismatches.append(f"{isa}: accumulators differ from ref in {case}")
        if not torch.equal(y, want_y):
            mismatches.append(f"{isa}: outputs differ from ref in {case}")
    return mismatches
