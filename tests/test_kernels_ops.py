"""The op layer: forced-ISA proof, opcheck, torch.compile, per-token quantization, pattern detection,
packing round trips and clear errors on bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import fastdistilbert
from fastdistilbert import ops
from fastdistilbert import quantization as Q
from fastdistilbert import reference_ops as R
from fastdistilbert._extension import cpu_features
from test_kernels_support import AVAILABLE_ISAS, PATTERNS, act_params, codes, forced_isa, weight_with_zeros

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")

# CPU features each compiled variant needs; a new variant must be added here (and is then covered).
REQUIRED_FEATURES = {
    "amx": {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx2", "fma", "amx_tile", "amx_int8"},
    "avx512vnni": {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx2", "fma"},
    "avx512vnni_256": {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx2", "fma"},
    "avxvnni": {"avx_vnni", "avx2", "fma"},
    "avx2": {"avx2", "fma"},
    "ref": set(),
}


def small_case(pattern="dense", n=13, k=17, t=9):
    weight_q, scale, bias = weight_with_zeros(n, k, 0.5, pattern, seed=1)
    return ops.pack_weight(weight_q, scale, bias, pattern), codes(k, t, seed=2), act_params(t, seed=3)


def test_every_compiled_isa_is_tested_unless_the_cpu_lacks_it():
    features = set(cpu_features())
    assert set(fastdistilbert.compiled_isas()) == set(REQUIRED_FEATURES)
    for isa, needed in REQUIRED_FEATURES.items():
        assert (isa in AVAILABLE_ISAS) == (needed <= features), isa


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_forced_isa_is_the_one_running(isa):
    packed, x, (scale, zp) = small_case()
    with forced_isa(isa):
        ops.quantized_linear(x, scale, zp, packed)
        assert ops.last_isa() == isa
        ops.dynamic_quantized_linear(torch.randn(17, 5), packed)
        assert ops.last_isa() == isa


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_force_isa_environment_variable_runs_that_variant(isa):
    code = ("import torch, fastdistilbert\nfrom fastdistilbert import ops\n"
            "w = torch.ones(5, 6, dtype=torch.int8)\np = ops.pack_weight(w, torch.ones(5), None, '1x4')\n"
            "y = ops.quantized_linear(torch.full((6, 3), 2, dtype=torch.uint8), torch.ones(1), torch.zeros(1, dtype=torch.int32), p)\n"
            "print(ops.last_isa(), int(y.sum()))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FASTDISTILBERT_FORCE_ISA": isa},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == [isa, str(5 * 3 * 12)]


# Hidden features make any machine a CPU without AVX-512 VNNI and AVX-VNNI (FASTDISTILBERT_HIDE_CPU_FEATURES); the amx
# variant needs AVX-512 VNNI too.
NO_VNNI = {"FASTDISTILBERT_HIDE_CPU_FEATURES": "avx512_vnni,avx_vnni"}


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    """`code` in a child process with `env` on top of ours, minus any ISA forced for this process."""
    inherited = {k: v for k, v in os.environ.items() if k != "FASTDISTILBERT_FORCE_ISA"}
    return subprocess.run([sys.executable, "-c", code], env={**inherited, **env}, capture_output=True, text=True,
                          timeout=300)


def test_forcing_an_isa_the_cpu_lacks_is_a_clear_error():
    missing = [isa for isa in fastdistilbert.compiled_isas() if isa not in AVAILABLE_ISAS]
    if missing:  # a CPU that really lacks one: in this process too
        with pytest.raises(RuntimeError, match=f"ISA '{missing[0]}' is not supported by this CPU"):
            fastdistilbert.set_isa(missing[0])
    code = ("import fastdistilbert\ntry:\n    fastdistilbert.set_isa('avx512vnni')\n"
            "except RuntimeError as e:\n    print(e)\n")
    out = run_python(code, NO_VNNI)
    assert out.returncode == 0 and "ISA 'avx512vnni' is not supported by this CPU" in out.stdout, out.stderr
    out = run_python("import fastdistilbert; fastdistilbert.active_isa()",
                     {**NO_VNNI, "FASTDISTILBERT_FORCE_ISA": "avxvnni"})
    assert out.returncode != 0 and "ISA 'avxvnni' is not supported by this CPU" in out.stderr


def test_a_cpu_without_vnni_falls_back_to_avx2_with_the_same_result():
    if "avx2" not in AVAILABLE_ISAS:
        pytest.skip("this CPU has no AVX2")
    code = ("import torch, fastdistilbert\nfrom fastdistilbert import ops\n"
            "w = torch.arange(-60, 60, dtype=torch.int8).reshape(8, 15)\n"
            "p = ops.pack_weight(w, torch.ones(8), None, 'dense')\n"
            "x = torch.arange(15 * 7, dtype=torch.uint8).reshape(15, 7)\n"
            "acc = ops.quantized_linear_accumulators(x, p)\n"
            "print(fastdistilbert.available_isas(), fastdistilbert.active_isa(), ops.last_isa(), acc.sum().item())")
    hidden, visible = run_python(code, NO_VNNI), run_python(code, {})
    assert hidden.returncode == 0 and visible.returncode == 0, hidden.stderr + visible.stderr
    isas, active, ran, total = hidden.stdout.rsplit(maxsplit=3)
    assert isas == "['avx2', 'ref']" and active == ran == "avx2"
    assert total == visible.stdout.split()[-1]


def test_hiding_an_unknown_cpu_feature_is_a_clear_error():
    out = run_python("import fastdistilbert; fastdistilbert.available_isas()",
                     {"FASTDISTILBERT_HIDE_CPU_FEATURES": "avx512_vnni,sse9"})
    assert out.returncode != 0
    assert "FASTDISTILBERT_HIDE_CPU_FEATURES names an unknown feature 'sse9'" in out.stderr
    assert "avx512_vnni" in out.stderr  # the known names are listed


def test_unknown_isa_for_accumulators_is_a_clear_error():
    packed, x, _ = small_case()
    with pytest.raises(RuntimeError, match="unknown ISA 'sse9'"):
        ops.quantized_linear_accumulators(x, packed, "sse9")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_opcheck_every_op(pattern):
    packed, x, (scale, zp) = small_case(pattern)
    n, t = 13, x.shape[1]
    f = torch.ops.fastdistilbert
    torch.library.opcheck(f.quantized_linear.default, (x, scale, zp, packed, n),
                          dict(gelu=True, residual=torch.randn(n, t), out_scale=None, out_zero_point=None))
    torch.library.opcheck(f.quantized_linear.default, (x, scale, zp, packed, n),
                          dict(gelu=False, residual=None, out_scale=0.1, out_zero_point=3))
    torch.library.opcheck(f.dynamic_quantized_linear.default, (torch.randn(17, t), packed, n), dict(gelu=True))
    torch.library.opcheck(f.quantized_linear.out, (x, scale, zp, packed, n),
                          dict(gelu=True, residual=torch.randn(n, t), out=torch.empty(n, t)))
    torch.library.opcheck(f.quantized_linear.out, (x, scale, zp, packed, n),
                          dict(out_scale=0.1, out_zero_point=3, out=torch.empty(n, t, dtype=torch.uint8)))
    torch.library.opcheck(f.dynamic_quantized_linear.out, (torch.randn(17, t), packed, n),
                          dict(gelu=True, out=torch.empty(n, t)))
    torch.library.opcheck(f.quantize_per_token.default, (torch.randn(17, t),))
    torch.library.opcheck(f.quantized_linear_accumulators.default, (x, packed, n, ""))
    weight_q, w_scale, bias = weight_with_zeros(6, 10, 0.5, pattern, seed=4)
    torch.library.opcheck(f.pack_weight.default, (weight_q, w_scale, bias, pattern),
                          test_utils=("test_schema", "test_autograd_registration"))


class TwoLinears(torch.nn.Module):
    """A GELU FFN in the runtime's feature-major layout, chaining the ops as the model does."""

    def __init__(self, k=24, hidden=40):
        super().__init__()
        w1, s1, b1 = weight_with_zeros(hidden, k, 0.3, "4x1", seed=7)
        w2, s2, b2 = weight_with_zeros(k, hidden, 0.3, "1x4", seed=8)
        self.register_buffer("packed1", ops.pack_weight(w1, s1, b1, "4x1"))
        self.register_buffer("packed2", ops.pack_weight(w2, s2, b2, "1x4"))
        self.k, self.hidden = k, hidden

    def forward(self, x):
        h = ops.dynamic_quantized_linear(x, self.packed1, gelu=True, out_features=self.hidden)
        h_q, h_scale, h_zp = ops.quantize_per_token(h)
        return ops.quantized_linear(h_q, h_scale, h_zp, self.packed2, residual=x)


