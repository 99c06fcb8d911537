"""Every kernel variant against the scalar `ref` variant, exactly (DESIGN section 7): accumulators and
final outputs over awkward shapes x densities x patterns x epilogues; the torch reference against `ref`.

Outputs are pre-filled with sentinels, so an element a kernel never writes is a mismatch."""
from __future__ import annotations

import functools
import itertools

import pytest
import torch

from fastdistilbert import ops
from fastdistilbert import reference_ops as R
from test_kernels_support import FAST_ISAS, PATTERNS, act_params, codes, forced_isa, output_sentinel, weight_with_zeros

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")

# (N, K, T): the awkward sizes 1, 2, 3, 7, 13, 17, 31, 33, 63, 65, 127, 768, 3072, sampled; K = 4097 is past
# the widest row group the avx2 variant widens on its stack (it then widens weights in the tiles instead). T = 90 and
# 144: a last chunk of 2 and 1 token vectors that the 512-bit 4x1 tile takes with the chunk before (ragged, whole).
# 5 x 3072 x 200: activations too large for a copy per thread (gemm_ops.cpp, kOwnCopyBytes), packed once, shared.
# 40 x 3072 x 520: shared too, and three token tiles of three row blocks each, taken in token-tile order (run_gemm).
SHAPES = [(1, 1, 1), (2, 3, 7), (13, 17, 31), (33, 63, 65), (127, 65, 33), (768, 768, 13), (65, 3072, 17),
          (3072, 127, 2), (7, 768, 127), (31, 2, 63), (9, 4097, 40), (20, 50, 90), (6, 100, 144), (5, 3072, 200),
          (40, 3072, 520)]
DENSITIES = (0.0, 0.1, 0.5, 0.8, 0.9, 1.0)
ACC_SENTINEL = 0x7F  # int32 0x7F7F7F7F: larger than any accumulator of these shapes


@functools.cache
def case(shape, density, zeros, pattern):
    n, k, t = shape
    weight_q, scale, bias = weight_with_zeros(n, k, density, zeros, seed=hash((shape, density, zeros)) % 2**31,
                                              zero_rows=(0, n - 1) if n > 2 else ())
    packed = ops.pack_weight(weight_q, scale, bias, pattern)
    x = codes(k, t, seed=n * 31 + k)
    with output_sentinel(ACC_SENTINEL):
        acc = ops.quantized_linear_accumulators(x, packed, "ref")
    return weight_q, packed, x, acc


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("isa", FAST_ISAS)
def test_accumulators_match_ref(isa, pattern, shape):
    for density in DENSITIES:
        weight_q, packed, x, want = case(shape, density, pattern, pattern)
        with output_sentinel(ACC_SENTINEL):
            got = ops.quantized_linear_accumulators(x, packed, isa)
        assert torch.equal(got, want), f"{isa} {pattern} {shape} density {density}"


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("zeros", ["4x1", "1x4", "dense"])
def test_ref_and_torch_reference_match_plain_integer_product(pattern, zeros):
    """The scalar kernel walks every packed format correctly, whatever pattern the zeros follow."""
    for shape in SHAPES[:6]:
        for density in (0.0, 0.5, 1.0):
            weight_q, packed, x, acc = case(shape, density, zeros, pattern)
            want = (weight_q.to(torch.int64) @ x.to(torch.int64)).to(torch.int32)
            assert torch.equal(acc, want), f"ref {pattern} {zeros} {shape} {density}"
            assert torch.equal(R.quantized_linear_accumulators(x, packed), want)


