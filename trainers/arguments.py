"""Argument dataclasses for `transformers.HfArgumentParser` (field names are prefixed so they never
collide with `TrainingArguments` when parsed together)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .pruning import DEFAULT_TARGET_MODULES, check_block_shape


def _check_fraction(name: str, value: float, upper_inclusive: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"{name} must be in [0, 1{']' if upper_inclusive else ')'}, got {value}")


@dataclass
class PruningArguments:
    """Gradual block-magnitude pruning (cubic schedule) or pattern-locked fine-tuning of a sparse model."""

    target_sparsity: float = field(default=0.8, metadata={"help": "Fraction of blocks pruned in every target layer at the end of the ramp."})
    initial_sparsity: float = field(default=0.0, metadata={"help": "Sparsity at pruning_start_step."})
    pruning_start_step: int = field(default=0, metadata={"help": "Optimizer step where the cubic ramp starts."})
    pruning_end_step: int | None = field(
        default=None,
        metadata={"help": "Optimizer step where target_sparsity is reached; default: 2/3 of the run's max_steps, "
                  "so the last third fine-tunes at the final sparsity."},
    )
    pruning_frequency: int = field(default=100, metadata={"help": "Recompute the masks every N optimizer steps during the ramp."})
    pruning_block_shape: str = field(
        default="4,1",
        metadata={"help": "Block of W[out, in]: '4,1' = 4 output channels x 1 input channel, '1,4' = 1 x 4 input channels.",
                  "choices": ["4,1", "1,4"]},
    )
    pattern_lock: bool = field(
        default=False,
        metadata={"help": "Fine-tune an already sparse model: masks = its current nonzero blocks, never recomputed."},
    )
    pruning_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={"help": "Regexes (re.search) of the Linear module names to prune; default: DistilBERT encoder Linears."},
    )
    pruning_exclude_modules: list[str] = field(default_factory=list, metadata={"help": "Regexes of module names never pruned."})

    def __post_init__(self):
        _check_fraction("initial_sparsity", self.initial_sparsity)
        _check_fraction("target_sparsity", self.target_sparsity)
        if self.pruning_frequency < 1:
            raise ValueError(f"pruning_frequency must be >= 1, got {self.pruning_frequency}")
        if self.pruning_start_step < 0:
            raise ValueError(f"pruning_start_step must be >= 0, got {self.pruning_start_step}")
        if self.pruning_end_step is not None and self.pruning_end_step < self.pruning_start_step:
            raise ValueError(
                f"pruning_end_step ({self.pruning_end_step}) must be >= pruning_start_step ({self.pruning_start_step})"
            )
        check_block_shape(self.block_shape)  # parse and validate now, not when training starts

    @property
    def block_shape(self) -> tuple[int, int]:
        try:
            parsed = tuple(int(v) for v in str(self.pruning_block_shape).split(","))
        except ValueError:
            raise ValueError(f"pruning_block_shape must look like '4,1', got {self.pruning_block_shape!r}") from None
        return check_block_shape(parsed)

    def end_step(self, max_steps: int) -> int:
        """pruning_end_step, or 2/3 of `max_steps` when unset (never before the start step)."""
        if self.pruning_end_step is not None:
            return self.pruning_end_step
        return max(self.pruning_start_step, (2 * max_steps) // 3)


@dataclass
class DistillationArguments:
    """loss = alpha * hard CE + (1 - alpha) * KD(T) [+ hidden_state_loss_weight * hidden-state MSE]."""

    distillation_temperature: float = field(default=2.0, metadata={"help": "Softmax temperature T of the KD term (scaled by T^2)."})
    distillation_alpha: float = field(default=0.5, metadata={"help": "Weight of the hard-label CE; KD gets 1 - alpha."})
    hidden_state_loss_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the MSE between student and teacher hidden states (task-agnostic distillation; "
                  "the only term that needs no labels and no task head)."},
    )

    def __post_init__(self):
        if not self.distillation_temperature > 0:
            raise ValueError(f"distillation_temperature must be > 0, got {self.distillation_temperature}")
        _check_fraction("distillation_alpha", self.distillation_alpha, upper_inclusive=True)
        if self.hidden_state_loss_weight < 0:
            raise ValueError(f"hidden_state_loss_weight must be >= 0, got {self.hidden_state_loss_weight}")


@dataclass
class QATArguments:
    """Fake quantization (s8 per-channel weights, u8 per-tensor activations) of the target Linear layers."""

    activation_observer: str = field(
        default="ema",
        metadata={"help": "'ema': activation range = moving average of batch min/max until frozen; 'learned': "
                  "the range is observed until freeze, then trained by gradient descent.",
                  "choices": ["ema", "learned"]},
    )
    observer_momentum: float = field(default=0.01, metadata={"help": "EMA weight of each new batch's min/max."})
    freeze_observers_step: int | None = field(
        default=None, metadata={"help": "Optimizer step after which activation ranges stop following the data (None: never)."}
    )
    qat_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={"help": "Regexes of the Linear module names to fake-quantize (must be what the runtime quantizes)."},
    )

    shared_input_groups: list[str] = field(
        default_factory=lambda: ["q_lin,k_lin,v_lin"],
        metadata={"help": "Comma-separated sibling Linears that read the same input and share one input range "
                  "(the runtime fuses Q, K and V into one kernel); the first one observes or learns it."},
    )

    def __post_init__(self):
        if self.activation_observer not in ("ema", "learned"):
            raise ValueError(f"activation_observer must be 'ema' or 'learned', got {self.activation_observer!r}")
        if not 0.0 < self.observer_momentum <= 1.0:
            raise ValueError(f"observer_momentum must be in (0, 1], got {self.observer_momentum}")
        if self.activation_observer == "learned" and self.freeze_observers_step is None:
            raise ValueError("activation_observer='learned' needs freeze_observers_step (the step where learning starts)")
