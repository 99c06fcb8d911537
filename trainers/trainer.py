"""`CompressionTrainer`: a `transformers.Trainer` that reports its compression callbacks' metrics.

It adds two things to `Trainer` and copies none of its loop: every `CompressionCallback`'s
`metrics_for_log()` (e.g. `sparsity`) joins the Trainer's usual logs (console, `log_history`,
TensorBoard ...), and `train(resume_from_checkpoint=...)` tells the callbacks which checkpoint holds
their saved state (masks). Subclasses override `compute_loss` for what is computed (see distillation.py).
"""
from __future__ import annotations

from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from .callbacks import CompressionCallback


class CompressionTrainer(Trainer):
    def compression_callbacks(self) -> list[CompressionCallback]:
        return [cb for cb in self.callback_handler.callbacks if isinstance(cb, CompressionCallback)]

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            # the same lookup Trainer.train does, so both restore from the same folder
            checkpoint = get_last_checkpoint(self.args.output_dir)
            if checkpoint is None:
                raise ValueError(f"resume_from_checkpoint=True but {self.args.output_dir} holds no checkpoint")
        elif checkpoint is False:
            checkpoint = None
        for callback in self.compression_callbacks():
            callback.set_resume_checkpoint(checkpoint)
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        for callback in self.compression_callbacks():
            logs.update(callback.metrics_for_log())
        super().log(logs, start_time)
