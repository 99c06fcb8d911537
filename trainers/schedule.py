"""Sparsity schedules as pure functions of the training step (no state, so every process agrees)."""
from __future__ import annotations


def cubic_sparsity(step: int, initial: float, target: float, start_step: int, end_step: int) -> float:
    """Sparsity at `step` under the cubic ramp of Zhu & Gupta (2017), "To prune, or not to prune".

        s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** 3      for t0 <= t <= t1

    with s_i = `initial`, s_f = `target`, t0 = `start_step`, t1 = `end_step`; clamped outside the ramp:
    s_t = s_i for t < t0 and s_t = s_f for t >= t1. The ramp prunes fast while the network still has
    redundant weights and slowly near the target, where each removed block costs more accuracy.
    `start_step == end_step` is a one-shot jump to the target at that step.
    """
    for name, value in (("initial", initial), ("target", target)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} sparsity must be in [0, 1), got {value}")
    if start_step < 0 or end_step < start_step:
        raise ValueError(f"need 0 <= start_step <= end_step, got start_step={start_step}, end_step={end_step}")
    if step < start_step:
        return float(initial)
    if step >= end_step:
        return float(target)
    progress = (step - start_step) / (end_step - start_step)
    return float(target + (initial - target) * (1.0 - progress) ** 3)


def is_mask_update_step(step: int, start_step: int, end_step: int, frequency: int) -> bool:
    """Whether masks are recomputed after `step` optimizer steps: every `frequency` steps from
    `start_step` on, and always at `end_step` so the target is reached exactly there."""
    if frequency < 1:
        raise ValueError(f"mask update frequency must be >= 1, got {frequency}")
    if step < start_step or step > end_step:
        return False
    return step == end_step or (step - start_step) % frequency == 0
