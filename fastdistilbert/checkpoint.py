"""Checking a checkpoint before the transformers loader sees it.

The 5.x loader casts every stored tensor to the dtype of the module it lands in, without a warning
(PITFALLS 11): an fp32 weight loaded into an int8 buffer becomes garbage. So the safetensors header is read
and checked against the config first, and a missing, truncated or foreign file fails with a message.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from transformers.utils import cached_file

from .errors import CheckpointError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def hub_kwargs(kwargs: dict) -> dict:
    return {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}


def resolve_weight_files(path: str | os.PathLike, **kwargs) -> list[str]:
    """Local paths of the checkpoint's safetensors files (single file or shards), fetched if remote."""
    single = cached_file(path, SAFETENSORS, _raise_exceptions_for_missing_entries=False, **kwargs)
    if single:
        return [single]
    index = cached_file(path, SAFETENSORS_INDEX, _raise_exceptions_for_missing_entries=False, **kwargs)
    if index:
        try:
            shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"corrupt {SAFETENSORS_INDEX} in {path}: {exc}") from exc
        return [cached_file(path, shard, **kwargs) for shard in shards]
    if Path(path, "pytorch_model.bin").exists():
        raise CheckpointError(
            f"{path} holds only a pickle checkpoint (pytorch_model.bin); fastdistilbert reads safetensors only. "
            "Load it with transformers and call save_pretrained to write model.safetensors."
        )
    raise CheckpointError(f"no {SAFETENSORS} (or {SAFETENSORS_INDEX}) in {path}")


def read_tensor_specs(files: list[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{key: (safetensors dtype, shape)} of every tensor, read from headers only."""
    specs: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in files:
        try:
            with safe_open(file, framework="pt") as f:
                for key in f.keys():
                    sl = f.get_slice(key)
                    specs[key] = (sl.get_dtype(), tuple(sl.get_shape()))
        except Exception as exc:  # safetensors raises its own error types for a bad header or a short file
            raise CheckpointError(f"corrupt or truncated safetensors file {file}: {exc}") from exc
    return specs


FLOAT_DTYPES = ("F32", "F16", "BF16")


def _linear_shapes(config) -> dict[str, tuple[int, int]]:
    dim, hidden = config.dim, config.hidden_dim
    return {"attention.q_lin": (dim, dim), "attention.k_lin": (dim, dim), "attention.v_lin": (dim, dim),
            "attention.out_lin": (dim, dim), "ffn.lin1": (hidden, dim), "ffn.lin2": (dim, hidden)}


def _prefix(specs: dict, prefix_candidates) -> str:
    return next((p for p in prefix_candidates if f"{p}embeddings.word_embeddings.weight" in specs), "distilbert.")


def check_quantized_tensors(specs: dict, config, prefix_candidates=("distilbert.", "")) -> None:
    """Every encoder Linear of an INT8 config must be stored as int8 weights + fp32 scales (+ static params)."""
    from .conversion import ENCODER_LINEARS

    expected = {"weight": "I8", "weight_scale": "F32", "bias": "F32"}
    if config.static_activations:
        expected.update(input_scale="F32", input_zero_point="I32")
    shapes = _linear_shapes(config)
    prefix = _prefix(specs, prefix_candidates)
    _check_embeddings(specs, config, prefix)
    for layer in range(config.n_layers):
        for linear in ENCODER_LINEARS:
            base = f"{prefix}transformer.layer.{layer}.{linear}"
            for name, dtype in expected.items():
                key = f"{base}.{name}"
                if key not in specs:
                    raise CheckpointError(f"INT8 checkpoint is missing tensor {key!r} (config.quantization says INT8)")
                if specs[key][0] != dtype:
                    raise CheckpointError(
                        f"tensor {key!r} is stored as {specs[key][0]}, expected {dtype} for an INT8 checkpoint; "
                        "the file does not match its config.quantization section"
                    )
            if specs[f"{base}.weight"][1] != shapes[linear]:
                raise CheckpointError(f"tensor {base}.weight has shape {specs[f'{base}.weight'][1]}, expected {shapes[linear]}")


def _check_embeddings(specs: dict, config, prefix: str) -> str:
    embeddings = f"{prefix}embeddings.word_embeddings.weight"
    if embeddings not in specs:
        raise CheckpointError(f"the weights hold no {embeddings!r}: not a DistilBERT checkpoint "
                              f"(it stores e.g. {sorted(specs)[:3]})")
    return embeddings


def check_fp32_tensors(specs: dict, config, prefix_candidates=("distilbert.", "")) -> None:
    """An fp32 config needs every embedding and encoder Linear tensor, floating and of the config's shape.

    Without this the loader would initialize whatever is missing or mis-shaped at random (a foreign file loads
    as a random model with a warning), or cast INT8 weights to float without their scales."""
    from .conversion import ENCODER_LINEARS

    prefix = _prefix(specs, prefix_candidates)
    embeddings = _check_embeddings(specs, config, prefix)
    # Compact (int8) word embeddings are checked by check_compact_tensors.
    wanted = {} if getattr(config, "compact_embeddings", False) else {embeddings: (config.vocab_size, config.dim)}
    for layer in range(config.n_layers):
        for linear, shape in _linear_shapes(config).items():
            wanted[f"{prefix}transformer.layer.{layer}.{linear}.weight"] = shape
    for key, shape in wanted.items():
        if key not in specs:
            raise CheckpointError(f"checkpoint is missing tensor {key!r} that config.json (n_layers={config.n_layers}) needs")
        dtype, stored = specs[key]
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(
                f"tensor {key!r} is stored as {dtype} but config.json has no quantization section (fp32 model); "
                "the file does not match its config"
            )
        if stored != shape:
            raise CheckpointError(f"tensor {key!r} has shape {stored}, but config.json implies {shape}")


def check_checkpoint(path, config, **kwargs) -> None:
    """Fails early with a CheckpointError on a missing/corrupt file or tensors that contradict the config."""
    specs = read_tensor_specs(resolve_weight_files(path, **hub_kwargs(kwargs)))
    if getattr(config, "is_quantized", False):
        check_quantized_tensors(specs, config)
    elif config is not None:
        check_fp32_tensors(specs, config)
    if config is not None:
        from .embedding_quantization import check_embedding_tensors

        check_embedding_tensors(specs, config, _prefix(specs, ("distilbert.", "")))


def check_loaded_scales(model) -> None:
    """Quantization scales must be finite and positive (the quantizer never writes anything else): a NaN or zero
    scale from a damaged or hand-edited file would turn every logit into NaN or zero without an error."""
    for name, module in model.quantized_linears().items():
        for attr in ("weight_scale", "input_scale"):
            scale = getattr(module, attr, None)
            if scale is not None and not bool((torch.isfinite(scale) & (scale > 0)).all()):
                raise CheckpointError(f"{name}.{attr} holds non-finite or non-positive values; the checkpoint is corrupt")
