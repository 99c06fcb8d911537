"""Feature-major LayerNorm against torch's layer_norm on the transposed tensor."""
import pytest
import torch

from fastdistilbert import ops
from test_kernels_support import AVAILABLE_ISAS, forced_isa

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")


@pytest.mark.parametrize("k, t", [(1, 1), (7, 3), (768, 13), (384, 200), (31, 65)])
def test_layer_norm_fm_matches_torch(k, t):
    g = torch.Generator().manual_seed(k * t)
    x = torch.randn(k, t, generator=g) * 3 + 5
    gamma, beta = torch.randn(k, generator=g), torch.randn(k, generator=g)
    want = torch.nn.functional.layer_norm(x.t(), (k,), gamma, beta, 1e-12).t()
    torch.testing.assert_close(ops.layer_norm_fm(x, gamma, beta, 1e-12), want, rtol=1e-5, atol=1e-5)


def test_layer_norm_fm_opcheck_and_errors():
    x, gamma, beta = torch.randn(8, 5), torch.randn(8), torch.randn(8)
    torch.library.opcheck(torch.ops.fastdistilbert.layer_norm_fm.default, (x, gamma, beta, 1e-5))
    with pytest.raises(RuntimeError, match="gamma and beta must be contiguous float32 \\[8\\]"):
        ops.layer_norm_fm(x, gamma[:4], beta)
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.layer_norm_fm(torch.randn(5, 8).t(), gamma, beta)


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("tokens", [1, 17, 64, 130])
def test_layer_norm_quantize_is_layer_norm_then_quantize_exactly(isa, tokens):
    """The fused op's outputs are bit-identical to the two ops it replaces, on every ISA and token tail."""
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(48, tokens, generator=g) * 4 + 1
    gamma, beta = torch.randn(48, generator=g), torch.randn(48, generator=g)
    with forced_isa(isa):
        y, q, scale, zp = ops.layer_norm_quantize_fm(x, gamma, beta, 1e-12)
        want_y = ops.layer_norm_fm(x, gamma, beta, 1e-12)
        want = ops.quantize_per_token(want_y)
    assert torch.equal(y, want_y)
    assert all(torch.equal(a, b) for a, b in zip((q, scale, zp), want))
    torch.library.opcheck(torch.ops.fastdistilbert.layer_norm_quantize_fm.default, (x, gamma, beta, 1e-12))


def test_layer_norm_is_identical_on_every_isa():
    x = torch.randn(96, 77, generator=torch.Generator().manual_seed(3)) * 10
    gamma, beta = torch.ones(96), torch.zeros(96)
    outs = []
    for isa in AVAILABLE_ISAS:
        with forced_isa(isa):
            outs.append(ops.layer_norm_fm(x, gamma, beta, 1e-12))
    assert all(torch.equal(o, outs[0]) for o in outs[1:])


def test_layer_norm_quantize_refuses_non_finite_input():
    x = torch.randn(8, 5)
    x[2, 3] = float("nan")
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        ops.layer_norm_quantize_fm(x, torch.ones(8), torch.zeros(8), 1e-12)
