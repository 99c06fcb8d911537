"""QuantizedLinear: the INT8 replacement of an encoder nn.Linear, with HF-compatible state-dict keys.

Stored (portable, ISA-independent; PITFALLS "checkpoint layout"):
    weight            int8 [out, in]   s8 symmetric per output channel, zeros where pruned
    weight_scale      fp32 [out]
    bias              fp32 [out]
    input_scale       fp32 []          only for static activation quantization
    input_zero_point  int32 []         only for static activation quantization
The kernel layout (a packed buffer for the active ISA and the detected block pattern) is built from these
at load time and rebuilt whenever `weight` changes; it is never saved.
"""
from __future__ import annotations

import torch
from torch import nn

from . import quantization as Q


def exact_int_matmul(x_q: torch.Tensor, weight_q: torch.Tensor) -> torch.Tensor:
    """int32 `x_q @ weight_q.T` for u8 x s8 codes, exact: every partial sum of u8*s8 products over
    K <= 2**20 is an integer below 2**53, so float64 GEMM represents it without rounding."""
    return torch.matmul(x_q.to(torch.float64), weight_q.to(torch.float64).t()).to(torch.int32)


class QuantizedLinear(nn.Module):
    """y = dequant(quant(x) @ W_q^T) + bias, with the arithmetic of `fastdistilbert.quantization`."""

    def __init__(self, in_features: int, out_features: int, static_activations: bool = False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=torch.float32), requires_grad=False)
        if static_activations:
            self.register_buffer("input_scale", torch.ones((), dtype=torch.float32))
            self.register_buffer("input_zero_point", torch.zeros((), dtype=torch.int32))
        else:
            self.input_scale = None
            self.input_zero_point = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, static_activations: bool = False,
                    input_scale: float | None = None, input_zero_point: int | None = None) -> "QuantizedLinear":
        """Quantizes an fp32 nn.Linear with the shared per-channel weight formula."""
        module = cls(linear.in_features, linear.out_features, static_activations=static_activations)
        weight_q, scale = Q.quantize_weight(linear.weight.detach())
        module.weight.copy_(weight_q)
        module.weight_scale.copy_(scale)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        if static_activations:
            if input_scale is None or input_zero_point is None:
                raise ValueError("static activation quantization needs input_scale and input_zero_point")
            module.set_static_activation(input_scale, input_zero_point)
        return module

    def set_static_activation(self, scale: float, zero_point: int) -> None:
        """Switches to (or updates) static per-tensor activation quantization."""
        if not scale > 0 or not 0 <= zero_point <= Q.ACT_QMAX:
            raise ValueError(f"invalid static activation parameters: scale {scale}, zero point {zero_point}")
        for name, value in (("input_scale", torch.tensor(float(scale), dtype=torch.float32)),
                            ("input_zero_point", torch.tensor(int(zero_point), dtype=torch.int32))):
            if name in self._buffers:
                self._buffers[name] = value
            else:
                delattr(self, name)
                self.register_buffer(name, value)

    @property
    def static_activations(self) -> bool:
        return self.input_scale is not None

    def dequantized_weight(self) -> torch.Tensor:
        """The fp32 weight this module computes with (what an fp32 peer must run for a fair comparison)."""
        return Q.dequantize_weight(self.weight, self.weight_scale)

    def activation_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.static_activations:
            return self.input_scale, self.input_zero_point
        return Q.dynamic_activation_params(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token-major reference path (`x` is `[..., in]`): exact integer product, shared fp32 epilogue."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"QuantizedLinear expects last dim {self.in_features}, got shape {tuple(x.shape)}")
        x = x.to(torch.float32)
        scale, zero_point = self.activation_params(x)
        x_q = Q.quantize_activation(x, scale, zero_point)
        acc = exact_int_matmul(x_q, self.weight)
        wsum = self.weight.to(torch.int32).sum(dim=1)
        if scale.dim() > 0:
            scale, zero_point = scale.unsqueeze(-1), zero_point.unsqueeze(-1)
        acc = acc - zero_point.to(torch.int32) * wsum
        return acc.to(torch.float32) * (scale * self.weight_scale) + self.bias

    def extra_repr(self) -> str:
        mode = "static" if self.static_activations else "dynamic"
        return f"in_features={self.in_features}, out_features={self.out_features}, activations={mode}"