def test_torch_compile_fullgraph_matches_eager():
    module = TwoLinears()
    x = torch.randn(24, 11)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), module(x))
    x2 = torch.randn(24, 5)  # another token count: recompiles or runs dynamic, same result
    assert torch.equal(compiled(x2), module(x2))


class IntoBuffer(torch.nn.Module):
    """TwoLinears' first op into a tensor the module allocates, as a serving loop reuses one."""

    def __init__(self):
        super().__init__()
        self.inner = TwoLinears()

    def forward(self, x):
        h = torch.empty(self.inner.hidden, x.shape[1])
        ops.dynamic_quantized_linear(x, self.inner.packed1, gelu=True, out_features=self.inner.hidden, out=h)
        return h * 2


def test_torch_compile_fullgraph_of_the_out_form_matches_eager():
    module = IntoBuffer()
    x = torch.randn(24, 11)
    assert torch.equal(torch.compile(module, fullgraph=True, backend="aot_eager")(x), module(x))


def test_reference_fallback_honours_out(monkeypatch):
    """Without the extension the wrappers compute with reference_ops and copy into out, with the same checks."""
    packed, x, (scale, zp) = small_case()
    want = ops.quantized_linear(x, scale, zp, packed)
    monkeypatch.setattr(ops, "warn_if_unavailable", lambda: False)
    out = torch.empty_like(want)
    assert ops.quantized_linear(x, scale, zp, packed, out=out) is out and torch.equal(out, want)
    with pytest.raises(ValueError, match=r"quantized_linear: out must be a contiguous torch.float32 tensor of shape "
                                         r"\[13, 9\], got torch.float32 \[13, 9\] \(non-contiguous\)"):
        ops.quantized_linear(x, scale, zp, packed, out=torch.empty(9, 13).t())
    x_fp = torch.randn(17, 9)
    out = torch.empty(13, 9)
    assert ops.dynamic_quantized_linear(x_fp, packed, out=out) is out
    assert torch.equal(out, R.dynamic_quantized_linear(x_fp, packed))


