"""Import of third-party INT8 checkpoints in QDQ layout (quantize-dequantize exports).

Block-sparse fp32 checkpoints (Intel's `(4,1)` "1x4"-named ones, Neural Magic's `(1,4)` "block4" ones) need no
code here: they are ordinary DistilBERT / BERT checkpoints whose zeros the kernel packer detects after
`quantize_model`. An INT8 export, however, stores each encoder Linear as separate quantized tensors, which the
transformers loader would cast into an fp32 model without complaint (PITFALLS 10, 11). This module reads them.

Supported layout (safetensors, DistilBERT QA key names), per encoder Linear `<L>` (e.g.
`distilbert.transformer.layer.0.attention.q_lin`):

    <L>.weight_quantized    int8  [out, in]       the quantized weight (zeros where pruned)
    <L>.weight_scale        fp32  [] or [out]     per-tensor or per-output-channel scale
    <L>.weight_zero_point   int8/int32/uint8, [] or [out]; must be 0 (symmetric weights)
    <L>.bias                fp32  [out]
    <L>.input_scale         fp32  []              optional static activation scale (all Linears or none)
    <L>.input_zero_point    uint8/int32 []        optional, with input_scale; in [0, 255]

BERT-family exports use BERT's names instead (`bert.encoder.layer.0.attention.self.query` ...) and are converted
to the DistilBERT layout as fp32 BERT checkpoints are (conversion.py). Everything else (embeddings, LayerNorms,
qa_outputs) is fp32 under the usual HF names. A
`quantization_config` entry in config.json is recorded but not interpreted: the tensors are the truth.
"""
from __future__ import annotations

import warnings

import torch
from safetensors.torch import load_file

from .checkpoint import hub_kwargs, read_tensor_specs, resolve_weight_files
from .configuration_fast_distilbert import FastDistilBertConfig, quantization_section
from .conversion import ENCODER_LINEARS
from .errors import CheckpointError
from .quantization import WEIGHT_QMAX, dequantize_weight, quantize_weight

QDQ_WEIGHT_SUFFIX = ".weight_quantized"
_QDQ_SUFFIXES = (QDQ_WEIGHT_SUFFIX, ".weight_scale", ".weight_zero_point", ".input_scale", ".input_zero_point")


def is_qdq_checkpoint(specs: dict) -> bool:
    return any(key.endswith(QDQ_WEIGHT_SUFFIX) for key in specs)


def load_qdq_checkpoint(cls, path, config, kwargs: dict):
    """The Fast model of a QDQ INT8 checkpoint, or None when `path` holds no QDQ tensors (the caller then loads it
    the usual way). `config` is the FastDistilBertConfig derived from the checkpoint's config.json, or None for a
    BERT-family checkpoint, whose tensors are renamed (and its config converted) to the DistilBERT layout first."""
    files = resolve_weight_files(path, **hub_kwargs(kwargs))
    if not is_qdq_checkpoint(read_tensor_specs(files)):
        return None
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(file))
    if config is None:
        config, state = _from_bert_layout(path, state, kwargs)
    converted, static = qdq_state_dict_to_fast(state, config.n_layers)
    source = getattr(config, "quantization_config", None)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # would send transformers down its quantizer route on a later reload
    config.quantization = quantization_section("static" if static else "dynamic")
    config.quantization["imported_from"] = {"format": "qdq", "quantization_config": source}
    from .modeling_fast_distilbert import FastDistilBertForQuestionAnswering

    model = FastDistilBertForQuestionAnswering(config)
    try:
        missing, unexpected = model.load_state_dict(converted, strict=False)
    except RuntimeError as exc:  # shape mismatches against config.json
        raise CheckpointError(f"QDQ checkpoint {path} does not match its config.json: {exc}") from None
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise CheckpointError(f"QDQ checkpoint {path} does not match the DistilBERT QA layout: missing {missing}, "
                              f"unexpected {unexpected}")
    model.eval()
    model.prepare_kernels()
    return model if isinstance(model, cls) else model.distilbert


def _from_bert_layout(path, state: dict, kwargs: dict):
    """(FastDistilBertConfig, state dict in DistilBERT names) of a BERT-family QDQ export."""
    from transformers import BertConfig

    from .conversion import distilbert_config_from_bert, distilbert_state_dict_from_bert

    bert_config = BertConfig.from_pretrained(path, **hub_kwargs(kwargs))
    config = FastDistilBertConfig.from_distilbert_config(distilbert_config_from_bert(bert_config))
    config.quantization_config = getattr(bert_config, "quantization_config", None)
    return config, distilbert_state_dict_from_bert(state)


