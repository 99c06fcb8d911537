"""Quantization math shared by the runtime, the reference ops and quantization-aware training.

One module on purpose: a QAT model and the INT8 model exported from it must agree exactly on every
integer value, so both call these functions. The C++ kernels implement the same formulas in the
same fp32 operation order (documented in csrc/kernels.h) and tests compare them exactly.

Scheme
- Weights: int8, symmetric, per output channel, range [-127, 127] (never -128, so negating a weight
  never overflows and AVX2's widening path stays exact).
      scale_w[n] = max(|W[n, :]|) / 127       (1.0 for an all-zero row)
      W_q[n, k]  = clamp(round(W[n, k] / scale_w[n]), -127, 127)
- Activations: uint8, asymmetric, with a scale and a zero point that are either per token (dynamic,
  computed from the row being quantized) or per tensor (static: calibrated or learned in QAT).
      lo = min(min(x), 0), hi = max(max(x), 0)     (the range always contains 0)
      scale_x = (hi - lo) / 255                  (1.0 when hi == lo)
      zp_x    = clamp(round(-lo / scale_x), 0, 255)
      x_q     = clamp(round(x * (1 / scale_x)) + zp_x, 0, 255)
  (one fp32 reciprocal per token or tensor, then a multiply per element: a division per element was a
  third of the kernels' quantization time)
- `round` is round-half-to-even (torch.round, C's nearbyint in the default rounding mode); every
  step is fp32.
- Integer product: acc[t, n] = sum_k x_q[t, k] * W_q[n, k] (int32, exact);
      y[t, n] = (acc[t, n] - zp_x[t] * wsum[n]) * (scale_x[t] * scale_w[n]) + bias[n]
  with wsum[n] = sum_k W_q[n, k] precomputed at pack time; the subtraction is done in int32.
"""
from __future__ import annotations

import torch

WEIGHT_QMAX = 127
ACT_QMAX = 255


def weight_scale(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric scale of an fp32 weight `[out, in]` (fp32 `[out]`)."""
    amax = weight.detach().abs().amax(dim=1).to(torch.float32)
    scale = amax / WEIGHT_QMAX
    return torch.where(amax > 0, scale, torch.ones_like(scale))


def quantize_weight(weight: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 `[out, in]` weight and its fp32 per-channel scale `[out]`."""
    if scale is None:
        scale = weight_scale(weight)
    q = torch.clamp(torch.round(weight.to(torch.float32) / scale[:, None]), -WEIGHT_QMAX, WEIGHT_QMAX)
    return q.to(torch.int8), scale


def dequantize_weight(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.to(torch.float32) * scale[:, None]


def activation_params(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (fp32) and zero point (int32) for a u8 range covering [lo, hi] and 0."""
    lo = torch.clamp(lo.to(torch.float32), max=0.0)
    hi = torch.clamp(hi.to(torch.float32), min=0.0)
    scale = (hi - lo) / ACT_QMAX
    scale = torch.where(hi > lo, scale, torch.ones_like(scale))
    zero_point = torch.clamp(torch.round(-lo / scale), 0, ACT_QMAX).to(torch.int32)
    return scale, zero_point


def dynamic_activation_params(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (last dim reduced) scale and zero point, shapes `x.shape[:-1]`."""
    return activation_params(x.amin(dim=-1), x.amax(dim=-1))


def reciprocal(scale: torch.Tensor) -> torch.Tensor:
    """1 / scale in fp32 (correctly rounded, as the kernels' 1.0f / s)."""
    return torch.ones_like(scale, dtype=torch.float32) / scale.to(torch.float32)


def quantize_activation(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """uint8 codes of fp32 `x`; `scale`/`zero_point` are scalars (per tensor) or `x.shape[:-1]` (per token)."""
    if scale.dim() > 0:
        scale = scale.unsqueeze(-1)
        zero_point = zero_point.unsqueeze(-1)
    q = torch.round(x.to(torch.float32) * reciprocal(scale)) + zero_point.to(torch.float32)
    return torch.clamp(q, 0, ACT_QMAX).to(torch.uint8)


def dequantize_activation(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    if scale.dim() > 0:
        scale = scale.unsqueeze(-1)
        zero_point = zero_point.unsqueeze(-1)
    return (q.to(torch.int32) - zero_point.to(torch.int32)).to(torch.float32) * scale


class _RoundSTE(torch.autograd.Function):
    """round() whose gradient is the identity (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """Quantize-dequantize of a weight with the runtime's exact formula; straight-through gradient."""
    scale = weight_scale(weight)
    q = torch.clamp(_RoundSTE.apply(weight / scale[:, None]), -WEIGHT_QMAX, WEIGHT_QMAX)
    return q * scale[:, None]


def fake_quantize_activation(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """Quantize-dequantize of an activation with the runtime's exact formula; straight-through gradient
    inside the representable range, zero outside (as torch's fake_quantize)."""
    if scale.dim() > 0:
        scale = scale.unsqueeze(-1)
        zero_point = zero_point.unsqueeze(-1)
    q = _RoundSTE.apply(x * reciprocal(scale)) + zero_point.to(x.dtype)
    q = torch.clamp(q, 0, ACT_QMAX)
    return (q - zero_point.to(x.dtype)) * scale
