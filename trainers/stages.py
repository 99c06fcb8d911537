"""The two training stages of the paper's recipe, each a configured DistillationTrainer.

    pruning = PruningArguments(target_sparsity=0.8)
    stage1 = prune_and_distill(copy.deepcopy(teacher), teacher, training_args, train_dataset, pruning,
                               data_collator=DataCollatorWithPadding(tokenizer))
    stage1.train()
    stage2 = quantize_and_distill(stage1.model, teacher, training_args2, train_dataset, QATArguments(...),
                                  block_shape=pruning.block_shape, data_collator=DataCollatorWithPadding(tokenizer))
    stage2.train()
    export_to_fast(stage2.model).save_pretrained(output_dir)

Stage 1 ramps block sparsity on the cubic schedule while distilling; stage 2 fake-quantizes the encoder
Linears, keeps the sparsity pattern locked and distills again. Extra keyword arguments go to the Trainer
(eval_dataset, data_collator, processing_class, callbacks ...).
"""
from __future__ import annotations

from torch import nn
from transformers import TrainingArguments

from .arguments import DistillationArguments, PruningArguments, QATArguments
from .callbacks import BlockPruningCallback, ObserverFreezeCallback
from .distillation import DistillationTrainer
from .qat import prepare_qat


def prune_and_distill(student: nn.Module, teacher: nn.Module, args: TrainingArguments, train_dataset,
                      pruning_args: PruningArguments | None = None,
                      distillation_args: DistillationArguments | None = None, **trainer_kwargs) -> DistillationTrainer:
    """Gradual block pruning of `student` with distillation from `teacher`."""
    callbacks = [BlockPruningCallback(pruning_args or PruningArguments())] + list(trainer_kwargs.pop("callbacks", []))
    return DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=train_dataset,
                               distillation_args=distillation_args, callbacks=callbacks, **trainer_kwargs)


def quantize_and_distill(student: nn.Module, teacher: nn.Module, args: TrainingArguments, train_dataset,
                         qat_args: QATArguments | None = None, distillation_args: DistillationArguments | None = None,
                         block_shape: tuple[int, int] | None = (4, 1), **trainer_kwargs) -> DistillationTrainer:
    """QAT + distillation of a (sparse) student; its zero blocks stay zero when `block_shape` is given
    (pattern lock in that block shape; pass None for a dense student)."""
    qat_args = qat_args or QATArguments()
    prepare_qat(student, qat_args)
    callbacks = [ObserverFreezeCallback(qat_args)]
    if block_shape is not None:
        lock = PruningArguments(pattern_lock=True, pruning_block_shape=f"{block_shape[0]},{block_shape[1]}")
        callbacks.append(BlockPruningCallback(lock))
    callbacks += list(trainer_kwargs.pop("callbacks", []))
    return DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=train_dataset,
                               distillation_args=distillation_args, callbacks=callbacks, **trainer_kwargs)
