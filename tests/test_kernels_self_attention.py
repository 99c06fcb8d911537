"""The fused self-attention ops (QKV projection + attention; and the whole sublayer up to the LayerNorm's codes,
sequence by sequence) against the ops they replace: bit-identical on every ISA, pattern, activation kind,
sequence mix and thread count."""
import pytest
import torch

from fastdistilbert import ops
from test_kernels_support import AVAILABLE_ISAS, PATTERNS, forced_isa, output_sentinel, threads, weight_with_zeros

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")

DIM, HEADS = 40, 4  # head size 10: feature tails in the attention tiles; 120 QKV rows: padded row groups


def qkv_case(pattern: str, lengths: list[int], per_token: bool = True, seed: int = 0):
    w, s, b = weight_with_zeros(3 * DIM, DIM, 1.0 if pattern == "dense" else 0.3, pattern, seed)
    packed = ops.pack_weight(w, s * 0.05, b, pattern)
    x = torch.randn(DIM, sum(lengths), generator=torch.Generator().manual_seed(seed + len(lengths))) * 2
    if per_token:
        x_q, x_scale, x_zp = ops.quantize_per_token(x)
    else:  # static per-tensor parameters, as after calibrate()
        x_scale, x_zp = torch.tensor([0.03]), torch.tensor([120], dtype=torch.int32)
        x_q = ops.quantize_per_tensor(x, 0.03, 120)
    return x_q, x_scale, x_zp, packed


SEQUENCES = [[5], [64, 1], [3, 0, 70, 17, 64, 9], [130, 129, 2]]


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("lengths", SEQUENCES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_self_attention_is_the_two_ops_exactly(isa, pattern, lengths, n_threads):
    x_q, x_scale, x_zp, packed = qkv_case(pattern, lengths, per_token=len(lengths) != 2)
    with threads(n_threads), forced_isa(isa), output_sentinel(0x7F):
        fused = ops.self_attention_fm(x_q, x_scale, x_zp, packed, lengths, HEADS, 0.3)
        want = ops.attention_fm(ops.quantized_linear(x_q, x_scale, x_zp, packed), lengths, HEADS, 0.3)
    assert torch.equal(fused, want)


def test_fused_self_attention_opcheck():
    x_q, x_scale, x_zp, packed = qkv_case("4x1", [7, 30, 2])
    torch.library.opcheck(torch.ops.fastdistilbert.self_attention_fm.default,
                          (x_q, x_scale, x_zp, packed, DIM, [7, 30, 2], HEADS, 0.3))


def test_fused_self_attention_bad_input():
    x_q, x_scale, x_zp, packed = qkv_case("dense", [7, 30, 2])
    with pytest.raises(RuntimeError, match="add up to 38 but x_q has 39 tokens"):
        ops.self_attention_fm(x_q, x_scale, x_zp, packed, [7, 30, 1], HEADS, 0.3)
    with pytest.raises(RuntimeError, match="not divisible by n_heads = 3"):
        ops.self_attention_fm(x_q, x_scale, x_zp, packed, [7, 30, 2], 3, 0.3)
    with pytest.raises(RuntimeError, match="not 3 \\* dim = 123"):
        ops.self_attention_fm(x_q, x_scale, x_zp, packed, [7, 30, 2], HEADS, 0.3, dim=41)
    with pytest.raises(RuntimeError, match=">= 0"):
        ops.self_attention_fm(x_q, x_scale, x_zp, packed, [40, -1], HEADS, 0.3)
    with pytest.raises(RuntimeError, match="x_q must be uint8 or int8"):
        ops.self_attention_fm(x_q.float(), x_scale, x_zp, packed, [7, 30, 2], HEADS, 0.3)


def block_case(pattern: str, lengths: list[int], seed: int = 0):
    x_q, x_scale, x_zp, packed_qkv = qkv_case(pattern, lengths, seed=seed)
    w, s, b = weight_with_zeros(DIM, DIM, 1.0 if pattern == "dense" else 0.3, pattern, seed + 7)
    packed_out = ops.pack_weight(w, s * 0.05, b, pattern)
    g = torch.Generator().manual_seed(seed + 9)
    residual = torch.randn(DIM, sum(lengths), generator=g)
    gamma, beta = torch.randn(DIM, generator=g), torch.randn(DIM, generator=g)
    return x_q, x_scale, x_zp, packed_qkv, packed_out, residual, gamma, beta


def three_ops(x_q, x_scale, x_zp, packed_qkv, packed_out, residual, gamma, beta, lengths):
    ctx = ops.attention_fm(ops.quantized_linear(x_q, x_scale, x_zp, packed_qkv), lengths, HEADS, 0.3)
    return ops.layer_norm_quantize_fm(ops.dynamic_quantized_linear(ctx, packed_out, residual=residual), gamma, beta,
                                      1e-12)


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("lengths", SEQUENCES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_attention_block_is_the_three_ops_exactly(isa, pattern, lengths, n_threads):
    case = block_case(pattern, lengths)
    with threads(n_threads), forced_isa(isa):
        fused = ops.attention_block_fm(*case, 1e-12, lengths, HEADS, 0.3)
        want = three_ops(*case, lengths)
    assert all(torch.equal(a, b) for a, b in zip(fused, want))


def test_fused_attention_block_opcheck_and_bad_input():
    lengths = [7, 30, 2]
    x_q, x_scale, x_zp, packed_qkv, packed_out, residual, gamma, beta = block_case("4x1", lengths)
    torch.library.opcheck(torch.ops.fastdistilbert.attention_block_fm.default,
                          (x_q, x_scale, x_zp, packed_qkv, packed_out, residual, gamma, beta, 1e-12, DIM, lengths,
                           HEADS, 0.3))
    call = lambda **kw: ops.attention_block_fm(**{**dict(  # noqa: E731
        x_q=x_q, x_scale=x_scale, x_zero_point=x_zp, packed_qkv=packed_qkv, packed_out=packed_out,
        residual=residual, gamma=gamma, beta=beta, eps=1e-12, lengths=lengths, n_heads=HEADS, scaling=0.3), **kw})
    with pytest.raises(RuntimeError, match="output projection is 120 x 40, not dim x dim = 40 x 40"):
        call(packed_out=packed_qkv)
    with pytest.raises(RuntimeError, match=r"residual must be a contiguous float32 \[40, 39\]"):
        call(residual=residual.t().contiguous().t())
    with pytest.raises(RuntimeError, match="gamma and beta must be contiguous float32 \\[40\\]"):
        call(gamma=gamma[:39])
    with pytest.raises(RuntimeError, match="x_q must be uint8 per-token codes"):
        call(x_q=x_q.to(torch.int8))
    bad = residual.clone()
    bad[3, 20] = float("inf")
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        call(residual=bad)
    # One sequence for two threads: the op's fallback to the unfused ops reports it too.
    with threads(2), pytest.raises(RuntimeError, match=r"layer_norm_quantize_fm: the normalized activations contain "
                                                       r"NaN or Inf \(in the tokens from 0 on\)"):
        call(residual=bad, lengths=[39])
