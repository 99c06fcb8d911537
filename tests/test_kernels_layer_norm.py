"""Feature-major LayerNorm against torch's layer_norm on the transposed tensor."""
import pytest
import torch

from fastdistilbert import ops

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
