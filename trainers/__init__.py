"""Trainers for block pruning, distillation and quantization-aware training (fastdistilbert.trainers)."""
