"""Quantization-aware training with the runtime's own quantization formulas, and export to the INT8 model.

`prepare_qat(model)` swaps the target Linear layers (DistilBERT's encoder Linears by default, the ones the
runtime quantizes) for `FakeQuantLinear`, in place. A FakeQuantLinear IS an nn.Linear with the same
`weight`/`bias` Parameters (optimizers, pruning masks and state-dict keys are unaffected) whose forward is

    y = F.linear(fake_quantize_activation(x, s_x, z_x), fake_quantize_weight(W), b)        (train mode)

with `fastdistilbert.quantization`'s functions (s8 symmetric per-channel weights; u8 asymmetric per-tensor
activations, (s_x, z_x) = activation_params(lo, hi)). The input range [lo, hi] is observed during training
(moving average of batch min/max, all-reduced over processes so every rank sees the global batch) until
`ObserverFreezeCallback` freezes it; with `activation_observer="learned"` the frozen range then becomes trainable
(gradients reach lo/hi through s_x, LSQ-style, via the straight-through rounding of the shared module). Before
the freeze a learned range gets no gradient, so under DDP keep `ddp_find_unused_parameters` at its default.
`calibrate_observers` sets the ranges from a few batches before training (or for a calibration-only export).

Layers that read the same tensor (Q, K, V) share one input range, because the runtime runs them as one fused
kernel with one input quantization.

In eval mode a FakeQuantLinear runs the runtime's own `QuantizedLinear` instead (exact integer product, the
runtime's epilogue): what you evaluate during QAT is bit for bit the exported model's reference path. Train mode
keeps the fp32 fake-quant GEMM, which differs from the integer path only by fp32 summation order (tests bound it).

`export_to_fast(model)` builds the FastDistilBertForQuestionAnswering that runs these exact integers: its int8
weights and scales come from `quantize_weight` (the same arithmetic as `fake_quantize_weight`) and its static
input scale / zero point are `activation_params(lo, hi)` of each layer.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import DistilBertForQuestionAnswering

from fastdistilbert import quantization as Q
from fastdistilbert.conversion import convert_to_fast
from fastdistilbert.modules import QuantizedLinear

from .arguments import QATArguments
from .pruning import find_target_linears


class FakeQuantLinear(nn.Linear):
    """nn.Linear that trains through the runtime's INT8 rounding (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, observer: str = "ema",
                 momentum: float = 0.01, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if observer not in ("ema", "learned"):
            raise ValueError(f"observer must be 'ema' or 'learned', got {observer!r}")
        self.observer = observer
        self.momentum = momentum
        # 'learned' ranges are Parameters from the start so the optimizer knows them; they get no gradient
        # (hence no update) while the observer still drives them.
        make = (lambda: nn.Parameter(torch.zeros((), device=device))) if observer == "learned" else None
        for name in ("act_lo", "act_hi"):
            if make is not None:
                setattr(self, name, make())
            else:
                self.register_buffer(name, torch.zeros((), device=device))
        self.register_buffer("observer_initialized", torch.zeros((), dtype=torch.bool, device=device))
        self.register_buffer("observer_frozen", torch.zeros((), dtype=torch.bool, device=device))

    @classmethod
    def from_linear(cls, linear: nn.Linear, observer: str = "ema", momentum: float = 0.01) -> "FakeQuantLinear":
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, observer=observer,
                     momentum=momentum, device=linear.weight.device)
        module.weight = linear.weight  # the same Parameter objects, not copies
        module.bias = linear.bias
        return module.train(linear.training)

    def share_input_range_with(self, owner: "FakeQuantLinear") -> None:
        """Quantize the input with `owner`'s range instead of an own one: for layers that read the same tensor
        (Q, K, V), which the runtime fuses into one kernel with one input quantization. The owner observes (or
        learns) the range; this layer mirrors it into its own buffers so its state dict stays truthful. The
        owner must run first in the forward (q_lin does in DistilBERT)."""
        if owner is self or owner.observer != self.observer:
            raise ValueError("a layer can share the input range of another layer with the same observer type")
        for name in ("act_lo", "act_hi"):
            value = getattr(self, name).detach().clone()
            delattr(self, name)  # a learned range is trained once, in the owner: here a plain buffer
            self.register_buffer(name, value)
        object.__setattr__(self, "_range_owner", owner)  # a plain reference, not a submodule

    @property
    def range_owner(self) -> "FakeQuantLinear":
        return self.__dict__.get("_range_owner") or self

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Moves [lo, hi] toward this batch's min/max over real tokens (global over processes); the first batch
        sets it. Padding positions are left out when the model's attention_mask is known (see prepare_qat): the
        runtime never computes them, and the [PAD] embedding alone widens layer 0's range by ~40% on SQuAD."""
        x = x.detach()
        token_mask = self.__dict__.get("_token_mask")
        if token_mask is not None and x.dim() >= 2 and tuple(x.shape[:2]) == tuple(token_mask.shape):
            x = x[token_mask.bool()]
        if x.numel() == 0:
            return
        batch = torch.stack([-x.amin(), x.amax()]).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch, op=torch.distributed.ReduceOp.MAX)  # max of -min = -min of min
        lo, hi = -batch[0], batch[1]
        if not bool(self.observer_initialized):
            self.act_lo.copy_(lo)
            self.act_hi.copy_(hi)
            self.observer_initialized.fill_(True)
        else:
            self.act_lo.lerp_(lo, self.momentum)
            self.act_hi.lerp_(hi, self.momentum)

    @torch.no_grad()
    def _mirror_owner(self) -> None:
        owner = self.range_owner
        for name in ("act_lo", "act_hi", "observer_initialized", "observer_frozen"):
            getattr(self, name).copy_(getattr(owner, name))

    def activation_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale fp32, zero point int32) the forward uses and the export stores."""
        owner = self.range_owner
        if not bool(owner.observer_initialized):
            raise RuntimeError("FakeQuantLinear has no activation range yet: run training (or calibration) "
                               "forwards in train mode before evaluating, freezing or exporting")
        lo, hi = owner.act_lo, owner.act_hi
        if not (owner.observer == "learned" and bool(owner.observer_frozen)):
            lo, hi = lo.detach(), hi.detach()
        return Q.activation_params(lo, hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.range_owner is not self:
            self._mirror_owner()
        elif self.training and not bool(self.observer_frozen):
            self.observe(x)
        if not self.training:
            return self.int8_forward(x)
        scale, zero_point = self.activation_qparams()
        x_fq = Q.fake_quantize_activation(x, scale, zero_point)
        return F.linear(x_fq, Q.fake_quantize_weight(self.weight), self.bias)

    def int8_forward(self, x: torch.Tensor) -> torch.Tensor:
        """What the exported layer computes: the runtime's own QuantizedLinear (exact integer product, shared
        epilogue), built from this layer's current weight and range. Used in eval mode, so evaluating the QAT
        model gives bit for bit the logits of the exported model's reference path (no gradient flows here)."""
        with torch.no_grad():
            scale, zero_point = self.activation_qparams()
            runtime_layer = QuantizedLinear.from_linear(self, True, float(scale), int(zero_point)).to(x.device)
            return runtime_layer(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, observer={self.observer}, frozen={bool(self.observer_frozen)}"


def fake_quant_linears(model: nn.Module) -> dict[str, FakeQuantLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, FakeQuantLinear)}


