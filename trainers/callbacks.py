"""TrainerCallbacks for the timed events of compression: mask updates, mask enforcement, observer freezing.

`CompressionTrainer` (trainer.py) merges every `CompressionCallback`'s `metrics_for_log()` into the
Trainer's logs and tells the callbacks which checkpoint a run resumes from. With a plain `Trainer` the
callbacks still prune and save their state, and resume from `output_dir/checkpoint-<step>`.
"""
from __future__ import annotations

import logging
import os

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .arguments import PruningArguments, QATArguments
from .mask_io import MASKS_FILE_NAME, load_masks, save_masks
from .pruning import BlockPruner
from .qat import set_observers_frozen
from .schedule import cubic_sparsity, is_mask_update_step

logger = logging.getLogger(__name__)


class CompressionCallback(TrainerCallback):
    """A callback with metrics to log and state to restore when a run resumes."""

    resume_checkpoint: str | None = None

    def set_resume_checkpoint(self, checkpoint: str | None) -> None:
        self.resume_checkpoint = checkpoint

    def metrics_for_log(self) -> dict[str, float]:
        return {}

    def _checkpoint_to_restore(self, args, state) -> str | None:
        """The checkpoint this run resumed from, or None for a fresh run."""
        if state.global_step == 0:
            return None
        if self.resume_checkpoint is not None:
            return self.resume_checkpoint
        return os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


class BlockPruningCallback(CompressionCallback):
    """Gradual block-magnitude pruning on the cubic schedule, or pattern lock.

    Events: `on_train_begin` builds the masks (or restores them on resume) and applies them;
    `on_optimizer_step` re-applies them after every optimizer step (so pruned blocks stay exactly zero
    whatever the optimizer's momentum does); `on_step_end` recomputes them on the schedule;
    `on_save` writes `sparsity_masks.safetensors` into the checkpoint folder (main process only).
    """

    def __init__(self, pruning_args: PruningArguments | None = None):
        self.pruning_args = pruning_args or PruningArguments()
        self.pruner: BlockPruner | None = None
        self.end_step: int | None = None

    def scheduled_sparsity(self, step: int) -> float:
        a = self.pruning_args
        return cubic_sparsity(step, a.initial_sparsity, a.target_sparsity, a.pruning_start_step, self.end_step)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if getattr(args, "fsdp", None):
            raise NotImplementedError("block pruning needs every weight whole on every process (DDP, torchrun, "
                                      "accelerate); FSDP shards them")
        a = self.pruning_args
        self.end_step = a.end_step(state.max_steps)
        if self.pruner is None:
            self.pruner = BlockPruner(model, a.block_shape, a.pruning_modules, a.pruning_exclude_modules)
        checkpoint = self._checkpoint_to_restore(args, state)
        if checkpoint is not None:
            self._restore(checkpoint)
        elif a.pattern_lock:
            self.pruner.lock_current_pattern()
            if self.pruner.sparsity() == 0:
                logger.warning("pattern lock on a model without any all-zero %s block: nothing is pruned",
                               self.pruner.block_shape)
            else:
                logger.info("pattern lock: keeping the current %.4f block sparsity", self.pruner.sparsity())
        else:
            self.pruner.compute_magnitude_masks(self.scheduled_sparsity(state.global_step))
        self.pruner.apply_masks()

    def _restore(self, checkpoint: str) -> None:
        if not os.path.isfile(os.path.join(checkpoint, MASKS_FILE_NAME)):
            raise FileNotFoundError(
                f"resuming pruning from {checkpoint}, which has no {MASKS_FILE_NAME}; pass the checkpoint to "
                "CompressionTrainer.train(resume_from_checkpoint=...) or call set_resume_checkpoint() first"
            )
        masks, block_shape = load_masks(checkpoint)
        if block_shape != self.pruner.block_shape:
            raise ValueError(f"{checkpoint} holds {block_shape} masks, this run prunes {self.pruner.block_shape} blocks")
        self.pruner.load_masks(masks)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.pruner.apply_masks()

    def on_step_end(self, args, state, control, **kwargs):
        a = self.pruning_args
        if a.pattern_lock or not is_mask_update_step(
            state.global_step, a.pruning_start_step, self.end_step, a.pruning_frequency
        ):
            return
        self.pruner.compute_magnitude_masks(self.scheduled_sparsity(state.global_step))
        self.pruner.apply_masks()

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if not os.path.isdir(checkpoint):  # e.g. hyper-parameter search runs save elsewhere
            logger.warning("checkpoint folder %s not found; call save_masks() with the right folder", checkpoint)
            return
        self.save_masks(checkpoint)

    def save_masks(self, directory: str) -> str:
        return save_masks(directory, self.pruner.masks, self.pruner.block_shape)

    def metrics_for_log(self) -> dict[str, float]:
        if self.pruner is None or not self.pruner.has_masks:
            return {}
        return {"sparsity": round(self.pruner.sparsity(), 6)}


class ObserverFreezeCallback(CompressionCallback):
    """Freezes the QAT activation observers after `freeze_observers_step` optimizer steps: from then on
    the ranges stay fixed ('ema') or are trained by gradient descent ('learned')."""

    def __init__(self, qat_args: QATArguments):
        self.qat_args = qat_args

    def _sync(self, model, step: int) -> None:
        freeze_at = self.qat_args.freeze_observers_step
        set_observers_frozen(model, freeze_at is not None and step >= freeze_at)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._sync(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._sync(model, state.global_step)
