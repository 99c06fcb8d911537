"""Block masks, the cubic schedule and the pruning callback on tiny models."""
from __future__ import annotations

import shutil

import pytest
import torch
from test_trainers_support import tiny_qa_dataset, tiny_qa_model, tiny_training_args
from transformers import HfArgumentParser

from fastdistilbert.trainers.arguments import PruningArguments
from fastdistilbert.trainers.callbacks import BlockPruningCallback
from fastdistilbert.trainers.mask_io import MASKS_FILE_NAME, load_masks
from fastdistilbert.trainers.pruning import (
    BlockPruner,
    expand_block_mask,
    find_target_linears,
    magnitude_block_mask,
    num_blocks_to_prune,
)
from fastdistilbert.trainers.schedule import cubic_sparsity, is_mask_update_step
from fastdistilbert.trainers.trainer import CompressionTrainer


def test_cubic_sparsity_formula_and_clamping():
    assert cubic_sparsity(0, 0.1, 0.8, 10, 20) == 0.1
    assert cubic_sparsity(10, 0.1, 0.8, 10, 20) == pytest.approx(0.1)
    # halfway: s_f + (s_i - s_f) * 0.5^3
    assert cubic_sparsity(15, 0.1, 0.8, 10, 20) == pytest.approx(0.8 - 0.7 * 0.125)
    assert cubic_sparsity(20, 0.1, 0.8, 10, 20) == 0.8
    assert cubic_sparsity(99, 0.1, 0.8, 10, 20) == 0.8
    assert cubic_sparsity(5, 0.0, 0.5, 5, 5) == 0.5
    with pytest.raises(ValueError, match="end_step"):
        cubic_sparsity(0, 0.0, 0.8, 10, 5)
    with pytest.raises(ValueError, match="target"):
        cubic_sparsity(0, 0.0, 1.0, 0, 5)


def test_mask_update_steps_include_the_end_step():
    assert [t for t in range(20) if is_mask_update_step(t, 2, 11, 4)] == [2, 6, 10, 11]


def test_num_blocks_to_prune_rounds_half_up():
    assert num_blocks_to_prune(0.8, 10) == 8
    assert num_blocks_to_prune(0.25, 2) == 1
    assert num_blocks_to_prune(0.29, 100) == 29
    assert num_blocks_to_prune(0.0, 7) == 0


