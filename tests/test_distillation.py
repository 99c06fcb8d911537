"""DistillationTrainer: loss terms, teacher handling, task-agnostic hidden-state distillation."""
from __future__ import annotations

import copy

import pytest
import torch
from test_trainers_support import tiny_qa_dataset, tiny_qa_model, tiny_training_args
from transformers import DistilBertModel, HfArgumentParser, default_data_collator

from fastdistilbert.trainers.arguments import DistillationArguments
from fastdistilbert.trainers.distillation import DistillationTrainer, hidden_state_mse, kd_kl_loss, qa_cross_entropy


def _batch(n=8, labels=True):
    return default_data_collator(tiny_qa_dataset(n, seed=3, labels=labels))


def _trainer(tmp_path, student, teacher, dataset=None, **distillation):
    return DistillationTrainer(
        model=student, teacher_model=teacher, args=tiny_training_args(tmp_path, max_steps=4),
        distillation_args=DistillationArguments(**distillation), train_dataset=dataset or tiny_qa_dataset(),
    )


def test_kd_matches_hand_computed_kl():
    torch.manual_seed(0)
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    T = 2.0
    p_t = torch.softmax(t / T, -1)
    expected = (p_t * (torch.log(p_t) - torch.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    torch.testing.assert_close(kd_kl_loss(s, t, T), expected)


def test_qa_cross_entropy_matches_hf_loss():
    model = tiny_qa_model()
    batch = _batch()
    out = model(**batch)
    torch.testing.assert_close(qa_cross_entropy(out.start_logits, out.end_logits, batch["start_positions"],
                                                batch["end_positions"]), out.loss)


def test_kd_is_zero_when_student_is_teacher(tmp_path):
    student = tiny_qa_model()
    trainer = _trainer(tmp_path, student, copy.deepcopy(student))
    batch = _batch()
    student.train()  # dropout is 0 in the tiny config, so train mode computes what eval mode does
    loss = trainer.compute_loss(student, batch)
    ce = qa_cross_entropy(*student(**{k: v for k, v in batch.items() if "positions" not in k}).to_tuple(),
                          batch["start_positions"], batch["end_positions"])
    assert trainer._loss_parts["kd"] == [0.0]
    assert loss.item() == pytest.approx(0.5 * ce.item(), rel=1e-6)


def test_kd_is_positive_for_a_different_teacher_and_alpha_weights_the_terms(tmp_path):
    student, teacher = tiny_qa_model(seed=0), tiny_qa_model(seed=1)
    batch = _batch()
    only_kd = _trainer(tmp_path, student, teacher, distillation_alpha=0.0).compute_loss(student, batch)
    only_ce = _trainer(tmp_path, student, teacher, distillation_alpha=1.0).compute_loss(student, batch)
    mixed = _trainer(tmp_path, student, teacher, distillation_alpha=0.25).compute_loss(student, batch)
    assert only_kd.item() > 0
    assert mixed.item() == pytest.approx(0.25 * only_ce.item() + 0.75 * only_kd.item(), rel=1e-5)


def test_training_keeps_teacher_frozen_and_logs_loss_parts(tmp_path):
    student, teacher = tiny_qa_model(seed=0), tiny_qa_model(seed=1)
    before = copy.deepcopy(teacher.state_dict())
    trainer = _trainer(tmp_path, student, teacher)
    trainer.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 4 and all(h["loss_kd"] > 0 and h["loss_ce"] > 0 for h in logged)
    assert trainer.label_names == ["start_positions", "end_positions"]


def test_task_agnostic_hidden_state_distillation_on_unlabeled_text(tmp_path):
    teacher = tiny_qa_model(seed=1, n_layers=4).distilbert
    student = DistilBertModel(teacher.config.__class__(**{**teacher.config.to_dict(), "n_layers": 2}))
    trainer = _trainer(tmp_path, student, teacher, dataset=tiny_qa_dataset(labels=False), hidden_state_loss_weight=1.0)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 4
    assert all("loss_hidden" in h and "loss_ce" not in h and "loss_kd" not in h for h in logged)
    assert logged[-1]["loss_hidden"] < logged[0]["loss_hidden"]


def test_hidden_state_loss_ignores_padding():
    teacher = tiny_qa_model(seed=1)
    student = tiny_qa_model(seed=1)
    batch = _batch(labels=False)
    with torch.no_grad():  # move only padding-position hidden states: the masked loss must not change
        t_states = teacher(**batch, output_hidden_states=True).hidden_states
        s_states = [h.clone() for h in t_states]
    pad = batch["attention_mask"] == 0
    assert pad.any()
    for h in s_states:
        h[pad] += 5.0
    assert hidden_state_mse(s_states, t_states, batch["attention_mask"]).item() == 0.0
    assert hidden_state_mse(s_states, t_states, None).item() > 0


def test_missing_labels_without_label_free_terms_is_a_clear_error(tmp_path):
    student = tiny_qa_model()
    trainer = _trainer(tmp_path, student, copy.deepcopy(student), distillation_alpha=1.0)
    with pytest.raises(ValueError, match="no loss term applies"):
        trainer.compute_loss(student, _batch(labels=False))


def test_distillation_arguments_parse_and_validate():
    (args,) = HfArgumentParser(DistillationArguments).parse_args_into_dataclasses(
        ["--distillation_temperature", "3", "--distillation_alpha", "0.2"])
    assert args.distillation_temperature == 3.0 and args.distillation_alpha == 0.2
    assert DistillationArguments().distillation_temperature == 2.0 and DistillationArguments().distillation_alpha == 0.5
    with pytest.raises(ValueError, match="temperature"):
        DistillationArguments(distillation_temperature=0)


def test_gradient_accumulation_gives_the_gradient_of_the_full_batch(tmp_path):
    """The loss is a per-batch mean, so 2 accumulated half batches must step like one full batch."""
    teacher = tiny_qa_model(seed=1)
    data = tiny_qa_dataset(8)
    weights = []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        student = tiny_qa_model(seed=0)
        args = tiny_training_args(tmp_path / f"ga{accumulation}", max_steps=1, optim="sgd", learning_rate=0.5,
                                  lr_scheduler_type="constant", per_device_train_batch_size=batch_size,
                                  gradient_accumulation_steps=accumulation, max_grad_norm=0.0)
        DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data).train()
        weights.append(student.qa_outputs.weight.detach().clone())
    assert not torch.equal(weights[0], tiny_qa_model(seed=0).qa_outputs.weight)
    torch.testing.assert_close(weights[1], weights[0], rtol=0, atol=1e-6)


def test_hidden_state_loss_needs_equal_hidden_sizes(tmp_path):
    student, teacher = tiny_qa_model(), tiny_qa_model(dim=16, hidden_dim=32)
    trainer = _trainer(tmp_path, student, teacher, hidden_state_loss_weight=1.0)
    with pytest.raises(ValueError, match="equal hidden sizes"):
        trainer.compute_loss(student, _batch())


def test_trainer_positional_arguments_keep_transformers_order(tmp_path):
    args = tiny_training_args(tmp_path)
    trainer = DistillationTrainer(tiny_qa_model(), args, teacher_model=tiny_qa_model(seed=1))
    assert trainer.args is args
    with pytest.raises(ValueError, match="teacher_model"):
        DistillationTrainer(tiny_qa_model(), args)


def test_half_labelled_batch_is_a_clear_error(tmp_path):
    student = tiny_qa_model()
    batch = _batch()
    del batch["end_positions"]
    with pytest.raises(ValueError, match="start_positions but not the other"):
        _trainer(tmp_path, student, copy.deepcopy(student)).compute_loss(student, batch)


def test_teacher_with_another_vocabulary_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        _trainer(tmp_path, tiny_qa_model(), tiny_qa_model(vocab_size=80))
    with pytest.raises(ValueError, match="same tokens"):
        kd_kl_loss(torch.zeros(2, 5), torch.zeros(2, 6), 2.0)
