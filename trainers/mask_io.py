"""Sparsity masks on disk: `sparsity_masks.safetensors` beside a Trainer checkpoint (never pickle).

One bool tensor `[out/rows, in/cols]` per pruned layer, keyed by the layer's module name, and metadata
`{"format_version": "1", "block_shape": "4,1"}` checked on load.
"""
from __future__ import annotations

import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

MASKS_FILE_NAME = "sparsity_masks.safetensors"
MASKS_FORMAT_VERSION = "1"


def save_masks(directory: str | os.PathLike, masks: dict[str, torch.Tensor], block_shape: tuple[int, int]) -> str:
    """Writes the masks into `directory` (created if needed) and returns the file's path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, MASKS_FILE_NAME)
    metadata = {"format_version": MASKS_FORMAT_VERSION, "block_shape": f"{block_shape[0]},{block_shape[1]}"}
    save_file({name: mask.detach().cpu().contiguous() for name, mask in masks.items()}, path, metadata=metadata)
    return path


def load_masks(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
    """Masks and block shape saved by `save_masks`; clear errors for a missing, corrupt or foreign file."""
    path = os.path.join(directory, MASKS_FILE_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {MASKS_FILE_NAME} in {directory}: this checkpoint was not saved with pruning masks")
    try:
        masks = load_file(path)
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if metadata.get("format_version") != MASKS_FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {metadata.get('format_version')!r}, this version reads {MASKS_FORMAT_VERSION!r}"
        )
    try:
        block_shape = tuple(int(v) for v in metadata["block_shape"].split(","))
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path} has no valid block_shape in its metadata") from err
    return masks, block_shape
