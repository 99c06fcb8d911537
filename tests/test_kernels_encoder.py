"""The whole-encoder op (every layer, depth first: each thread takes whole sequences through all layers in cached
panels) against the layer-by-layer ops it replaces: bit-identical on every ISA, pattern, sequence mix and thread
count, with clear errors for bad input."""
import pytest
import torch

from fastdistilbert import ops
from test_kernels_support import AVAILABLE_ISAS, PATTERNS, forced_isa, output_sentinel, threads, weight_with_zeros

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")

DIM, HEADS, FFN, LAYERS = 40, 4, 136, 2  # head size 10, padded row groups, feed-forward blocks with tails
# One sequence: short, it takes the layer path on two threads; across two feed-forward blocks (the last with a 22-token
# tail), its tokens split across the threads (as do the unbalanced mixes of at least 96 tokens).
SEQUENCES = [[5], [150], [64, 1], [3, 0, 70, 17, 64, 9], [130, 129, 2]]


def encoder_case(pattern: str, lengths: list[int], seed: int = 0):
    """(h, packed, norms, eps) of a random LAYERS-layer encoder whose weights follow `pattern`."""
    density = 1.0 if pattern == "dense" else 0.3
    packed, norms, eps = [], [], []
    g = torch.Generator().manual_seed(seed)
    for layer in range(LAYERS):
        for i, (n, k) in enumerate([(3 * DIM, DIM), (DIM, DIM), (FFN, DIM), (DIM, FFN)]):
            w, s, b = weight_with_zeros(n, k, density, pattern, seed + 10 * layer + i)
            packed.append(ops.pack_weight(w, s * 0.05, b, pattern))
        for _ in range(2):
            norms += [1 + 0.2 * torch.randn(DIM, generator=g), 0.1 * torch.randn(DIM, generator=g)]
        eps += [1e-12, 1e-5]
    h = torch.randn(DIM, sum(lengths), generator=g)
    return h, packed, norms, eps


def every_case(test):
    """Every ISA x pattern x sequence mix x thread count x attention precision."""
    for name, values in (("int8_attention", [False, True]), ("n_threads", [1, 2]), ("lengths", SEQUENCES),
                         ("pattern", PATTERNS), ("isa", AVAILABLE_ISAS)):
        test = pytest.mark.parametrize(name, values)(test)
    return test


def layer_by_layer(h, packed, norms, eps, lengths, int8_attention=False, activation_params=None):
    """encoder_fm's reference order, op by op (ops.attention_block_fm, ops.feed_forward_block_fm, ...)."""
    return ops._encoder_layer_by_layer(h, packed, norms, eps, lengths, HEADS, 0.3, int8_attention, activation_params)


@every_case
def test_encoder_is_the_layer_by_layer_ops_exactly(isa, pattern, lengths, n_threads, int8_attention):
    h, packed, norms, eps = encoder_case(pattern, lengths)
    with threads(n_threads), forced_isa(isa), output_sentinel(0x7F):
        whole = ops.encoder_fm(h, packed, norms, eps, lengths, HEADS, 0.3, int8_attention)
        assert ops.last_isa() == isa
        want = layer_by_layer(h, packed, norms, eps, lengths, int8_attention)
    assert torch.equal(whole, want)


def static_params(seed: int = 0) -> torch.Tensor:
    """[4 * LAYERS, 2]: a scale and zero point per Linear input (qkv, out, lin1, lin2) covering its usual range."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(LAYERS):
        for scale, zero_point in ((0.03, 128), (0.02, 120), (0.03, 128), (0.02, 12)):  # lin2: GELU outputs
            rows.append([scale * (1 + 0.2 * torch.rand(1, generator=g).item()), zero_point])
    return torch.tensor(rows, dtype=torch.float32)


@every_case
def test_static_encoder_is_the_layer_by_layer_ops_exactly(isa, pattern, lengths, n_threads, int8_attention):
    """With static codes (a calibrated model), depth first or (too few sequences for the threads) its own layer
    order: every Linear quantizing its input with its scale and zero point, as the Python runtime's layer path."""
    h, packed, norms, eps = encoder_case(pattern, lengths)
    params = static_params()
    with threads(n_threads), forced_isa(isa), output_sentinel(0x7F):
        whole = ops.encoder_fm(h, packed, norms, eps, lengths, HEADS, 0.3, int8_attention, params)
        assert ops.last_isa() == isa
        want = layer_by_layer(h, packed, norms, eps, lengths, int8_attention, params)
    assert torch.equal(whole, want)
    assert not torch.equal(whole, layer_by_layer(h, packed, norms, eps, lengths, int8_attention))  # not per token


