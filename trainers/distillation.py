"""Knowledge distillation for extractive question answering.

    loss = alpha * CE(start, end)  +  (1 - alpha) * KD  [+ w_hidden * hidden-state MSE]
    KD   = T^2 * ( KL(softmax(t_start / T) || softmax(s_start / T)) + KL(... end ...) ) / 2

CE is the usual HF QA loss (mean of the start and end cross-entropies, positions outside the sequence
ignored). The T^2 factor keeps KD's gradient scale independent of T (Hinton et al., 2015). KL is
averaged over the batch ("batchmean"). Logits of padding positions take part exactly as they do in HF's
QA loss (they are not masked), so a student that matches its teacher has zero KD loss.

Without start/end positions (unlabeled text) only the label-free terms remain: KD on the logits and the
hidden-state MSE, which is the loss for task-agnostic distillation (`hidden_state_loss_weight > 0`).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from .arguments import DistillationArguments
from .trainer import CompressionTrainer

LABEL_NAMES = ("start_positions", "end_positions")


def qa_cross_entropy(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    """HF's QA loss: positions are clamped to seq_len, which is then ignored (answers cut off by truncation)."""
    ignored_index = start_logits.size(1)
    start_positions = start_positions.clamp(0, ignored_index)
    end_positions = end_positions.clamp(0, ignored_index)
    start = F.cross_entropy(start_logits, start_positions, ignore_index=ignored_index)
    end = F.cross_entropy(end_logits, end_positions, ignore_index=ignored_index)
    return (start + end) / 2


def kd_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: both models must see the same tokens")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


def hidden_state_mse(student_states, teacher_states, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error between student and teacher hidden states over real tokens, averaged over layers.

    Student state i (0 = embeddings) is matched with teacher state i * L_t // L_s, i.e. uniformly spaced
    teacher layers (the student's last layer always meets the teacher's last layer).
    """
    n_student, n_teacher = len(student_states) - 1, len(teacher_states) - 1
    if n_student < 1 or n_teacher % n_student:
        raise ValueError(f"teacher layers ({n_teacher}) must be a multiple of student layers ({n_student})")
    losses = []
    for i, student in enumerate(student_states):
        teacher = teacher_states[i * n_teacher // n_student]
        if student.shape != teacher.shape:
            raise ValueError(f"hidden state {i}: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}; "
                             "hidden-state distillation needs equal hidden sizes")
        squared = (student - teacher).pow(2).mean(dim=-1)
        if attention_mask is None:
            losses.append(squared.mean())
        else:
            mask = attention_mask.to(squared.dtype)
            losses.append((squared * mask).sum() / mask.sum().clamp(min=1))
    return torch.stack(losses).mean()


def _accepted_inputs(model: nn.Module) -> set[str] | None:
    """Names the model's forward accepts, or None when it takes **kwargs (then everything is passed)."""
    params = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


def _check_same_vocabulary(student: nn.Module | None, teacher: nn.Module) -> None:
    """Distillation compares the two models token by token: they must share the tokenizer's vocabulary."""
    sizes = [getattr(getattr(m, "config", None), "vocab_size", None) for m in (student, teacher)]
    if None not in sizes and sizes[0] != sizes[1]:
        raise ValueError(f"student vocab_size {sizes[0]} != teacher vocab_size {sizes[1]}: "
                         "distillation needs both models to use the same tokenizer")


class DistillationTrainer(CompressionTrainer):
    """`Trainer` whose loss distills `teacher_model` into the student (`model`).

    The teacher is frozen (no gradients), kept in eval mode (no dropout) and moved to the student's device at
    the first step; it is not a submodule of the student, so it is neither saved nor wrapped for DDP, and
    every process runs its own copy. Combine with `BlockPruningCallback` (prune + distill) or a model prepared
    by `qat.prepare_qat` (QAT + distill).
    """

    # The loss is a per-batch mean, not normalized by num_items_in_batch: training_step must still divide it by
    # the gradient-accumulation steps (transformers' default would assume it was already scaled).
    loss_is_scaled_for_ga = False

    def __init__(self, model=None, args=None, *trainer_args, teacher_model: nn.Module | None = None,
                 distillation_args: DistillationArguments | None = None, **kwargs):
        if teacher_model is None:
            raise ValueError("DistillationTrainer needs a teacher_model=")
        _check_same_vocabulary(model, teacher_model)
        super().__init__(model, args, *trainer_args, **kwargs)
        self.distillation_args = distillation_args or DistillationArguments()
        self.teacher = teacher_model.eval().requires_grad_(False)
        self._teacher_inputs = _accepted_inputs(self.teacher)
        if self.args.label_names is None:
            # Trainer finds start/end_positions only in classes named *QuestionAnswering* (wrappers lose them).
            self.label_names = list(LABEL_NAMES)
        self._loss_parts: dict[str, list[float]] = {}

    def _run_teacher(self, inputs: dict, device: torch.device, hidden_states: bool):
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        self.teacher.eval()  # in case anything called .train() on it
        accepted = self._teacher_inputs
        teacher_inputs = {k: v for k, v in inputs.items() if accepted is None or k in accepted}
        with torch.no_grad():
            return self.teacher(**teacher_inputs, output_hidden_states=hidden_states, return_dict=True)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        d = self.distillation_args
        labels = {k: inputs[k] for k in LABEL_NAMES if k in inputs}
        if len(labels) == 1:
            raise ValueError(f"the batch has {next(iter(labels))} but not the other of {LABEL_NAMES}")
        features = {k: v for k, v in inputs.items() if k not in LABEL_NAMES}
        want_hidden = d.hidden_state_loss_weight > 0
        outputs = model(**features, output_hidden_states=want_hidden, return_dict=True)
        has_logits = getattr(outputs, "start_logits", None) is not None
        want_kd = has_logits and d.distillation_alpha < 1
        if want_kd or want_hidden:
            teacher_outputs = self._run_teacher(features, next(model.parameters()).device, want_hidden)

        parts: dict[str, torch.Tensor] = {}
        weights: dict[str, float] = {}
        if labels and has_logits and d.distillation_alpha > 0:
            parts["ce"] = qa_cross_entropy(outputs.start_logits, outputs.end_logits,
                                           labels["start_positions"], labels["end_positions"])
            weights["ce"] = d.distillation_alpha
        if want_kd:
            T = d.distillation_temperature
            parts["kd"] = (kd_kl_loss(outputs.start_logits, teacher_outputs.start_logits, T)
                           + kd_kl_loss(outputs.end_logits, teacher_outputs.end_logits, T)) / 2
            weights["kd"] = 1.0 - d.distillation_alpha
        if want_hidden:
            parts["hidden"] = hidden_state_mse(outputs.hidden_states, teacher_outputs.hidden_states,
                                               features.get("attention_mask"))
            weights["hidden"] = d.hidden_state_loss_weight
        if not parts:
            raise ValueError("no loss term applies: the batch has no start/end_positions, the model returns no "
                             "start/end logits and hidden_state_loss_weight is 0")
        loss = sum(weights[k] * v for k, v in parts.items())
        if model.training:
            for name, value in parts.items():
                self._loss_parts.setdefault(name, []).append(float(value.detach()))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # the components of the training loss since the last log, beside the Trainer's "loss"
        if "loss" in logs:
            for name, values in self._loss_parts.items():
                logs[f"loss_{name}"] = round(sum(values) / len(values), 6)
            self._loss_parts = {}
        super().log(logs, start_time)
