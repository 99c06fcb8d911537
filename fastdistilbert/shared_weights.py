"""Read-only weights shared between processes through memory maps.

Several pinned worker processes serving one model (the paper's throughput deployment) should hold one copy of the
weights, not one each. Two things are mapped instead of copied:
- every tensor of the checkpoint's `model.safetensors` (embeddings, LayerNorms, int8 weights, scales): the file is
  mapped once per process with `torch.from_file` (MAP_PRIVATE), so all processes share the page cache;
- the packed INT8 kernel buffers, written once by the parent to a cache file and mapped the same way.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from . import runtime

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I8": torch.int8, "U8": torch.uint8,
           "I32": torch.int32, "I64": torch.int64, "BOOL": torch.bool}


def map_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """{key: tensor} viewing a memory map of a safetensors file (no copy; do not write to them)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    data = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8)
    base = 8 + header_len
    out = {}
    for key, spec in header.items():
        if key == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        dtype = _DTYPES[spec["dtype"]]
        out[key] = data[base + begin: base + end].view(dtype).view(spec["shape"])
    return out


def share_checkpoint_tensors(model, safetensors_path: str | Path) -> int:
    """Replaces the model's parameters and buffers by views of the mapped checkpoint; returns how many."""
    mapped = map_safetensors(safetensors_path)
    replaced = 0
    for name, tensor in mapped.items():
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        current = getattr(module, attr, None)
        if not isinstance(current, torch.Tensor) or current.shape != tensor.shape or current.dtype != tensor.dtype:
            continue
        if attr in module._parameters:
            module._parameters[attr] = torch.nn.Parameter(tensor, requires_grad=False)
        else:
            module._buffers[attr] = tensor
        replaced += 1
    return replaced


def save_kernel_cache(encoder, path: str | Path) -> None:
    """Writes the encoder's packed kernel buffers (built for this machine) to one file plus a JSON index."""
    path = Path(path)
    index, offset = [], 0
    with path.open("wb") as f:
        for layer in encoder.int8_kernels():
            entry = {}
            for name in ("qkv", "out", "lin1", "lin2"):
                kernel = getattr(layer, name)
                data = kernel.packed.contiguous().numpy().tobytes()
                pad = (-offset) % 64
                f.write(b"\0" * pad)
                offset += pad
                f.write(data)
                entry[name] = {"offset": offset, "size": len(data), "pattern": kernel.pattern,
                               "block_density": kernel.block_density}
                offset += len(data)
            index.append(entry)
    path.with_suffix(".json").write_text(json.dumps(index))


def load_kernel_cache(encoder, path: str | Path) -> None:
    """Installs packed kernels viewing a memory map of `save_kernel_cache`'s file (static scales from the model)."""
    path = Path(path)
    index = json.loads(path.with_suffix(".json").read_text())
    data = torch.from_file(str(path), shared=False, size=path.stat().st_size, dtype=torch.uint8)
    layers = []
    for block, entry in zip(encoder.transformer.layer, index):
        sources = {"qkv": block.attention.q_lin, "out": block.attention.out_lin, "lin1": block.ffn.lin1, "lin2": block.ffn.lin2}
        kernels = {}
        for name, spec in entry.items():
            module = sources[name]
            kernels[name] = runtime.LinearKernel(data[spec["offset"]: spec["offset"] + spec["size"]], spec["pattern"],
                                                 spec["block_density"], module.input_scale, module.input_zero_point)
        layers.append(runtime.LayerKernels(**kernels))
    encoder.install_int8_kernels(layers)