@pytest.mark.parametrize("block_shape", [(4, 1), (1, 4)])
def test_magnitude_mask_prunes_lowest_blocks_exactly(block_shape):
    torch.manual_seed(0)
    weight = torch.randn(8, 12)
    mask = magnitude_block_mask(weight, 0.75, block_shape)
    rows, cols = block_shape
    assert mask.shape == (8 // rows, 12 // cols)
    assert int((~mask).sum()) == 18  # 0.75 * 24 blocks
    scores = weight.abs().reshape(8 // rows, rows, 12 // cols, cols).mean(dim=(1, 3))
    assert scores[~mask].max() <= scores[mask].min()
    full = expand_block_mask(mask, block_shape)
    assert full.shape == weight.shape
    assert torch.equal(full[::rows, ::cols], mask)


def test_ties_are_broken_by_block_index():
    weight = torch.ones(4, 6)  # six equal (4, 1) blocks
    mask = magnitude_block_mask(weight, 0.5, (4, 1))
    assert mask.tolist() == [[False, False, False, True, True, True]]


def test_indivisible_weight_is_a_clear_error():
    with pytest.raises(ValueError, match=r"multiple of 4"):
        magnitude_block_mask(torch.randn(6, 8), 0.5, (4, 1))


def test_default_targets_are_encoder_linears_only():
    names = find_target_linears(tiny_qa_model())
    assert len(names) == 2 * 6
    assert all(".transformer.layer." in n for n in names)
    assert not any("qa_outputs" in n or "embeddings" in n for n in names)
    with pytest.raises(ValueError, match="no nn.Linear"):
        find_target_linears(tiny_qa_model(), target_modules=[r"nothing_like_this$"])


def test_pattern_lock_keeps_existing_zero_blocks():
    model = tiny_qa_model()
    pruner = BlockPruner(model, (1, 4))
    pruner.compute_magnitude_masks(0.6)
    pruner.apply_masks()
    before = {n: m.clone() for n, m in pruner.masks.items()}
    locked = BlockPruner(model, (1, 4))
    locked.lock_current_pattern()
    assert locked.masks.keys() == before.keys()
    assert all(torch.equal(locked.masks[n], before[n]) for n in before)


def test_pruning_arguments_parse_with_hf_argument_parser():
    (args,) = HfArgumentParser(PruningArguments).parse_args_into_dataclasses(
        ["--target_sparsity", "0.7", "--pruning_block_shape", "1,4", "--pruning_end_step", "30"]
    )
    assert args.block_shape == (1, 4) and args.target_sparsity == 0.7 and args.end_step(100) == 30
    assert PruningArguments().end_step(90) == 60
    with pytest.raises(ValueError, match="target_sparsity"):
        PruningArguments(target_sparsity=1.5)


def _train(tmp_path, pruning_args, model=None, **training_overrides):
    model = model or tiny_qa_model()
    callback = BlockPruningCallback(pruning_args)
    trainer = CompressionTrainer(
        model=model, args=tiny_training_args(tmp_path, **training_overrides),
        train_dataset=tiny_qa_dataset(), callbacks=[callback],
    )
    return trainer, callback


@pytest.mark.parametrize("block_shape", ["4,1", "1,4"])
def test_sparsity_follows_schedule_and_lands_on_target(tmp_path, block_shape):
    args = PruningArguments(target_sparsity=0.8, initial_sparsity=0.1, pruning_start_step=2, pruning_end_step=9,
                            pruning_frequency=3, pruning_block_shape=block_shape)
    trainer, callback = _train(tmp_path, args)
    trainer.train()
    pruner = callback.pruner
    block_counts = {n: m.numel() for n, m in pruner.masks.items()}

    def expected(step):
        updates = [t for t in range(2, step + 1) if is_mask_update_step(t, 2, 9, 3)]
        s = cubic_sparsity(updates[-1] if updates else 0, 0.1, 0.8, 2, 9)
        return sum(num_blocks_to_prune(s, n) for n in block_counts.values()) / sum(block_counts.values())

    logged = {h["step"]: h["sparsity"] for h in trainer.state.log_history if "loss" in h}
    assert sorted(logged) == list(range(1, 13))
    for step, sparsity in logged.items():
        assert sparsity == pytest.approx(expected(step), abs=1e-6), step
    # exactly on target in the chosen pattern: every pruned block of every weight is zero
    rows, cols = args.block_shape
    for name, module in pruner.modules.items():
        mask = pruner.masks[name]
        assert int((~mask).sum()) == num_blocks_to_prune(0.8, mask.numel())
        blocks = module.weight.detach().reshape(mask.shape[0], rows, mask.shape[1], cols)
        assert torch.all(blocks.abs().amax(dim=(1, 3))[~mask] == 0)
        assert torch.all(blocks.abs().amax(dim=(1, 3))[mask] > 0)


def test_masks_survive_checkpoint_and_resume(tmp_path):
    args = PruningArguments(target_sparsity=0.75, pruning_start_step=1, pruning_end_step=10, pruning_frequency=2)
    save = dict(save_strategy="steps", save_steps=6)
    full_trainer, full = _train(tmp_path / "full", args, **save)
    full_trainer.train()

    checkpoint = tmp_path / "full" / "checkpoint-6"
    saved, block_shape = load_masks(checkpoint)
    assert block_shape == (4, 1) and saved.keys() == full.pruner.masks.keys()
    assert all(m.dtype == torch.bool for m in saved.values())

    resumed_trainer, resumed = _train(tmp_path / "resumed", args, model=tiny_qa_model(seed=1), **save)
    resumed_trainer.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.pruner.digest() == full.pruner.digest()
    for name, module in resumed.pruner.modules.items():
        torch.testing.assert_close(module.weight, full.pruner.modules[name].weight, rtol=0, atol=0)

    shutil.rmtree(tmp_path / "full" / "checkpoint-12")  # resume_from_checkpoint=True now finds checkpoint-6
    again_trainer, again = _train(tmp_path / "full", args, model=tiny_qa_model(seed=1), **save)
    again_trainer.train(resume_from_checkpoint=True)
    assert again.pruner.digest() == full.pruner.digest()


def test_resume_without_masks_is_a_clear_error(tmp_path):
    args = PruningArguments(target_sparsity=0.5, pruning_end_step=4, pruning_frequency=2)
    trainer, _ = _train(tmp_path / "run", args, max_steps=6, save_strategy="steps", save_steps=6)
    trainer.train()
    (tmp_path / "run" / "checkpoint-6" / MASKS_FILE_NAME).unlink()
    again, _ = _train(tmp_path / "again", args)
    with pytest.raises(FileNotFoundError, match=MASKS_FILE_NAME):
        again.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-6"))
