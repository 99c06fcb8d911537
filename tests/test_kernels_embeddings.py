"""The embedding op (fastdistilbert::embeddings_fm): torch's gather, add and LayerNorm, written feature-major."""
import pytest
import torch

from fastdistilbert import ops
from fastdistilbert import reference_ops as R
from test_kernels_support import AVAILABLE_ISAS, forced_isa

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")


def _tables(vocab, places, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(vocab, dim, generator=g), torch.randn(places, dim, generator=g) * 0.1,
            torch.randn(dim, generator=g), torch.randn(dim, generator=g))


# Token counts around the 16-token blocks and the 4 x 4 transposes; dims with and without a tail of 4 / 8.
@pytest.mark.parametrize("tokens", [1, 3, 15, 16, 17, 64, 131])
@pytest.mark.parametrize("dim", [1, 6, 64, 770])
def test_embeddings_fm_matches_torch(tokens, dim):
    words, places, gamma, beta = _tables(50, 40, dim, seed=tokens * dim)
    g = torch.Generator().manual_seed(tokens)
    ids, positions = torch.randint(0, 50, (tokens,), generator=g), torch.randint(0, 40, (tokens,), generator=g)
    got = ops.embeddings_fm(ids, positions, words, places, gamma, beta, 1e-12)
    want = R.embeddings_fm(ids, positions, words, places, gamma, beta, 1e-12)
    assert got.shape == (dim, tokens) and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dim", [6, 770])
def test_embeddings_fm_is_identical_on_every_isa(dim):
    """Each variant runs its own build of the per-token arithmetic (embed_token.inc): all give the bits of `ref`."""
    words, places, gamma, beta = _tables(60, 30, dim, seed=dim)
    g = torch.Generator().manual_seed(dim)
    ids, positions = torch.randint(0, 60, (37,), generator=g), torch.randint(0, 30, (37,), generator=g)
    words = words * 3 + 1  # a mean far from 0 and a wide spread: rounding differences would show
    outs = {}
    for isa in AVAILABLE_ISAS:
        with forced_isa(isa):
            outs[isa] = ops.embeddings_fm(ids, positions, words, places, gamma, beta, 1e-12)
    assert "ref" in outs
    for isa, out in outs.items():
        assert torch.equal(out, outs["ref"]), isa


def test_embeddings_fm_threads_give_the_same_result():
    words, places, gamma, beta = _tables(100, 64, 48)
    ids, positions = torch.randint(0, 100, (300,)), torch.arange(300) % 64
    old = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(ops.embeddings_fm(ids, positions, words, places, gamma, beta, 1e-5))
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(r, results[0]) for r in results)


def test_embeddings_fm_opcheck_and_empty():
    words, places, gamma, beta = _tables(20, 10, 8)
    args = (torch.tensor([3, 0, 19]), torch.tensor([0, 1, 9]), words, places, gamma, beta, 1e-12)
    torch.library.opcheck(torch.ops.fastdistilbert.embeddings_fm.default, args)
    empty = torch.zeros(0, dtype=torch.long)
    assert ops.embeddings_fm(empty, empty, words, places, gamma, beta, 1e-12).shape == (8, 0)


@pytest.mark.parametrize("change, match", [
    (dict(ids=torch.tensor([0, 20])), r"ids\[1\] = 20 is outside the 20 rows of words"),
    (dict(ids=torch.tensor([-1, 0])), r"ids\[0\] = -1 is outside"),
    (dict(positions=torch.tensor([0, 10])), r"positions\[1\] = 10 is outside the 10 rows of places"),
    (dict(ids=torch.tensor([0, 1], dtype=torch.int32)), "ids must be a contiguous int64"),
    (dict(positions=torch.tensor([0, 1, 2])), "ids has 2 tokens but positions has 3"),
    (dict(ids=torch.tensor([[0, 1]])), "ids must be a 1-D"),
    (dict(words=torch.randn(20, 8).double()), "words must be a contiguous float32"),
    (dict(places=torch.randn(10, 7)), "words has dim 8 but places has 7"),
    (dict(gamma=torch.randn(7)), r"gamma and beta must be contiguous float32 \[8\]"),
    (dict(eps=-1.0), "eps must be non-negative"),
])
def test_embeddings_fm_bad_input(change, match):
    words, places, gamma, beta = _tables(20, 10, 8)
    args = dict(ids=torch.tensor([0, 1]), positions=torch.tensor([0, 1]), words=words, places=places, gamma=gamma,
                beta=beta, eps=1e-12)
    args.update(change)
    with pytest.raises(RuntimeError, match=match):
        ops.embeddings_fm(**args)
