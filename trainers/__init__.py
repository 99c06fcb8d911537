"""Trainers for block pruning, distillation and quantization-aware training (fastdistilbert.trainers).

Everything composes with the usual `transformers.Trainer` workflow:
- `BlockPruningCallback` (+ `PruningArguments`): gradual (4,1)/(1,4) block-magnitude pruning, pattern lock.
- `DistillationTrainer` (+ `DistillationArguments`): CE + temperature KD (+ hidden-state MSE) from a teacher.
- `prepare_qat`, `calibrate_observers`, `ObserverFreezeCallback` (+ `QATArguments`), `export_to_fast`: QAT and
  the INT8 export.
- `prune_and_distill`, `quantize_and_distill`: the two stages of the paper's recipe, ready-made.
"""
from .arguments import DistillationArguments, PruningArguments, QATArguments
from .callbacks import BlockPruningCallback, CompressionCallback, ObserverFreezeCallback
from .distillation import DistillationTrainer
from .pruning import BlockPruner
from .qat import FakeQuantLinear, calibrate_observers, export_to_fast, prepare_qat
from .schedule import cubic_sparsity
from .stages import prune_and_distill, quantize_and_distill
from .trainer import CompressionTrainer

__all__ = [
    "BlockPruner",
    "BlockPruningCallback",
    "CompressionCallback",
    "CompressionTrainer",
    "DistillationArguments",
    "DistillationTrainer",
    "FakeQuantLinear",
    "ObserverFreezeCallback",
    "PruningArguments",
    "QATArguments",
    "calibrate_observers",
    "cubic_sparsity",
    "export_to_fast",
    "prepare_qat",
    "prune_and_distill",
    "quantize_and_distill",
]
