"""The fused feed-forward ops (lin1 + GELU, per-token quantization, lin2 + residual, block of tokens by block; and
with the LayerNorm and its codes) against the ops they replace: bit-identical on every ISA, pattern, token tail
and thread count."""
import pytest
import torch

from fastdistilbert import ops
from test_kernels_support import AVAILABLE_ISAS, PATTERNS, forced_isa, output_sentinel, threads, weight_with_zeros

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")

HIDDEN, FFN = 40, 136  # not multiples of 64: padded rows, features and token blocks all get exercised


def ffn_case(pattern: str, tokens: int, seed: int = 0):
    density = 1.0 if pattern == "dense" else 0.3
    w1, s1, b1 = weight_with_zeros(FFN, HIDDEN, density, pattern, seed)
    w2, s2, b2 = weight_with_zeros(HIDDEN, FFN, density, pattern, seed + 1)
    packed1 = ops.pack_weight(w1, s1 * 0.05, b1, pattern)
    packed2 = ops.pack_weight(w2, s2 * 0.05, b2, pattern)
    g = torch.Generator().manual_seed(seed + tokens)
    x = torch.randn(HIDDEN, tokens, generator=g) * 2
    x_q, x_scale, x_zp = ops.quantize_per_token(x)
    residual = torch.randn(HIDDEN, tokens, generator=g)
    return (x_q, x_scale, x_zp, packed1, packed2, residual)


def two_ops(x_q, x_scale, x_zp, packed1, packed2, residual):
    hidden = ops.quantized_linear(x_q, x_scale, x_zp, packed1, gelu=True)
    return ops.dynamic_quantized_linear(hidden, packed2, residual=residual)


def every_isa_pattern_tail_and_thread_count(test):
    for name, values in [("n_threads", [1, 2]), ("tokens", [1, 63, 64, 96, 150, 200]), ("pattern", PATTERNS),
                         ("isa", AVAILABLE_ISAS)]:
        test = pytest.mark.parametrize(name, values)(test)
    return test


@every_isa_pattern_tail_and_thread_count
def test_fused_feed_forward_is_the_two_ops_exactly(isa, pattern, tokens, n_threads):
    case = ffn_case(pattern, tokens)
    with threads(n_threads), forced_isa(isa), output_sentinel(0x7F):
        fused = ops.feed_forward_fm(*case)
        assert ops.last_isa() == isa
        want = two_ops(*case)
    assert torch.equal(fused, want)


@every_isa_pattern_tail_and_thread_count
def test_fused_feed_forward_block_is_ffn_then_layer_norm_exactly(isa, pattern, tokens, n_threads):
    case = ffn_case(pattern, tokens)
    g = torch.Generator().manual_seed(tokens)
    gamma, beta = torch.randn(HIDDEN, generator=g), torch.randn(HIDDEN, generator=g)
    with threads(n_threads), forced_isa(isa):
        fused = ops.feed_forward_block_fm(*case, gamma, beta, 1e-12)
        want = ops.layer_norm_quantize_fm(two_ops(*case), gamma, beta, 1e-12)
    assert all(torch.equal(a, b) for a, b in zip(fused, want))


def test_fused_feed_forward_opcheck():
    torch.library.opcheck(torch.ops.fastdistilbert.feed_forward_fm.default, ffn_case("4x1", 130))


def test_fused_feed_forward_bad_input():
    x_q, x_scale, x_zp, packed1, packed2, residual = ffn_case("dense", 70)
    with pytest.raises(RuntimeError, match="x_q must be uint8"):
        ops.feed_forward_fm(x_q.to(torch.int8), x_scale, x_zp, packed1, packed2, residual)
    with pytest.raises(RuntimeError, match="lin2 must consume lin1's output"):
        ops.feed_forward_fm(x_q, x_scale, x_zp, packed1, packed1, residual)
    with pytest.raises(RuntimeError, match=r"residual must have shape \[40, 70\]"):
        ops.feed_forward_fm(x_q, x_scale, x_zp, packed1, packed2, residual[:, :69].contiguous())
    with pytest.raises(RuntimeError, match="activations have 39 features"):
        ops.feed_forward_fm(x_q[:39].contiguous(), x_scale, x_zp, packed1, packed2, residual)
    with pytest.raises(RuntimeError, match="x_scale must be finite and positive"):
        ops.feed_forward_fm(x_q, -x_scale, x_zp, packed1, packed2, residual)
    # A scale so large that lin1 overflows to Inf: refused, never passed on as garbage codes.
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        ops.feed_forward_fm(x_q, torch.full_like(x_scale, 3e38), x_zp, packed1, packed2, residual)


def test_fused_feed_forward_block_opcheck_and_bad_input():
    case = ffn_case("4x1", 130)
    gamma, beta = torch.randn(HIDDEN), torch.randn(HIDDEN)
    torch.library.opcheck(torch.ops.fastdistilbert.feed_forward_block_fm.default, (*case, gamma, beta, 1e-12))
    with pytest.raises(RuntimeError, match=r"gamma and beta must be contiguous float32 \[40\]"):
        ops.feed_forward_block_fm(*case, gamma[:39], beta, 1e-12)
    with pytest.raises(RuntimeError, match="eps must be non-negative"):
        ops.feed_forward_block_fm(*case, gamma, beta, -1.0)
    residual = case[-1].clone()
    residual[0, 100] = float("nan")
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        ops.feed_forward_block_fm(*case[:-1], residual, gamma, beta, 1e-12)