def _share_attention_mask_with_observers(model: nn.Module) -> None:
    """Hooks that show every FakeQuantLinear the attention mask of the forward in progress (and clear it)."""
    def remember(module, args, kwargs):
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        for layer in fake_quant_linears(module).values():
            object.__setattr__(layer, "_token_mask", mask)

    def forget(module, args, kwargs, output):
        for layer in fake_quant_linears(module).values():
            object.__setattr__(layer, "_token_mask", None)

    model.register_forward_pre_hook(remember, with_kwargs=True)
    model.register_forward_hook(forget, with_kwargs=True, always_call=True)


def prepare_qat(model: nn.Module, qat_args: QATArguments | None = None) -> nn.Module:
    """Replaces the target Linears of `model` by FakeQuantLinear in place and returns the model.

    Sibling layers named in one of `qat_args.shared_input_groups` (default: q_lin, k_lin, v_lin) share the
    first one's input range, as the runtime's fused QKV kernel requires."""
    qat_args = qat_args or QATArguments()
    if fake_quant_linears(model):
        raise ValueError("model already has FakeQuantLinear layers (prepare_qat was called twice)")
    replaced: dict[str, dict[str, FakeQuantLinear]] = {}
    for name, linear in find_target_linears(model, qat_args.qat_modules).items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        module = FakeQuantLinear.from_linear(linear, qat_args.activation_observer, qat_args.observer_momentum)
        setattr(parent, child, module)
        replaced.setdefault(parent_name, {})[child] = module
    for siblings in replaced.values():
        for group in qat_args.shared_input_groups:
            names = [n.strip() for n in group.split(",")]
            if all(n in siblings for n in names):
                for follower in names[1:]:
                    siblings[follower].share_input_range_with(siblings[names[0]])
    _share_attention_mask_with_observers(model)
    return model


