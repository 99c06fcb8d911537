"""Block-magnitude pruning masks in the kernels' block patterns.

A block is `block_shape = (rows, cols)` consecutive entries of a PyTorch weight `W[out, in]`:
`(4, 1)` is 4 consecutive output channels x 1 input channel (the paper's pattern, the default),
`(1, 4)` is 1 output channel x 4 consecutive input channels. A block's score is its mean |w|; a
layer at sparsity s keeps all but exactly `round(s * n_blocks)` blocks, removing the lowest scores
first and breaking ties by the block's row-major index (lower index pruned first), so the result
never depends on sort internals, thread count or process.

Masks are boolean `[out / rows, in / cols]` tensors (True = keep), one per pruned Linear, keyed by
the module's name in the model. They are applied by multiplying the weight in place, which the
callbacks do after every optimizer step (see `callbacks.py`).
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable

import torch
from torch import nn

# The encoder Linear layers of DistilBERT; embeddings and qa_outputs never match.
DEFAULT_TARGET_MODULES = (
    r"transformer\.layer\.\d+\.attention\.(q_lin|k_lin|v_lin|out_lin)$",
    r"transformer\.layer\.\d+\.ffn\.(lin1|lin2)$",
)
SUPPORTED_BLOCK_SHAPES = ((4, 1), (1, 4))


def check_block_shape(block_shape: Iterable[int]) -> tuple[int, int]:
    block_shape = tuple(int(b) for b in block_shape)
    if block_shape not in SUPPORTED_BLOCK_SHAPES:
        raise ValueError(f"block_shape must be one of {SUPPORTED_BLOCK_SHAPES} (rows of W[out, in], cols), got {block_shape}")
    return block_shape


def find_target_linears(
    model: nn.Module, target_modules: Iterable[str] = DEFAULT_TARGET_MODULES, exclude_modules: Iterable[str] = ()
) -> dict[str, nn.Linear]:
    """Linear layers whose qualified name matches (re.search) a target pattern and no exclude pattern."""
    include = [re.compile(p) for p in target_modules]
    exclude = [re.compile(p) for p in exclude_modules]
    found = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and any(p.search(name) for p in include)
        and not any(p.search(name) for p in exclude)
    }
    if not found:
        raise ValueError(
            f"no nn.Linear in {type(model).__name__} matches target_modules={list(target_modules)} "
            f"(minus exclude_modules={list(exclude_modules)})"
        )
    return found


def _blocked_view(weight: torch.Tensor, block_shape: tuple[int, int]) -> torch.Tensor:
    """`[out/rows, rows, in/cols, cols]` view of `W[out, in]`."""
    rows, cols = block_shape
    if weight.dim() != 2:
        raise ValueError(f"block pruning needs a 2-D weight [out, in], got shape {tuple(weight.shape)}")
    out_features, in_features = weight.shape
    if out_features % rows or in_features % cols:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} cannot be tiled by {block_shape} blocks "
            f"(out must be a multiple of {rows}, in a multiple of {cols})"
        )
    return weight.reshape(out_features // rows, rows, in_features // cols, cols)


def block_scores(weight: torch.Tensor, block_shape: tuple[int, int]) -> torch.Tensor:
    """Mean |w| of every block, float64 `[out/rows, in/cols]` (float64 so near-equal blocks order stably)."""
    return _blocked_view(weight.detach().to(torch.float64).abs(), block_shape).mean(dim=(1, 3))


def num_blocks_to_prune(sparsity: float, num_blocks: int) -> int:
    """round(sparsity * num_blocks), halves rounded up."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return min(num_blocks, int(math.floor(sparsity * num_blocks + 0.5)))


def magnitude_block_mask(weight: torch.Tensor, sparsity: float, block_shape: tuple[int, int]) -> torch.Tensor:
    """Keep-mask pruning exactly `round(sparsity * n_blocks)` blocks with the lowest mean |w|."""
    scores = block_scores(weight, block_shape)
    flat = scores.flatten()
    # stable sort: equal scores keep index order, so ties go to the lower block index first
    order = torch.argsort(flat, stable=True)
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[order[: num_blocks_to_prune(sparsity, flat.numel())]] = False
    return keep.view_as(scores)