def test_quantize_per_token_matches_shared_quantization_math():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(50, 40, generator=g) * 3
    x[:, 0] = 0.0              # constant zero token: scale 1
    x[:, 1] = 2.5              # constant positive token
    x[:, 2] = -torch.rand(50)  # all negative
    x[:, 3] = torch.rand(50)   # all positive
    q, scale, zp = ops.quantize_per_token(x)
    want_scale, want_zp = Q.dynamic_activation_params(x.t())
    assert torch.equal(scale, want_scale) and torch.equal(zp, want_zp)
    assert torch.equal(q, Q.quantize_activation(x.t(), want_scale, want_zp).t())
    assert all(torch.equal(a, b) for a, b in zip((q, scale, zp), R.quantize_per_token(x)))


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("tokens", [1, 15, 16, 17, 64, 100, 300])
def test_quantize_per_token_every_isa_every_tail(isa, tokens):
    """Vector bodies, scalar tails and the split across threads all give the shared math's codes, scales and zps."""
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(37, tokens, generator=g) * torch.rand(1, tokens, generator=g) * 8
    x[:, ::7] = 0.0                              # constant zero tokens: scale 1
    x[:, 1::5] = x[:, 1::5].abs() + 0.25         # all-positive tokens
    x[3, ::3] = torch.tensor(-0.0)               # signed zeros among the values
    with forced_isa(isa):
        q, scale, zp = ops.quantize_per_token(x)
    want_scale, want_zp = Q.dynamic_activation_params(x.t())
    assert torch.equal(scale, want_scale) and torch.equal(zp, want_zp)
    assert torch.equal(q, Q.quantize_activation(x.t(), want_scale, want_zp).t())


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("tokens", [40, 80])  # 80: also the four-vector path, whose packs saturate the codes
def test_quantize_per_token_extreme_magnitudes_every_isa(isa, tokens):
    """Tokens whose range is subnormal (1 / scale overflows to Inf, so x / scale is +-Inf or NaN) or near the float
    maximum (hi - lo overflows): every variant's vector path gives the shared math's codes, not a wrapped integer."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(29, tokens, generator=g)
    tiny = torch.rand(29, tokens, generator=g) * 1e-40
    x[:, 0::4] = tiny[:, 0::4]                      # positive subnormal range: x / scale = +Inf
    x[:, 1::4] = -tiny[:, 1::4]                     # negative subnormal range
    x[:, 2::4] = tiny[:, 2::4] - 0.5e-40            # both signs, subnormal
    x[:, 3::8] = torch.randn(29, tokens // 8, generator=g).sign() * 3e38  # hi - lo overflows to Inf
    x[0, 2] = 0.0                                   # an exact zero beside an overflowing 1 / scale: 0 * Inf = NaN
    with forced_isa(isa):
        q, scale, zp = ops.quantize_per_token(x)
    want_scale, want_zp = Q.dynamic_activation_params(x.t())
    assert torch.equal(scale, want_scale) and torch.equal(zp, want_zp)
    assert torch.equal(q, Q.quantize_activation(x.t(), want_scale, want_zp).t())
    assert all(torch.equal(a, b) for a, b in zip((q, scale, zp), R.quantize_per_token(x)))


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_quantize_per_token_refuses_non_finite_values_in_every_vector(isa):
    """NaN or Inf in any token of a multi-vector group, a single vector or the scalar tail is refused."""
    for token in (0, 9, 17, 40, 63, 70, 99, 105):  # 110 tokens: every kind on both 8- and 16-lane variants
        x = torch.randn(37, 110, generator=torch.Generator().manual_seed(token))
        x[11, token] = float("nan") if token % 2 else float("-inf")
        with forced_isa(isa), pytest.raises(RuntimeError, match="NaN or Inf"):
            ops.quantize_per_token(x)


def test_reference_fma_rounds_once():
    """reference_ops.fma32 (the kernels' fused multiply-add, which torch lacks) against exact rational arithmetic,
    including the case a float64 sum rounds wrong twice: a * b exactly halfway between two floats plus a tiny c."""
    from fractions import Fraction

    def nearest_float32(exact: Fraction) -> float:  # candidates around the float64 value, then the nearest-even
        base = torch.tensor([float(exact)], dtype=torch.float32)
        inf = torch.tensor([float("inf")])
        near = [base, torch.nextafter(base, -inf), torch.nextafter(base, inf)]
        return min((abs(Fraction(v.item()) - exact), int(v.view(torch.int32).item()) & 1, v.item()) for v in near)[2]

    a = torch.tensor([1 + 2 ** -12], dtype=torch.float32)  # a * a = 1 + 2^-11 + 2^-24: a float32 midpoint
    assert R.fma32(a, a, 2.0 ** -80).item() == 1 + 2 ** -11 + 2 ** -23  # above the midpoint: rounds up
    assert R.fma32(a, a, -2.0 ** -80).item() == 1 + 2 ** -11  # below it: rounds down
    assert R.fma32(a, a, 0.0).item() == 1 + 2 ** -11  # on it: to even
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(3000, generator=g) * 4, torch.randn(3000, generator=g) * 4
    c = (torch.randn(3000, generator=g) * 4).tolist()
    c[::3] = (-(x[::3].double() * y[::3].double()) * (1 + 1e-7)).float().tolist()  # heavy cancellation
    got = [R.fma32(x[i:i + 1], y[i:i + 1], c[i]).item() for i in range(3000)]
    want = [nearest_float32(Fraction(x[i].item()) * Fraction(y[i].item()) + Fraction(c[i])) for i in range(3000)]
    assert got == want


def test_gelu_approximation_error():
    x = torch.linspace(-6, 6, 1200001, dtype=torch.float32)
    for y in (x, x * 5):  # the fit's error (1e-8) plus fp32 rounding, which grows with |y|: 2.0e-7 max(1, |y|)
        gelu_err = (R.gelu(y).double() - torch.nn.functional.gelu(y.double())).abs()
        relative = (gelu_err / y.double().abs().clamp(min=1.0)).max().item()
        assert relative <= 2.5e-7, relative
    tiny, big = torch.tensor([1e-30]), torch.tensor([60.0, -60.0])  # past the clamp: y, and ~0 within the bound
    assert torch.equal(R.gelu(tiny), tiny * 0.5) and R.gelu(big)[0] == 60.0 and R.gelu(big)[1].abs() <= 2.5e-7 * 60


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pack_round_trip_and_header(pattern):
    for n, k in [(1, 1), (5, 7), (13, 64), (64, 13)]:
        weight_q, scale, bias = weight_with_zeros(n, k, 0.4, pattern, seed=n + k)
        for b in (bias, None):
            packed = ops.pack_weight(weight_q, scale, b, pattern)
            info = ops.packed_info(packed)
            assert (info["pattern"], info["N"], info["K"], info["has_bias"]) == (pattern, n, k, b is not None)
            got_w, got_s, got_b, got_p = R.unpack_weight(packed)
            assert torch.equal(got_w, weight_q) and torch.equal(got_s, scale) and got_p == pattern
            assert (got_b is None) if b is None else torch.equal(got_b, b)


@pytest.mark.parametrize("isa", [None, "avx512vnni", "amx"])
def test_detect_pattern(isa):
    w41, _, _ = weight_with_zeros(64, 64, 0.2, "4x1", seed=1)
    w14, _, _ = weight_with_zeros(64, 64, 0.15, "1x4", seed=2)
    unstructured, _, _ = weight_with_zeros(64, 64, 0.5, "dense", seed=3)
    assert ops.detect_pattern(w41, isa).pattern == "4x1"
    assert ops.detect_pattern(w14, isa).pattern == "1x4"
    assert ops.detect_pattern(unstructured, isa).pattern == "dense"
    assert ops.detect_pattern(torch.randn(8, 8), isa).pattern == "dense"
    info = ops.detect_pattern(w41, isa)
    assert info.block_density == info.densities["4x1"] and info.densities["4x1"] < info.densities["1x4"]


def test_detect_pattern_on_amx_prefers_dense_tiles_at_moderate_sparsity():
    # (4,1) blocks at density 0.375: measured on the model, the amx variant's dense tiles win there, the vector
    # kernels' dense does not. Without a variant the active one decides.
    weight = torch.randn(64, 64)
    weight.view(16, 4, 64)[:, :, torch.arange(64) % 8 >= 3] = 0
    assert ops.detect_pattern(weight, "avx512vnni").pattern == "4x1"
    assert ops.detect_pattern(weight, "amx").pattern == "dense"
    assert ops.detect_pattern(weight).pattern == ops.detect_pattern(weight, ops.active_isa()).pattern
    assert set(fastdistilbert._extension.compiled_isas()) == set(ops.KERNEL_VARIANTS)
    with pytest.raises(ValueError, match="unknown kernel variant 'avx512'"):
        ops.detect_pattern(weight, "avx512")


# ---- bad input -----------------------------------------------------------------------------------

def test_bad_activations_are_clear_errors():
    packed, x, (scale, zp) = small_case()
    with pytest.raises(RuntimeError, match="x_q must be uint8 or int8"):
        ops.quantized_linear(x.float(), scale, zp, packed)
    with pytest.raises(RuntimeError, match="features .* K = 17"):
        ops.quantized_linear(codes(16, 9, seed=1), scale, zp, packed)
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.quantized_linear(codes(9, 17, seed=1).t(), scale, zp, packed)
    with pytest.raises(RuntimeError, match="x_scale must have shape"):
        ops.quantized_linear(x, scale[:4], zp, packed)
    with pytest.raises(RuntimeError, match="x_zero_point must be Int"):
        ops.quantized_linear(x, scale, zp.long(), packed)
    with pytest.raises(RuntimeError, match="int8 activations need zero point 0"):
        ops.quantized_linear(codes(17, 9, seed=1, dtype=torch.int8), scale, zp + 1, packed)
    with pytest.raises(RuntimeError, match="residual must have shape"):
        ops.quantized_linear(x, scale, zp, packed, residual=torch.zeros(3, 9), out_features=13)
    with pytest.raises(RuntimeError, match="x must be float32"):
        ops.dynamic_quantized_linear(x, packed)
    with pytest.raises(RuntimeError, match="out_scale must be a positive"):
        ops.quantized_linear(x, scale, zp, packed, out_scale=0.0)


def _with_checksum(raw: torch.Tensor) -> torch.Tensor:
    header = bytes(raw[:124].tolist())
    raw[124:128] = torch.tensor(list(R._fnv1a(header).to_bytes(4, "little")), dtype=torch.uint8)
    return raw


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: p.index_fill_(0, torch.tensor([0]), 0), "bad magic"),
    (lambda p: p.index_fill_(0, torch.tensor([17]), 9), "checksum mismatch"),
    (lambda p: _with_checksum(p.index_fill_(0, torch.tensor([8]), 2)), "format version 2"),
    (lambda p: p[:100].clone(), "shorter than its header"),
    (lambda p: p[:-64].clone(), "header says"),
    (lambda p: p.float(), "1-D uint8"),
])
def test_corrupt_or_wrong_version_packed_buffer_is_a_clear_error(corrupt, message):
    for pattern in PATTERNS:
        packed, x, (scale, zp) = small_case(pattern)
        bad = corrupt(packed.clone())
        with pytest.raises(RuntimeError, match=message):
            ops.quantized_linear(x, scale, zp, bad, out_features=13)
        with pytest.raises(ValueError):
            ops.packed_info(bad if bad.dtype == torch.uint8 else bad.to(torch.uint8).view(-1)[:10])


def test_corrupt_sparse_indices_are_caught():
    packed, x, (scale, zp) = small_case("1x4")
    info = ops.packed_info(packed)
    bad = packed.clone()
    bad[info["off_idx"]:info["off_idx"] + 4] = torch.tensor([0xFF, 0xFF, 0, 0], dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="index out of range"):
        ops.quantized_linear(x, scale, zp, bad)


@pytest.mark.parametrize("pattern", ["1x4", "4x1"])
def test_sparse_indices_are_checked_again_after_any_change(pattern):
    """Indices are checked once per buffer version: an in-place write after a good call, a corrupt buffer at the
    address of a checked one, and an inference tensor changed in place are all caught."""
    packed, x, (scale, zp) = small_case(pattern)
    off = ops.packed_info(packed)["off_idx"]
    corrupt_index = torch.tensor([0xFF, 0xFF, 0, 0], dtype=torch.uint8)
    good = packed.clone()
    ops.quantized_linear(x, scale, zp, good)
    good[off:off + 4] = corrupt_index
    with pytest.raises(RuntimeError, match="index out of range"):
        ops.quantized_linear(x, scale, zp, good)
    # A new tensor over the same memory (same address, size and version as a checked one, another storage).
    memory = bytearray(packed.numpy().tobytes())
    ops.quantized_linear(x, scale, zp, torch.frombuffer(memory, dtype=torch.uint8))
    memory[off:off + 4] = bytes(corrupt_index.tolist())
    with pytest.raises(RuntimeError, match="index out of range"):
        ops.quantized_linear(x, scale, zp, torch.frombuffer(memory, dtype=torch.uint8))
    with torch.inference_mode():
        frozen = packed.clone()
        ops.quantized_linear(x, scale, zp, frozen)
        frozen[off:off + 4] = corrupt_index
        with pytest.raises(RuntimeError, match="index out of range"):
            ops.quantized_linear(x, scale, zp, frozen)


def test_bad_pack_inputs_are_clear_errors():
    w = torch.ones(4, 4, dtype=torch.int8)
    with pytest.raises(ValueError, match="unknown pattern '2x2'"):
        ops.pack_weight(w, torch.ones(4), None, "2x2")
    with pytest.raises(ValueError, match="weight_q must be a non-empty 2-D int8"):
        ops.pack_weight(w.float(), torch.ones(4), None, "dense")
    with pytest.raises(ValueError, match="weight_scale must be float32"):
        ops.pack_weight(w, torch.ones(3), None, "dense")
    with pytest.raises(ValueError, match="-128"):
        ops.pack_weight(torch.full((4, 4), -128, dtype=torch.int8), torch.ones(4), None, "dense")


def test_attention_fm_matches_reference_per_sequence_and_head():
    """Packed sequences of unequal lengths (one empty): the op equals softmax((Q^T K) * scale) V^T per sequence."""
    g = torch.Generator().manual_seed(11)
    dim, heads, lengths = 24, 3, [5, 0, 9, 1, 9, 70]
    qkv = torch.randn(3 * dim, sum(lengths), generator=g)
    got = ops.attention_fm(qkv, lengths, heads, 0.35)
    torch.testing.assert_close(got, R.attention_fm(qkv, lengths, heads, 0.35), rtol=1e-5, atol=1e-6)
    with torch.inference_mode():  # worker threads must not trip over the caller's inference mode
        torch.testing.assert_close(ops.attention_fm(qkv, lengths, heads, 0.35), got, rtol=0, atol=0)
    torch.library.opcheck(torch.ops.fastdistilbert.attention_fm.default, (qkv, lengths, heads, 0.35))


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("dim, heads", [(24, 3), (768, 12), (20, 2)])  # head sizes 8, 64 and 10 (feature tail)
def test_attention_fm_is_identical_on_every_isa(isa, dim, heads):
    """The fp32 attention kernel (FMA chains in a fixed order, the shared softmax) gives the scalar reference's
    bits on every variant, for sequence lengths around the register tiles (6, 4 or 3 rows x 4 vectors) and the 64-token
    panels."""
    g = torch.Generator().manual_seed(dim)
    lengths = [1, 3, 6, 12, 16, 31, 64, 65, 130] if dim < 100 else [128, 67]
    qkv = torch.randn(3 * dim, sum(lengths), generator=g) * 3
    with forced_isa("ref"):
        want = ops.attention_fm(qkv, lengths, heads, 0.125)
    with forced_isa(isa):
        got = ops.attention_fm(qkv, lengths, heads, 0.125)
    assert torch.equal(got, want)
    torch.testing.assert_close(got, R.attention_fm(qkv, lengths, heads, 0.125), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("dim", [24, 18])  # head sizes 8 and 6: K^T's tiles then end in a partial group of 4
# Tails of every tile and vector, more than 64 keys; a single sequence (its heads read in place, not copied out).
@pytest.mark.parametrize("lengths", [[5, 0, 9, 1, 19, 33, 70], [0, 70, 0]], ids=["packed", "single"])
def test_attention_int8_fm_is_its_reference_exactly_on_every_isa(isa, dim, lengths):
    """Integer-exact GEMMs and the same fp32 steps: bit-identical to the step-by-step reference, per ISA."""
    g = torch.Generator().manual_seed(12)
    heads = 3
    qkv = torch.randn(3 * dim, sum(lengths), generator=g) * 2
    qkv[dim:2 * dim, 3] = 0.0  # an all-zero key column: scale 1, codes 0
    with forced_isa(isa):
        got = ops.attention_int8_fm(qkv, lengths, heads, 0.35)
    assert torch.equal(got, R.attention_int8_fm(qkv, lengths, heads, 0.35))
    fp32 = R.attention_fm(qkv, lengths, heads, 0.35)
    relative = ((got - fp32).norm() / fp32.norm()).item()
    assert relative <= 0.02, relative  # INT8 rounding, not a different attention


@pytest.mark.parametrize("row, value", [(3, float("inf")), (30, float("nan")), (60, float("-inf"))])  # Q, K, V
def test_attention_int8_fm_opcheck_and_non_finite_input(row, value):
    qkv = torch.randn(72, 12)
    torch.library.opcheck(torch.ops.fastdistilbert.attention_int8_fm.default, (qkv, [5, 7], 3, 0.5))
    qkv[row, 4] = value
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        ops.attention_int8_fm(qkv, [5, 7], 3, 0.5)


def test_attention_int8_fm_refuses_overflowing_scores():
    qkv = torch.randn(72, 12, generator=torch.Generator().manual_seed(3))
    qkv[:48, :5] *= 1e25  # finite Q and K whose products overflow fp32
    with pytest.raises(RuntimeError, match="overflow"):
        ops.attention_int8_fm(qkv, [5, 7], 3, 0.5)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (33, 65), (64, 32), (130, 7), (1000, 768), (0, 4)])
def test_transpose_fm_is_the_contiguous_transpose(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[0]))
    assert torch.equal(ops.transpose_fm(x), x.t().contiguous())


def test_transpose_fm_opcheck_and_bad_input():
    torch.library.opcheck(torch.ops.fastdistilbert.transpose_fm.default, (torch.randn(7, 40),))
    with pytest.raises(RuntimeError, match="float32"):
        ops.transpose_fm(torch.randn(4, 4).double())
    with pytest.raises(RuntimeError, match="contiguous 2-D"):
        ops.transpose_fm(torch.randn(4, 6).t())
    with pytest.raises(RuntimeError, match="contiguous 2-D"):
        ops.transpose_fm(torch.randn(2, 3, 4))


@pytest.mark.parametrize("op", ["attention_fm", "attention_int8_fm"])
@pytest.mark.parametrize("qkv, lengths, heads, match", [
    (torch.randn(72, 10).double(), [10], 3, "float32"),
    (torch.randn(70, 10), [10], 3, "divisible by n_heads"),
    (torch.randn(72, 10), [4, 5], 3, "add up to 9"),
    (torch.randn(72, 10), [11, -1], 3, ">= 0"),
    (torch.randn(72, 10), [10], 0, "positive"),
])
def test_attention_bad_input(op, qkv, lengths, heads, match):
    with pytest.raises(RuntimeError, match=match):
        getattr(ops, op)(qkv, lengths, heads, 0.5)


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("shape", [(1,), (37, 5), (384, 130)])
def test_quantize_per_tensor_is_the_shared_math_exactly(isa, shape):
    """The static activation path's vectorized codes equal quantization.quantize_activation, tails included."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[0])) * 6
    scale, zp = torch.tensor(0.037), torch.tensor(131, dtype=torch.int32)
    with forced_isa(isa):
        got = ops.quantize_per_tensor(x, float(scale), int(zp))
    assert torch.equal(got, Q.quantize_activation(x, scale, zp))


def test_quantize_per_tensor_bad_input():
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        ops.quantize_per_tensor(torch.tensor([1.0, float("nan")]), 0.1, 3)
    with pytest.raises(RuntimeError, match="scale must be a positive"):
        ops.quantize_per_tensor(torch.ones(3), 0.0, 3)
    with pytest.raises(RuntimeError, match="zero_point must be in"):
        ops.quantize_per_tensor(torch.ones(3), 0.1, 300)
    torch.library.opcheck(torch.ops.fastdistilbert.quantize_per_tensor_fm.default, (torch.randn(8, 3), 0.1, 3))