EPILOGUES = list(itertools.product([False, True], repeat=4))  # gelu, residual, requantize, per_token


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("isa", FAST_ISAS + ["torch"])
def test_epilogues_match_ref(isa, pattern):
    # Every epilogue on every shape; int8 input and bias presence alternate across the combinations.
    cases = itertools.product([(13, 17, 31), (33, 65, 70), (7, 768, 17), (9, 40, 90)], EPILOGUES)
    for i, (shape, (gelu, residual, requant, per_token)) in enumerate(cases):
        s8, bias = i % 2 == 1, (i // 2) % 2 == 0
        n, k, t = shape
        weight_q, scale, b = weight_with_zeros(n, k, 0.5, pattern, seed=n + k)
        packed = ops.pack_weight(weight_q, scale, b if bias else None, pattern)
        x = codes(k, t, seed=k, dtype=torch.int8 if s8 else torch.uint8)
        x_scale, x_zp = act_params(t, seed=t, per_token=per_token, zero_point=not s8)
        kwargs = dict(gelu=gelu, residual=torch.randn(n, t) * 3 if residual else None,
                      out_scale=0.05 if requant else None, out_zero_point=100 if requant else None)
        with forced_isa("ref"), output_sentinel(0xFF):
            want = ops.quantized_linear(x, x_scale, x_zp, packed, **kwargs)
        if isa == "torch":
            got = R.quantized_linear(x, x_scale, x_zp, packed, **kwargs)
        else:
            with forced_isa(isa), output_sentinel(0x00 if requant else 0xFF):
                got = ops.quantized_linear(x, x_scale, x_zp, packed, **kwargs)
        label = f"{isa} {pattern} {shape} gelu={gelu} res={residual} requant={requant} per_token={per_token} s8={s8}"
        assert got.dtype == (torch.uint8 if requant else torch.float32)
        assert torch.equal(got, want), label


@pytest.mark.parametrize("isa", FAST_ISAS)
def test_dynamic_linear_matches_ref_and_torch_reference(isa):
    g = torch.Generator().manual_seed(3)
    for n, k, t in [(13, 17, 31), (65, 768, 33)]:
        for pattern in PATTERNS:
            weight_q, scale, bias = weight_with_zeros(n, k, 0.3, pattern, seed=k)
            packed = ops.pack_weight(weight_q, scale, bias, pattern)
            x = torch.randn(k, t, generator=g) * 4
            residual = torch.randn(n, t, generator=g)
            with forced_isa("ref"):
                want = ops.dynamic_quantized_linear(x, packed, gelu=True, residual=residual)
            with forced_isa(isa):
                got = ops.dynamic_quantized_linear(x, packed, gelu=True, residual=residual)
            assert torch.equal(got, want)
            assert torch.equal(R.dynamic_quantized_linear(x, packed, gelu=True, residual=residual), want)


@pytest.mark.parametrize("isa", FAST_ISAS)
# Every thread packs its own activations / one shared copy / the same in token-tile order.
@pytest.mark.parametrize("n,k,t", [(768, 768, 200), (96, 3072, 200), (40, 3072, 520)])
def test_results_do_not_depend_on_thread_count(isa, n, k, t):
    weight_q, scale, bias = weight_with_zeros(n, k, 0.2, "4x1", seed=5)
    x = codes(k, t, seed=6)
    before = torch.get_num_threads()
    try:
        for pattern in PATTERNS:
            packed = ops.pack_weight(weight_q, scale, bias, pattern)
            results = []
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                results.append(ops.quantized_linear_accumulators(x, packed, isa))
            assert all(torch.equal(r, results[0]) for r in results)
    finally:
        torch.set_num_threads(before)


# out= forms. 2048 x 1024 fp32 is 8 MiB, the size from which fp32 outputs are streamed (non-temporal stores); 1,030
# tokens (rows not 64-byte aligned) and an out tensor whose data does not start on a 64-byte line take ordinary stores.
OUT_SHAPES = [(13, 17, 31), (2048, 20, 1024), (2048, 20, 1030)]


def unaligned_like(t: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor of t's shape and dtype whose data starts 4 bytes past a 64-byte boundary."""
    base = torch.empty(t.numel() * t.element_size() + 128, dtype=torch.uint8)
    start = (-base.data_ptr()) % 64 + 4
    return base[start:start + t.numel() * t.element_size()].view(t.dtype).view(t.shape)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("isa", FAST_ISAS + ["ref"])
def test_out_form_matches_ref_streamed_or_not(isa, pattern):
    assert OUT_SHAPES[1][0] * OUT_SHAPES[1][2] * 4 >= torch.ops.fastdistilbert.streamed_output_bytes()
    for n, k, t in OUT_SHAPES:
        weight_q, scale, bias = weight_with_zeros(n, k, 0.3, pattern, seed=n + t)
        packed = ops.pack_weight(weight_q, scale, bias, pattern)
        x = codes(k, t, seed=t)
        x_scale, x_zp = act_params(t, seed=k)
        residual = torch.randn(n, t)
        for kwargs in (dict(gelu=True), dict(residual=residual), dict(out_scale=0.05, out_zero_point=100)):
            with forced_isa("ref"):
                want = ops.quantized_linear(x, x_scale, x_zp, packed, **kwargs)
            with forced_isa(isa), output_sentinel(0x00 if "out_scale" in kwargs else 0xFF):
                for out in (torch.empty_like(want), unaligned_like(want)):
                    got = ops.quantized_linear(x, x_scale, x_zp, packed, out=out, **kwargs)
                    assert got is out and torch.equal(out, want), f"{isa} {pattern} {n}x{k}x{t} {list(kwargs)}"
                assert torch.equal(ops.quantized_linear(x, x_scale, x_zp, packed, **kwargs), want)
        with forced_isa("ref"):
            want = ops.quantized_linear(x, x_scale, x_zp, packed, residual=residual)
        with forced_isa(isa):
            in_place = residual.clone()  # out may be the residual itself: y = W x + y
            assert ops.quantized_linear(x, x_scale, x_zp, packed, residual=in_place, out=in_place) is in_place
        assert torch.equal(in_place, want), f"{isa} {pattern} {n}x{k}x{t} in place"


@pytest.mark.parametrize("isa", FAST_ISAS + ["ref"])
def test_dynamic_linear_out_form_matches_ref(isa):
    for n, k, t in OUT_SHAPES:
        weight_q, scale, bias = weight_with_zeros(n, k, 0.3, "4x1", seed=k)
        packed = ops.pack_weight(weight_q, scale, bias, "4x1")
        x = torch.randn(k, t, generator=torch.Generator().manual_seed(t))
        with forced_isa("ref"):
            want = ops.dynamic_quantized_linear(x, packed, gelu=True)
        with forced_isa(isa), output_sentinel(0xFF):
            out = torch.empty_like(want)
            assert ops.dynamic_quantized_linear(x, packed, gelu=True, out=out) is out
        assert torch.equal(out, want), f"{isa} {n}x{k}x{t}"