def nonzero_block_mask(weight: torch.Tensor, block_shape: tuple[int, int]) -> torch.Tensor:
    """Keep-mask of the blocks that hold any nonzero weight (the pattern of an already sparse model)."""
    return block_scores(weight, block_shape) > 0


def expand_block_mask(block_mask: torch.Tensor, block_shape: tuple[int, int]) -> torch.Tensor:
    """Element mask `[out, in]` of a block mask `[out/rows, in/cols]`."""
    rows, cols = block_shape
    return block_mask.repeat_interleave(rows, dim=0).repeat_interleave(cols, dim=1)


class BlockPruner:
    """Owns the block masks of a model's target Linear layers and applies them to the weights."""

    def __init__(
        self,
        model: nn.Module,
        block_shape: tuple[int, int] = (4, 1),
        target_modules: Iterable[str] = DEFAULT_TARGET_MODULES,
        exclude_modules: Iterable[str] = (),
    ):
        self.block_shape = check_block_shape(block_shape)
        self.modules = find_target_linears(model, target_modules, exclude_modules)
        for name, module in self.modules.items():
            try:
                _blocked_view(module.weight, self.block_shape)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        self.masks: dict[str, torch.Tensor] = {}
        self._element_masks: dict[str, torch.Tensor] = {}

    @property
    def has_masks(self) -> bool:
        return bool(self.masks)

    def compute_magnitude_masks(self, sparsity: float) -> None:
        """Every target layer gets exactly `sparsity` of its blocks pruned (lowest mean |w| first)."""
        self._set_masks({n: magnitude_block_mask(m.weight, sparsity, self.block_shape) for n, m in self.modules.items()})

    def lock_current_pattern(self) -> None:
        """Masks = the blocks that are nonzero now (fine-tuning an already sparse model keeps its pattern)."""
        self._set_masks({n: nonzero_block_mask(m.weight, self.block_shape) for n, m in self.modules.items()})

    def load_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Installs masks saved earlier; names and shapes must match this model's target layers exactly."""
        if set(masks) != set(self.modules):
            missing, unexpected = sorted(set(self.modules) - set(masks)), sorted(set(masks) - set(self.modules))
            raise ValueError(f"saved masks do not match the model's target layers: missing {missing}, unexpected {unexpected}")
        for name, mask in masks.items():
            expected = tuple(_blocked_view(self.modules[name].weight, self.block_shape).shape[::2])
            if mask.dtype != torch.bool or tuple(mask.shape) != expected:
                raise ValueError(
                    f"saved mask for {name} is {mask.dtype} {tuple(mask.shape)}, expected torch.bool {expected} "
                    f"for block shape {self.block_shape}"
                )
        self._set_masks(masks)

    def _set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = {name: masks[name].to(self.modules[name].weight.device) for name in sorted(self.modules)}
        broadcast_from_rank_zero(self.masks)
        self._element_masks = {
            name: expand_block_mask(mask, self.block_shape).to(self.modules[name].weight.dtype)
            for name, mask in self.masks.items()
        }

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zeroes the pruned blocks of every target weight in place."""
        for name, module in self.modules.items():
            module.weight.mul_(self._element_masks[name])

    def layer_sparsity(self) -> dict[str, float]:
        return {name: 1.0 - mask.float().mean().item() for name, mask in self.masks.items()}

    def sparsity(self) -> float:
        """Fraction of pruned blocks over all target layers (= fraction of masked weights)."""
        pruned = sum(int((~m).sum()) for m in self.masks.values())
        total = sum(m.numel() for m in self.masks.values())
        return pruned / total if total else 0.0

    def digest(self) -> str:
        """sha256 of all masks in name order: equal digests mean identical masks (used across processes)."""
        h = hashlib.sha256()
        for name, mask in self.masks.items():
            h.update(name.encode())
            h.update(mask.cpu().numpy().tobytes())
        return h.hexdigest()


def broadcast_from_rank_zero(masks: dict[str, torch.Tensor]) -> None:
    """Makes every process use rank 0's masks (in place). Processes normally compute identical masks from
    identical weights; broadcasting guarantees it even if a reduction ever differs across processes."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if torch.distributed.get_world_size() == 1:
        return
    for name in sorted(masks):
        as_bytes = masks[name].to(torch.uint8)
        torch.distributed.broadcast(as_bytes, src=0)
        masks[name] = as_bytes.bool()
