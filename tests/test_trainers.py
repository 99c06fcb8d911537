"""The stages composed: prune + distill, then QAT + distill with the pattern locked, then export."""
from __future__ import annotations

import pytest
import torch
from test_trainers_support import tiny_qa_dataset, tiny_qa_model, tiny_training_args

from fastdistilbert.modules import QuantizedLinear
from fastdistilbert.trainers import (
    BlockPruningCallback,
    PruningArguments,
    QATArguments,
    export_to_fast,
    prune_and_distill,
    quantize_and_distill,
)
from fastdistilbert.trainers.pruning import expand_block_mask


@pytest.mark.parametrize("block_shape", [(4, 1), (1, 4)])
def test_prune_distill_then_qat_distill_then_export(tmp_path, block_shape):
    teacher = tiny_qa_model(seed=1)
    student = tiny_qa_model(seed=2)
    data = tiny_qa_dataset()
    pruning = PruningArguments(target_sparsity=0.75, pruning_end_step=6, pruning_frequency=2,
                               pruning_block_shape=f"{block_shape[0]},{block_shape[1]}")
    stage1 = prune_and_distill(student, teacher, tiny_training_args(tmp_path / "prune", max_steps=8), data, pruning)
    stage1.train()
    masks = {n: m.clone() for n, m in next(c for c in stage1.callback_handler.callbacks
                                         if isinstance(c, BlockPruningCallback)).pruner.masks.items()}
    logs = [h for h in stage1.state.log_history if "loss" in h]
    assert logs[-1]["sparsity"] == pytest.approx(0.75) and "loss_kd" in logs[-1] and "loss_ce" in logs[-1]

    qat = QATArguments(observer_momentum=0.5, freeze_observers_step=3)
    stage2 = quantize_and_distill(stage1.model, teacher, tiny_training_args(tmp_path / "qat", max_steps=6), data, qat,
                                  block_shape=block_shape)
    stage2.train()
    logs = [h for h in stage2.state.log_history if "loss" in h]
    assert all(h["sparsity"] == pytest.approx(0.75) for h in logs)

    fast = export_to_fast(stage2.model)
    for name, module in fast.named_modules():
        if isinstance(module, QuantizedLinear):
            pruned = ~expand_block_mask(masks[name], block_shape)
            assert torch.all(module.weight[pruned] == 0), name  # the stage-1 pattern, in the int8 weights
            assert module.input_scale.item() > 0
    assert fast.config.is_quantized


def test_all_argument_dataclasses_parse_together_with_training_arguments():
    from transformers import HfArgumentParser, TrainingArguments

    from fastdistilbert.trainers import DistillationArguments

    parser = HfArgumentParser((TrainingArguments, PruningArguments, DistillationArguments, QATArguments))
    training, pruning, distillation, qat = parser.parse_args_into_dataclasses(
        ["--output_dir", "out", "--target_sparsity", "0.8", "--pruning_modules", r"ffn\.lin1$", r"ffn\.lin2$",
         "--distillation_alpha", "0.3", "--freeze_observers_step", "50", "--use_cpu"])
    assert pruning.pruning_modules == [r"ffn\.lin1$", r"ffn\.lin2$"] and pruning.block_shape == (4, 1)
    assert distillation.distillation_alpha == 0.3 and distillation.distillation_temperature == 2.0
    assert qat.freeze_observers_step == 50 and training.output_dir == "out"