def qdq_state_dict_to_fast(state: dict[str, torch.Tensor], n_layers: int) -> tuple[dict[str, torch.Tensor], bool]:
    """(Fast state dict, whether activations are static) from a QDQ state dict; checks every tensor first."""
    out = {k: v for k, v in state.items() if not k.endswith(_QDQ_SUFFIXES)}
    names = [f"distilbert.transformer.layer.{i}.{linear}" for i in range(n_layers) for linear in ENCODER_LINEARS]
    with_input = [n for n in names if f"{n}.input_scale" in state]
    if with_input and len(with_input) != len(names):
        raise CheckpointError(f"QDQ checkpoint has input_scale for {len(with_input)} of {len(names)} encoder Linears; "
                              "static activation scales must be given for all of them or none")
    for layer in range(n_layers) if with_input else ():
        _check_shared_input(state, [f"distilbert.transformer.layer.{layer}.attention.{x}_lin" for x in "qkv"])
    for name in names:
        weight, scale = _symmetric_weight(state, name)
        out[f"{name}.weight"], out[f"{name}.weight_scale"] = weight, scale
        if with_input:
            out[f"{name}.input_scale"], out[f"{name}.input_zero_point"] = _input_params(state, name)
    return out, bool(with_input)


def _check_shared_input(state: dict, names: list[str]) -> None:
    """Q, K and V read the same input and run as one fused kernel, so their static input parameters must agree."""
    first = names[0]
    for name in names[1:]:
        for suffix in (".input_scale", ".input_zero_point"):
            if not torch.equal(state[first + suffix].reshape(()), state[name + suffix].reshape(())):
                raise CheckpointError(f"{name}{suffix} differs from {first}{suffix}: Q, K and V share one input and "
                                      "must share its static quantization parameters")


def _require(state: dict, key: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"QDQ checkpoint is missing tensor {key!r}")
    return state[key]


def _per_channel(tensor: torch.Tensor, rows: int, key: str) -> torch.Tensor:
    if tensor.numel() == 1:
        return tensor.reshape(()).expand(rows).clone()
    if tuple(tensor.shape) != (rows,):
        raise CheckpointError(f"{key} has shape {tuple(tensor.shape)}; expected [] (per tensor) or [{rows}] (per channel)")
    return tensor


def _symmetric_weight(state: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Our int8 weight and fp32 per-channel scale. Exact, except for channels using the code -128, which our
    kernels exclude (range [-127, 127]): those channels are requantized from their dequantized values."""
    weight = _require(state, f"{name}{QDQ_WEIGHT_SUFFIX}")
    if weight.dtype != torch.int8 or weight.dim() != 2:
        raise CheckpointError(f"{name}{QDQ_WEIGHT_SUFFIX} must be a 2-D int8 tensor, got {weight.dtype} "
                              f"{tuple(weight.shape)}")
    rows = weight.shape[0]
    scale_key, zp_key = f"{name}.weight_scale", f"{name}.weight_zero_point"
    scale = _per_channel(_require(state, scale_key), rows, scale_key)
    if not scale.is_floating_point() or not bool((scale > 0).all()):
        raise CheckpointError(f"{scale_key} must hold positive floating-point scales")
    scale = scale.to(torch.float32)
    zero_point = _per_channel(_require(state, zp_key), rows, zp_key)
    if bool(zero_point.ne(0).any()):
        raise CheckpointError(f"{zp_key} is nonzero: asymmetric weight quantization is not supported (the kernels "
                              "use symmetric int8 weights); re-export with symmetric weights")
    full_range = weight.eq(-WEIGHT_QMAX - 1).any(dim=1)
    if bool(full_range.any()):
        warnings.warn(f"{name}: {int(full_range.sum())} output channels use the int8 code -128, outside the kernels' "
                      "range [-127, 127]; those channels are requantized (not bit-exact to the export)", stacklevel=4)
        weight, scale = weight.clone(), scale.clone()
        requantized, new_scale = quantize_weight(dequantize_weight(weight[full_range], scale[full_range]))
        weight[full_range], scale[full_range] = requantized, new_scale
    return weight, scale


def _input_params(state: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    scale = _require(state, f"{name}.input_scale")
    zero_point = _require(state, f"{name}.input_zero_point")
    if scale.numel() != 1 or zero_point.numel() != 1:
        raise CheckpointError(f"{name}: only per-tensor static activation scales are supported, got shapes "
                              f"{tuple(scale.shape)} and {tuple(zero_point.shape)}")
    scale, zero_point = float(scale), int(zero_point)
    if not scale > 0 or not 0 <= zero_point <= 255:
        raise CheckpointError(f"{name}: invalid static activation parameters (scale {scale}, zero point {zero_point}); "
                              "expected scale > 0 and a uint8 zero point")
    return torch.tensor(scale, dtype=torch.float32), torch.tensor(zero_point, dtype=torch.int32)