def set_observers_frozen(model: nn.Module, frozen: bool) -> None:
    for module in fake_quant_linears(model).values():
        if frozen and not bool(module.observer_initialized):
            raise RuntimeError("cannot freeze an activation observer that has seen no data; freeze after at "
                               "least one training step")
        module.observer_frozen.fill_(frozen)


@torch.no_grad()
def calibrate_observers(model: nn.Module, batches: Iterable[dict], max_batches: int | None = None) -> int:
    """Runs `batches` (dicts of model inputs, labels ignored) through the model with only the observers in
    training mode (dropout stays off) and returns how many batches were seen. Gives every FakeQuantLinear a
    range before training, or a static INT8 export without any training (post-training calibration)."""
    layers = fake_quant_linears(model)
    if not layers:
        raise ValueError("model has no FakeQuantLinear layers: call prepare_qat first")
    was_training = model.training
    model.eval()
    for layer in layers.values():
        layer.training = True  # observe; the rest of the model stays in eval mode
    seen = 0
    try:
        device = next(model.parameters()).device
        for batch in tqdm(batches, desc="calibrating activation ranges", total=max_batches, leave=False):
            if max_batches is not None and seen >= max_batches:
                break
            inputs = {k: v.to(device) for k, v in batch.items() if k not in ("start_positions", "end_positions")}
            model(**inputs)
            seen += 1
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("calibrate_observers got no batches")
    return seen


def activation_params_of(model: nn.Module) -> dict[str, tuple[float, int]]:
    """`{module name: (scale, zero_point)}` of every FakeQuantLinear, as the converter takes them."""
    params = {}
    for name, module in fake_quant_linears(model).items():
        with torch.no_grad():
            scale, zero_point = module.activation_qparams()
        params[name] = (float(scale), int(zero_point))  # float() of an fp32 tensor is exact
    return params


def export_to_fast(model: nn.Module):
    """FastDistilBertForQuestionAnswering (INT8, static activations) computing with the QAT model's integers.

    Its attention stays fp32, as the QAT model trained it (exactly the QAT model's numerics); INT8 attention, faster
    on long sequences, is one switch away: `fast.distilbert.int8_attention = True` (then evaluate it again)."""
    model = getattr(model, "module", model)  # a DDP-wrapped student
    if not isinstance(model, DistilBertForQuestionAnswering):
        raise TypeError(f"export_to_fast expects a DistilBertForQuestionAnswering, got {type(model).__name__}")
    params = activation_params_of(model)
    if not params:
        raise ValueError("model has no FakeQuantLinear layers: call prepare_qat and train it first")
    plain = DistilBertForQuestionAnswering(model.config)
    state = {k: v for k, v in model.state_dict().items()}
    missing, unexpected = plain.load_state_dict(state, strict=False)
    observer_keys = ("act_lo", "act_hi", "observer_initialized", "observer_frozen")
    unexpected = [k for k in unexpected if not k.endswith(observer_keys)]
    if missing or unexpected:
        raise ValueError(f"cannot export {type(model).__name__}: missing {missing}, unexpected {unexpected}")
    return convert_to_fast(plain.eval(), quantize=True, activation_params=params, attention="fp32").eval()
