"""The amx variant's weight tile copy (csrc/packed_weight.h): its layout, when it is made, that every variant gives the
exact integer product with or without it (the amx variant then runs its two weight paths), the epilogues the amx
variant overlaps with its next tiles, and clear errors for a buffer that claims a copy it cannot have."""
from __future__ import annotations

import itertools

import pytest
import torch

from fastdistilbert import ops
from fastdistilbert import reference_ops as R
from test_kernels_ops import _with_checksum, run_python
from test_kernels_support import AVAILABLE_ISAS, act_params, codes, forced_isa, weight_with_zeros

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")

# (N, K, T): K below, at and past a whole 64-feature step, N not a multiple of the 32-row block, K = 4097 past the
# 4096 features the amx variant rearranges on its stack for a weight without the copy.
SHAPES = [(13, 17, 31), (7, 64, 5), (33, 65, 70), (100, 130, 37), (768, 768, 13), (65, 3072, 17), (9, 4097, 40)]


def tile_copy(packed: torch.Tensor) -> torch.Tensor:
    info = ops.packed_info(packed)
    n, k64 = info["N"], R.amx_tile_features(info["K"])
    blocks = -(-R._ceil4(n) // 32)
    start = info["off_amx_tiles"]
    return packed[start:start + blocks * 32 * k64].view(torch.int8).view(blocks, k64 // 64, 32, 64)


@pytest.mark.parametrize("shape", [(13, 64, 1), (100, 130, 1), (31, 200, 1)], ids=str)
def test_the_tile_copy_holds_32_row_blocks_of_64_features(shape):
    n, k, _ = shape
    weight_q, scale, bias = weight_with_zeros(n, k, 0.7, "dense", seed=n + k)
    tiles = tile_copy(ops.pack_weight(weight_q, scale, bias, "dense", amx_tiles=True))
    for b in range(tiles.shape[0]):
        for s in range(tiles.shape[1]):
            want = torch.zeros(32, 64, dtype=torch.int8)
            rows = weight_q[32 * b:32 * b + 32, 64 * s:64 * s + 64]
            want[:rows.shape[0], :rows.shape[1]] = rows
            assert torch.equal(tiles[b, s], want), (b, s)


def test_the_tile_copy_is_made_for_dense_weights_on_a_cpu_that_runs_amx():
    weight_q, scale, bias = weight_with_zeros(40, 130, 0.5, "dense", seed=3)
    default = ops.packed_info(ops.pack_weight(weight_q, scale, bias, "dense"))
    assert default["has_amx_tiles"] == ("amx" in AVAILABLE_ISAS) == ops.amx_available()
    assert not ops.packed_info(ops.pack_weight(weight_q, scale, bias, "dense", amx_tiles=False))["has_amx_tiles"]
    for pattern in ("4x1", "1x4"):
        assert not ops.packed_info(ops.pack_weight(weight_q, scale, bias, pattern))["has_amx_tiles"]
        with pytest.raises(ValueError, match="amx_tiles applies to dense weights only"):
            ops.pack_weight(weight_q, scale, bias, pattern, amx_tiles=True)
    narrow = ops.pack_weight(weight_q[:, :60], scale, bias, "dense", amx_tiles=True)  # no whole 64-feature step
    assert not ops.packed_info(narrow)["has_amx_tiles"]


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_isa_is_exact_with_and_without_the_tile_copy(isa, shape):
    n, k, t = shape
    weight_q, scale, bias = weight_with_zeros(n, k, 0.8, "dense", seed=n * 7 + k, zero_rows=(0, n - 1))
    x = codes(k, t, seed=t)
    want = (weight_q.to(torch.int64) @ x.to(torch.int64)).to(torch.int32)
    for amx_tiles in (True, False):
        packed = ops.pack_weight(weight_q, scale, bias, "dense", amx_tiles=amx_tiles)
        got = ops.quantized_linear_accumulators(x, packed, isa)
        assert torch.equal(got, want), f"{isa} {shape} amx_tiles={amx_tiles}"


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_epilogues_overlapping_the_next_tiles_match_ref_on_every_thread_count(isa):
    # The amx variant runs each 32-row x 32-token piece's epilogue inside the next piece's tile loop: several blocks
    # (N = 100), a feature tail past the last 64 (K = 200), one-tile pieces at the end of a chunk (T = 150), and the
    # row ranges of 1-3 threads, which split blocks; with the weight's tile copy and with the rearranging on the stack.
    n, k, t = 100, 200, 150
    weight_q, scale, bias = weight_with_zeros(n, k, 0.9, "dense", seed=11)
    x = codes(k, t, seed=2)
    x_scale, x_zp = act_params(t, seed=4)
    residual = torch.randn(n, t, generator=torch.Generator().manual_seed(5))
    epilogues = [dict(gelu=True), dict(residual=residual), dict(out_scale=0.05, out_zero_point=100)]
    before = torch.get_num_threads()
    try:
        for amx_tiles, kwargs in itertools.product((True, False), epilogues):
            packed = ops.pack_weight(weight_q, scale, bias, "dense", amx_tiles=amx_tiles)
            with forced_isa("ref"):
                want = ops.quantized_linear(x, x_scale, x_zp, packed, **kwargs)
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                with forced_isa(isa):
                    got = ops.quantized_linear(x, x_scale, x_zp, packed, **kwargs)
                assert torch.equal(got, want), f"{isa} {sorted(kwargs)} amx_tiles={amx_tiles} threads={threads}"
    finally:
        torch.set_num_threads(before)


def _flag_tiles(packed: torch.Tensor) -> torch.Tensor:
    flags = int.from_bytes(bytes(packed[48:56].tolist()), "little") | R.FLAG_AMX_TILES
    packed[48:56] = torch.tensor(list(flags.to_bytes(8, "little")), dtype=torch.uint8)
    return _with_checksum(packed)


def test_a_buffer_claiming_a_tile_copy_it_cannot_have_is_a_clear_error():
    weight_q, scale, bias = weight_with_zeros(13, 130, 0.5, "4x1", seed=5)
    x = codes(130, 9, seed=1)
    sparse = _flag_tiles(ops.pack_weight(weight_q, scale, bias, "4x1"))
    with pytest.raises(RuntimeError, match="AMX tiles flagged on a weight that cannot have them"):
        ops.quantized_linear_accumulators(x, sparse)
    dense = _flag_tiles(ops.pack_weight(weight_q, scale, bias, "dense", amx_tiles=False))  # offset still 0
    with pytest.raises(RuntimeError, match="section amx tiles out of bounds"):
        ops.quantized_linear_accumulators(x, dense)


def test_a_cpu_without_amx_falls_back_to_avx512vnni_with_the_same_result():
    if "avx512vnni" not in AVAILABLE_ISAS:
        pytest.skip("this CPU has no AVX-512 VNNI")
    code = ("import torch, fastdistilbert\nfrom fastdistilbert import ops\n"
            "w = torch.arange(-120, 120, dtype=torch.int8).reshape(3, 80)\n"
            "p = ops.pack_weight(w, torch.ones(3), None, 'dense')\n"
            "x = torch.arange(80 * 7, dtype=torch.uint8).reshape(80, 7)\n"
            "acc = ops.quantized_linear_accumulators(x, p)\n"
            "print(ops.packed_info(p)['has_amx_tiles'], fastdistilbert.active_isa(), ops.last_isa(), acc.sum().item())")
    hidden = run_python(code, {"FASTDISTILBERT_HIDE_CPU_FEATURES": "amx_tile"})
    visible = run_python(code, {})
    assert hidden.returncode == 0 and visible.returncode == 0, hidden.stderr + visible.stderr
    assert hidden.stdout.split()[:3] == ["False", "avx512vnni", "avx512vnni"]
    assert visible.stdout.split()[:3] == [str("amx" in AVAILABLE_ISAS), AVAILABLE_ISAS[0], AVAILABLE_ISAS[0]]
    assert hidden.stdout.split()[3] == visible.stdout.split()[3]