def test_encoder_balances_unequal_sequences_over_threads():
    """Longest first, each thread taking the next free sequence: the order and split never change the result."""
    lengths = [1, 200, 3, 0, 90, 64, 7, 130]
    h, packed, norms, eps = encoder_case("4x1", lengths, seed=4)
    results = []
    for n_threads in (1, 2, 3):
        with threads(n_threads):
            results.append(ops.encoder_fm(h, packed, norms, eps, lengths, HEADS, 0.3))
    assert all(torch.equal(results[0], r) for r in results[1:])
    assert torch.equal(results[0], layer_by_layer(h, packed, norms, eps, lengths))


def test_encoder_opcheck():
    lengths = [7, 30, 2]
    h, packed, norms, eps = encoder_case("4x1", lengths)
    for int8_attention in (False, True):
        for params in (None, static_params()):
            torch.library.opcheck(torch.ops.fastdistilbert.encoder_fm.default,
                                  (h, packed, norms, eps, lengths, HEADS, 0.3, int8_attention, params))


def test_a_non_finite_feed_forward_activation_names_its_layer():
    # Layer 1's first feed-forward linear overflows to Inf; the depth-first path (balanced sequences) names the layer.
    lengths = [70, 70]
    h, packed, norms, eps = encoder_case("4x1", lengths)
    w, s, b = weight_with_zeros(FFN, DIM, 0.3, "4x1", 12)
    packed = packed[:6] + [ops.pack_weight(w, torch.full_like(s, 3e38), b, "4x1")] + packed[7:]
    for n_threads in (1, 2):
        with threads(n_threads), pytest.raises(RuntimeError, match="the first feed-forward linear's output of layer 1 "
                                                                   r"contains NaN or Inf \(in sequence [01]\)"):
            ops.encoder_fm(h, packed, norms, eps, lengths, HEADS, 0.3, False)


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("int8_attention", [False, True])
def test_tokens_split_across_threads_are_the_layer_by_layer_ops_exactly(isa, int8_attention):
    """Batches whose whole sequences cannot keep the threads busy (one sequence; unequal lengths) with at least 48
    tokens per thread run in token ranges across the threads (the attention split by sequence and head): the same
    result as the layer-by-layer ops, per-token or static codes, on 2 and 3 threads, with ranges of ragged widths,
    ranges across sequence ends and empty sequences."""
    for lengths in ([0, 97], [150, 0], [0, 161], [120, 30], [3, 90, 0, 7]):
        h, packed, norms, eps = encoder_case("4x1", lengths, seed=sum(lengths))
        for params in (None, static_params()):
            want = layer_by_layer(h, packed, norms, eps, lengths, int8_attention, params)
            for n_threads in (2, 3):
                with threads(n_threads), forced_isa(isa), output_sentinel(0x7F):
                    got = ops.encoder_fm(h, packed, norms, eps, lengths, HEADS, 0.3, int8_attention, params)
                assert torch.equal(got, want), (lengths, n_threads, params is not None)


def test_split_tokens_name_the_layer_and_sequences_of_a_non_finite_activation():
    # Only the encoder's own paths name the layer and the sequences (the layer-by-layer ops name their op), so these
    # messages also show that the batches took the token split on 2 threads.
    w, s, b = weight_with_zeros(FFN, DIM, 0.3, "4x1", 12)
    overflowing = ops.pack_weight(w, torch.full_like(s, 3e38), b, "4x1")
    for lengths, sequence in (([0, 150], "sequence 1"), ([120, 30], "sequence 0")):
        h, packed, norms, eps = encoder_case("4x1", lengths)
        packed = packed[:6] + [overflowing] + packed[7:]
        with threads(2), pytest.raises(RuntimeError, match="the first feed-forward linear's output of layer 1 "
                                                           rf"contains NaN or Inf \(in {sequence}\)"):
            ops.encoder_fm(h, packed, norms, eps, lengths, HEADS, 0.3, False)
    lengths = [0, 150]  # Q, K and V overflowing: the INT8 attention names the sequence
    h, packed, norms, eps = encoder_case("4x1", lengths)
    w, s, b = weight_with_zeros(3 * DIM, DIM, 0.3, "4x1", 13)
    packed = [ops.pack_weight(w, torch.full_like(s, 3e38), b, "4x1")] + packed[1:]
    with threads(2), pytest.raises(RuntimeError, match=r"Q, K or V \(or the INT8 attention scores\) of layer 0 "
                                                       r"contains NaN or Inf \(in sequence 1\)"):
        ops.encoder_fm(h, packed, norms, eps, lengths, HEADS, 0.3, True)
    lengths = [120, 30]  # ranges of tokens 0-79 and 80-149: the second runs across the end of sequence 0
    h, packed, norms, eps = encoder_case("4x1", lengths)
    for column, where in ((20, "sequence 0"), (100, "sequences 0-1"), (140, "sequences 0-1")):
        bad = h.clone()
        bad[3, column] = float("nan")
        with threads(2), pytest.raises(RuntimeError, match=rf"the input of layer 0 contains NaN or Inf \(in {where}\)"):
            ops.encoder_fm(bad, packed, norms, eps, lengths, HEADS, 0.3, False)


