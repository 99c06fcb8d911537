"""Static activation scales from calibration data (optional: without it activations are quantized per token).

`calibrate(model, dataloader)` runs the model on the data, records the range of the input of every encoder
Linear, and stores one (scale, zero point) per Linear, computed with the runtime's own formula
(`quantization.activation_params`). Q, K and V share their input and therefore their parameters.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from . import quantization as Q
from .conversion import encoder_linear_names, quantize_model
from .modules import QuantizedLinear


@torch.no_grad()
def observe_input_ranges(model, dataloader, max_batches: int | None = None) -> dict[str, tuple[float, float]]:
    """{module name: (min, max)} of the inputs of every encoder Linear over the batches (torch path)."""
    ranges: dict[str, list[float]] = {}

    def observer(name):
        def hook(_module, args):
            x = args[0]
            lo, hi = float(x.min()), float(x.max())
            old = ranges.get(name)
            ranges[name] = [lo, hi] if old is None else [min(old[0], lo), max(old[1], hi)]
        return hook

    handles = [model.get_submodule(n).register_forward_pre_hook(observer(n)) for n in encoder_linear_names(model.config)]
    encoder = model.distilbert
    previous = encoder.use_int8_kernels
    encoder.use_int8_kernels = False  # the packed kernels never call the modules the hooks sit on
    model.eval()
    try:
        total = max_batches if max_batches is not None else (len(dataloader) if hasattr(dataloader, "__len__") else None)
        for index, batch in enumerate(tqdm(dataloader, total=total, desc="calibrating", unit="batch")):
            if max_batches is not None and index >= max_batches:
                break
            model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"))
    finally:
        encoder.use_int8_kernels = previous
        for handle in handles:
            handle.remove()
    if not ranges:
        raise ValueError("calibration saw no data: the dataloader yielded no batches")
    return {name: (lo, hi) for name, (lo, hi) in ranges.items()}


def calibrate(model, dataloader, max_batches: int | None = None):
    """Stores static activation quantization parameters in a Fast model (fp32 or dynamic INT8), in place.

    Batches are dicts with `input_ids` and optionally `attention_mask`. Returns the model, now INT8 with
    `config.quantization["activation"] == "static"`.
    """
    if model.config.static_activations:
        raise ValueError("model already has static activation scales")
    ranges = observe_input_ranges(model, dataloader, max_batches)
    params = {}
    for name, (lo, hi) in ranges.items():
        scale, zero_point = Q.activation_params(torch.tensor(lo), torch.tensor(hi))
        params[name] = (float(scale), int(zero_point))
    if not model.config.is_quantized:
        return quantize_model(model, params)
    for name, (scale, zero_point) in params.items():
        module: QuantizedLinear = model.get_submodule(name)
        module.set_static_activation(scale, zero_point)
    model.config.quantization = {**model.config.quantization, "activation": "static"}
    return model
