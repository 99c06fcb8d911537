"""Bad-input catalogue, kernel ops: zero tokens, meta tensors, NaN/Inf in fp32 inputs, out-of-range parameters.

(tests/test_kernels_ops.py holds the earlier op cases: activation dtype/shape/contiguity, scale and zero-point
dtypes, residual shape, out_scale, corrupt and other-version packed buffers, bad sparse indices, bad pack inputs,
unknown and unsupported ISAs.) Cases that reach C++ with degenerate shapes run in a subprocess, so a crash fails
the test instead of killing the run."""
import subprocess
import sys
import textwrap

import pytest
import torch

from fastdistilbert import ops
from test_kernels_support import AVAILABLE_ISAS, PATTERNS, act_params, codes, forced_isa, weight_with_zeros

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")

N, K, T = 13, 17, 9


def packed(pattern="dense", bias=True):
    weight_q, scale, b = weight_with_zeros(N, K, 0.5, pattern, seed=1)
    return ops.pack_weight(weight_q, scale, b if bias else None, pattern)


def test_zero_tokens_give_empty_outputs_on_every_isa():
    """Documented: T = 0 tokens give [N, 0] outputs from every op and variant (checked in a child process)."""
    code = textwrap.dedent(f"""
        import torch, fastdistilbert
        from fastdistilbert import ops
        from test_kernels_support import weight_with_zeros
        for isa in {AVAILABLE_ISAS!r}:
            fastdistilbert.set_isa(isa)
            for pattern in {PATTERNS!r}:
                w, s, b = weight_with_zeros({N}, {K}, 0.5, pattern, seed=1)
                p = ops.pack_weight(w, s, b, pattern)
                x_q = torch.zeros({K}, 0, dtype=torch.uint8)
                shapes = [ops.quantized_linear(x_q, torch.ones(1), torch.zeros(1, dtype=torch.int32), p).shape,
                          ops.quantized_linear(x_q, torch.ones(0), torch.zeros(0, dtype=torch.int32), p,
                                               out_scale=0.1, out_zero_point=3).shape,
                          ops.dynamic_quantized_linear(torch.zeros({K}, 0), p, gelu=True,
                                                       residual=torch.zeros({N}, 0)).shape,
                          ops.quantized_linear_accumulators(x_q, p, isa).shape,
                          ops.quantize_per_token(torch.zeros({K}, 0))[0].shape]
                assert all(tuple(s) in (({N}, 0), ({K}, 0)) for s in shapes), (isa, pattern, shapes)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=__import__("pathlib").Path(__file__).parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_meta_tensors_propagate_shapes():
    """Documented: meta activations go through the fake kernels (shape inference, as for any torch op)."""
    p = packed()
    x_q = torch.empty(K, T, dtype=torch.uint8, device="meta")
    y = ops.quantized_linear(x_q, torch.ones(1), torch.zeros(1, dtype=torch.int32), p)
    assert y.device.type == "meta" and y.shape == (N, T) and y.dtype == torch.float32
    y = ops.dynamic_quantized_linear(torch.empty(K, T, device="meta"), p, out_features=N)
    assert y.device.type == "meta" and y.shape == (N, T)


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_nan_and_inf_in_the_residual_stay_where_they_are(isa):
    """Documented: a non-finite residual element gives a non-finite output there and nowhere else."""
    p, x = packed("4x1"), torch.randn(K, T, generator=torch.Generator().manual_seed(2))
    residual = torch.zeros(N, T)
    residual[3, 4], residual[7, 0] = float("nan"), float("inf")
    with forced_isa(isa):
        y = ops.dynamic_quantized_linear(x, p, residual=residual)
    assert torch.isnan(y[3, 4]) and y[7, 0] == float("inf")
    finite = torch.ones(N, T, dtype=torch.bool)
    finite[3, 4] = finite[7, 0] = False
    assert torch.isfinite(y[finite]).all()


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")], ids=["inf", "-inf", "nan"])
def test_non_finite_activation_is_refused_by_dynamic_quantization(isa, value):
    """A non-finite activation has no quantization range: a clear error names it, on every ISA."""
    p, x = packed("1x4"), torch.randn(K, T, generator=torch.Generator().manual_seed(3))
    x[5, 2] = value
    with forced_isa(isa), pytest.raises(RuntimeError, match="NaN or Inf"):
        ops.dynamic_quantized_linear(x, p)


def test_nan_in_an_activation_is_not_silently_dropped():
    p, x = packed(), torch.randn(K, T, generator=torch.Generator().manual_seed(4))
    x[5, 2] = float("nan")
    try:
        y = ops.dynamic_quantized_linear(x, p)
    except RuntimeError as exc:  # a clear error is as good as propagation
        assert "NaN" in str(exc) or "finite" in str(exc)
        return
    assert torch.isnan(y[:, 2]).all()


@pytest.mark.parametrize("bad", [float("nan"), -1.0])
def test_non_finite_or_negative_scales_are_refused(bad):
    weight_q, scale, bias = weight_with_zeros(N, K, 0.5, "dense", seed=1)
    with pytest.raises((RuntimeError, ValueError), match="scale"):
        ops.quantized_linear(codes(K, T, seed=1), torch.tensor([bad]), torch.zeros(1, dtype=torch.int32), packed())
    with pytest.raises((RuntimeError, ValueError), match="scale"):
        ops.pack_weight(weight_q, scale.index_fill(0, torch.tensor([0]), bad), bias, "dense")


@pytest.mark.parametrize("kwargs, message", [
    (dict(x_zero_point=torch.tensor([300], dtype=torch.int32)), r"x_zero_point must be in \[0, 255\]"),
    (dict(out_scale=0.1, out_zero_point=300), r"out_zero_point must be in \[0, 255\], got 300"),
    (dict(out_features=5), "out_features=5 but the packed weight has N = 13"),
    (dict(residual=torch.zeros(N, T, dtype=torch.float64)), "residual must be float32, got Double"),
], ids=["x-zero-point", "out-zero-point", "out-features", "residual-dtype"])
def test_out_of_range_op_parameters(kwargs, message):
    scale, zp = act_params(1, seed=5, per_token=False)
    zp = kwargs.pop("x_zero_point", zp)
    with pytest.raises(RuntimeError, match=message):
        ops.quantized_linear(codes(K, T, seed=6), scale, zp, packed(), **kwargs)


def bad_outs(x, weight):
    """(out, out_scale, message) that the linear ops refuse."""
    return [
        (torch.zeros(N, T + 1), None, r"out must have shape \[13, 9\] \(out_features x tokens\), got \[13, 10\]"),
        (torch.zeros(N, T, dtype=torch.float64), None, r"out must be Float \(no out_scale: fp32 output\), got Double"),
        (torch.zeros(N, T), 0.1, r"out must be Byte \(out_scale requantizes the output\), got Float"),
        (torch.zeros(T, N).t(), None, "out must be contiguous"),
        (x.view(-1)[: N * T].view(N, T), 0.1, "out must not share memory with the activations"),  # K > N
        (weight[: N * T].view(N, T), 0.1, "out must not share memory with the packed weight"),
    ]


def test_bad_out_tensors_are_refused_and_left_untouched():
    x, weight = codes(K, T, seed=6), packed()
    scale, zp = act_params(T, seed=5)
    for out, out_scale, message in bad_outs(x, weight):
        before = out.clone()
        with pytest.raises(RuntimeError, match=message):
            ops.quantized_linear(x, scale, zp, weight, out=out, out_scale=out_scale)
        assert torch.equal(out, before), message
    # The residual may be the output itself, not a part of it.
    wide = torch.randn(N + 1, T)
    with pytest.raises(RuntimeError, match="out must be the residual itself or not overlap it, got a partial overlap"):
        ops.quantized_linear(x, scale, zp, weight, residual=wide[1:], out=wide[:-1])
    # A bad argument elsewhere leaves out as it was too.
    out = torch.full((N, T), 7, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="out_scale must be a positive finite number"):
        ops.quantized_linear(x, scale, zp, weight, out=out, out_scale=-1.0)
    assert (out == 7).all()
    with pytest.raises(RuntimeError, match=r"out must have shape \[13, 9\]"):
        ops.dynamic_quantized_linear(torch.randn(K, T), weight, out=torch.zeros(N, T - 1))
