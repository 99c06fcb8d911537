"""Speed of trained QA checkpoints on the fast path, beside HF's own fp32 DistilBERT on the teacher's weights:
the "their speed on the fast path" column of the real-data proof (the README's training table).

    python benchmarks/bench_checkpoints.py --teacher runs/teacher3 runs/s50 runs/s70 runs/s80 [--points 128x8,256x8]

Each record: model, format(s), seq, batch, seq_per_s, p50_ms, p90_ms, with the CPU, ISA, threads and versions.
Inputs are random token ids of full length (speed does not depend on the text); ratios are against the teacher's
HF fp32 model measured in the same run, every model timed at every point in `--rounds` turns (as `bench_model.py`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import DistilBertForQuestionAnswering

import fastdistilbert as fd
from fastdistilbert.benchmarking.env import environment, summarize
from fastdistilbert.benchmarking.model import check_turns, in_process_timer, measure_in_turns, parse_points
from fastdistilbert.errors import UserError
from fastdistilbert.benchmarking.peers import torch_runner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="Fast INT8 checkpoint directories")
    p.add_argument("--teacher", required=True, help="the dense fp32 teacher (HF DistilBertForQuestionAnswering)")
    p.add_argument("--points", default="128x8,256x8", help="seq x batch list")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget", type=float, default=3.0, help="seconds per point and model, over all rounds")
    p.add_argument("--rounds", type=int, default=3, help="turns in which every model is timed at each point")
    p.add_argument("--json", help="write the records here (never overwritten)")
    args = p.parse_args()
    if args.json and Path(args.json).exists():
        raise SystemExit(f"{args.json} exists; choose another path")
    try:
        check_turns(args.rounds, args.budget)
    except UserError as exc:
        raise SystemExit(str(exc)) from None
    torch.set_num_threads(args.threads)
    models = {"teacher (HF fp32)": (torch_runner(DistilBertForQuestionAnswering.from_pretrained(args.teacher).eval()),
                                    ["fp32"])}
    for path in args.checkpoints:
        model = fd.FastDistilBertForQuestionAnswering.from_pretrained(path).eval()
        model.prepare_kernels()
        models[Path(path).name] = (torch_runner(model), sorted({r["format"] for r in model.kernel_report()}))
    env = environment(args.threads)
    points = parse_points(args.points)
    latencies = measure_in_turns({name: in_process_timer(run) for name, (run, _) in models.items()}, points,
                                 args.budget, args.rounds)
    records = []
    for seq, batch in points:
        base = None
        for name, (_, formats) in models.items():
            stats = summarize(latencies[(seq, batch, name)], batch)
            base = base or stats["seq_per_s"]
            records.append({"model": name, "formats": formats, "seq": seq, "batch": batch, **stats,
                            "rounds": args.rounds, **env})
            print(f"seq {seq} x {batch}  {name:20s} {'/'.join(formats):6s} {stats['seq_per_s']:7.1f} seq/s "
                  f"({stats['seq_per_s'] / base:.2f}x HF fp32)  p90 {stats['p90_ms']:.1f} ms")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