def test_encoder_bad_input():
    lengths = [7, 30, 2]
    h, packed, norms, eps = encoder_case("dense", lengths)

    def call(**kw):
        args = dict(h=h, packed=packed, norms=norms, eps=eps, lengths=lengths, n_heads=HEADS, scaling=0.3,
                    int8_attention=False)
        return ops.encoder_fm(**{**args, **kw})

    with pytest.raises(RuntimeError, match=r"packed must hold 4 weights per layer .* got 7"):
        call(packed=packed[:7])
    with pytest.raises(RuntimeError, match="norms must hold 4 tensors per layer .*: 8 for 2 layers, got 6"):
        call(norms=norms[:6])
    with pytest.raises(RuntimeError, match="eps must hold 2 values per layer: 4 for 2 layers, got 3"):
        call(eps=eps[:3])
    with pytest.raises(RuntimeError, match="layer 1's output projection is 136 x 40, not dim x dim = 40 x 40"):
        call(packed=packed[:5] + [packed[6]] + packed[6:])
    with pytest.raises(RuntimeError, match="layer 0's feed-forward weights are 40 x 136 and 136 x 40"):
        call(packed=packed[:2] + [packed[3], packed[2]] + packed[4:])
    with pytest.raises(RuntimeError, match="layer 0's QKV weight is 40 x 40, not 3 dim x dim = 120 x 40"):
        call(packed=[packed[1]] + packed[1:])
    with pytest.raises(RuntimeError, match="gamma and beta must be contiguous float32 \\[40\\]"):
        call(norms=norms[:3] + [norms[3][:39]] + norms[4:])
    with pytest.raises(RuntimeError, match="not divisible by n_heads = 3"):
        call(n_heads=3)
    with pytest.raises(RuntimeError, match="add up to 38 but h has 39 tokens"):
        call(lengths=[7, 30, 1])
    with pytest.raises(RuntimeError, match=r"h must be a contiguous float32 \[dim, tokens\] tensor"):
        call(h=h.double())
    with pytest.raises(RuntimeError, match=r"encoder_fm: packed weight is corrupt \(bad magic"):
        call(packed=[torch.zeros(256, dtype=torch.uint8)] + packed[1:])
    params = static_params()
    with pytest.raises(RuntimeError, match=r"activation_params must be a contiguous float32 \[4 \* layers, 2\] = "
                                           r"\[8, 2\] tensor .* got Float \[7, 2\]"):
        call(activation_params=params[:7])
    with pytest.raises(RuntimeError, match=r"activation_params must be .* got Double"):
        call(activation_params=params.double())
    for row, value, message in ((5, [0.0, 128.0], r"row 5 \(layer 1\) must hold a positive finite scale"),
                                (2, [float("nan"), 128.0], r"row 2 \(layer 0\)"),
                                (7, [0.03, 256.0], r"integer zero point in \[0, 255\], got 0.03, 256"),
                                (0, [0.03, 12.5], r"got 0.03, 12.5")):
        wrong = params.clone()
        wrong[row] = torch.tensor(value)
        with pytest.raises(RuntimeError, match=message):
            call(activation_params=wrong)
    bad = h.clone()
    bad[3, 20] = float("nan")
    for n_threads in (1, 2):
        for int8_attention in (False, True):
            for activation_params in (None, params):
                with threads(n_threads), pytest.raises(RuntimeError, match="NaN or Inf"):
                    call(h=bad, int8_attention=int8_attention, activation_params=activation_params)
