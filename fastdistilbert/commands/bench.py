"""`fastdistilbert bench`: the end-to-end benchmark of the Fast INT8 model against PyTorch fp32, PyTorch dynamic
INT8, ONNX Runtime INT8 and OpenVINO INT8 on the same weights (peers not installed are skipped with a note;
`pip install .[bench]`)."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from ..benchmarking.model import add_arguments

    p = subparsers.add_parser("bench", help="benchmark the Fast model against CPU runtimes (seq/s, p50/p90)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..benchmarking.model import run as run_benchmark

    return run_benchmark(args)
