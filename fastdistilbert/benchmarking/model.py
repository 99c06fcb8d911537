"""End-to-end QA model benchmark: fastdistilbert (INT8 dense, INT8 80% block-sparse (4,1) and (1,4); the (4,1) model
also with INT8 attention matmuls) against
HF PyTorch fp32, PyTorch dynamic INT8, ONNX Runtime INT8, OpenVINO INT8 and DeepSparse INT8 on the same weights.

    fastdistilbert bench --json bench-results/model.json --plot bench-results/model.png
    (or: python benchmarks/bench_model.py ...)

The model is DistilBERT-base shaped (6 layers, dim 768, 12 heads, FFN 3072, vocab 30522) with seeded random
weights; the sparse variants are made by one-shot block-magnitude pruning of its encoder Linears (speed does not
depend on what the weights learned). Peers that are not installed are skipped with a note (`pip install .[bench]`).
Peers run the dense weights: none of them exploits block sparsity on this CPU (checked for ONNX Runtime and
OpenVINO; OpenVINO's sparse-weight option needs AMX). DeepSparse 1.8.0, which does, runs in its own virtual
environment (`benchmarks/setup_deepsparse.sh`) as a subprocess, on the dense, (4,1)- and (1,4)-pruned weights
(`deepsparse_peer`); the notes record how far its start logits are from HF fp32 and what its own analysis saw.

At every point each runtime is timed in `--rounds` turns (measure_in_turns), DeepSparse's worker included, so that
all of them meet the same mix of a shared machine's faster and slower spells.

Each record: runtime, variant, seq, batch, seq_per_s, p50_ms, p90_ms (+ iterations and rounds), and the run's CPU,
ISA, threads and versions. The summary gives each runtime's speed-up over the others at every point and the paper's
metric: the best throughput with batch <= 8 whose p90 latency is within the bound for that sequence length.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import DistilBertConfig, DistilBertForQuestionAnswering

import fastdistilbert as fd

from ..testing import prune_encoder_blocks
from .deepsparse_peer import DeepSparseWorker
from .env import environment, summarize, time_calls
from .peers import PEERS, PeerUnavailable, build_peers, torch_runner

DEFAULT_POINTS = "128x1,128x8,128x32,384x1,384x8"
DEFAULT_BOUNDS = "128:100,384:400"
MIN_ITERS = 5  # timed calls per point and runtime, at least


def base_shaped_model(seed: int = 0) -> DistilBertForQuestionAnswering:
    torch.manual_seed(seed)
    return DistilBertForQuestionAnswering(DistilBertConfig()).eval()


def weight_variants(hf: DistilBertForQuestionAnswering, sparsity: float, blocks: list[tuple[int, int]],
                    names: list[str]) -> dict:
    """{variant: HF model}: the dense weights and one-shot block-pruned copies, keeping only `names` if given."""
    builders = {"int8-dense": lambda: hf}
    for block in blocks:
        builders[f"int8-sparse{int(sparsity * 100)}-{block[0]}x{block[1]}"] = \
            lambda block=block: prune_encoder_blocks(copy.deepcopy(hf), sparsity, block)
    return {name: build() for name, build in builders.items() if not names or name in names}


def our_variants(weights: dict) -> dict:
    """{variant: (callable(ids, mask), kernel formats)} of our INT8 models (INT8 attention, the conversion default),
    one per entry of weight_variants(), plus "<name>+fp32-attention" for the (4,1)-sparse weights: the same model
    with its attention matmuls in fp32 (`convert_to_fast(..., attention="fp32")`)."""
    variants = {}
    for name, weights in weights.items():
        model = fd.convert_to_fast(weights, quantize=True).eval()
        model.prepare_kernels()
        formats = sorted({r["format"] for r in model.kernel_report()})
        variants[name] = (torch_runner(model), formats)
        if name.endswith("-4x1"):
            fp32_attention = fd.convert_to_fast(weights, quantize=True, attention="fp32").eval()
            fp32_attention.prepare_kernels()
            variants[f"{name}+fp32-attention"] = (torch_runner(fp32_attention), formats)
    return variants


def throughput_mode(hf, sparsity: float, threads: int, seq: int, batch: int, n_batches: int, workdir: Path) -> list[dict]:
    """seq/s of one process with all `threads` against `threads` pinned single-thread workers sharing the weights,
    on the 80% (4,1)-sparse INT8 model, over the same stream of batches."""
    import time

    from fastdistilbert.throughput import ThroughputPool

    model = fd.convert_to_fast(prune_encoder_blocks(copy.deepcopy(hf), sparsity, (4, 1)), quantize=True).eval()
    path = workdir / "throughput-model"
    model.save_pretrained(path)
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(1000, 29000, (batch, seq), generator=g)} for _ in range(n_batches)]
    results = []
    with torch.inference_mode():
        model(**batches[0])
        start = time.perf_counter()
        for b in batches:
            model(**b)
        one = time.perf_counter() - start
    results.append({"mode": f"1 process x {threads} threads", "seq_per_s": n_batches * batch / one})
    with ThroughputPool(path, workers=threads, threads_per_worker=1) as pool:
        pool.run(batches[:threads])
        start = time.perf_counter()
        pool.run(batches)
        many = time.perf_counter() - start
    results.append({"mode": f"{threads} processes x 1 thread (shared weights)", "seq_per_s": n_batches * batch / many})
    return [{"seq": seq, "batch": batch, "variant": f"int8-sparse{int(sparsity * 100)}-4x1", **r} for r in results]


def in_process_timer(fn):
    """A timer (see measure_in_turns) of a callable(ids, mask) run in this process."""
    def timer(seq, batch, ids, mask, *, budget_s, warmup, min_iters):
        return time_calls(lambda: fn(ids, mask), budget_s=budget_s, warmup=warmup, min_iters=min_iters)
    return timer


def deepsparse_timer(worker: DeepSparseWorker, variant: str):
    """A timer of DeepSparse's engine for `variant` (its own inputs of the same shape)."""
    def timer(seq, batch, ids, mask, *, budget_s, warmup, min_iters):
        return worker.time(variant, seq, batch, budget_s=budget_s, warmup=warmup, min_iters=min_iters)
    return timer


def check_turns(rounds: int, budget_s: float) -> None:
    """measure_in_turns' arguments from the command line, checked before any model is built."""
    from ..errors import UserError

    if rounds < 1 or budget_s <= 0:
        raise UserError(f"--rounds must be >= 1 and --budget > 0, got {rounds} and {budget_s}")


def turn_order(keys: list, turn: int) -> list:
    """The order of the runtimes in turn `turn`: each turn starts one runtime further on."""
    return keys[turn % len(keys):] + keys[:turn % len(keys)]


def measure_in_turns(timers: dict, points: list[tuple[int, int]], budget_s: float, rounds: int) -> dict:
    """{(seq, batch, key): latencies}: at every point, `rounds` turns in which every timer runs for budget_s / rounds
    (each turn starting one runtime further on). On a shared machine whose speed drifts over seconds to minutes,
    runtimes timed one after the other each meet another machine; in turns they meet the same mix. At least
    MIN_ITERS calls per point in all, one warm-up call per turn (the other runtimes have used the caches since)."""
    g = torch.Generator().manual_seed(0)
    keys = list(timers)
    latencies = {}
    per_turn = max(1, math.ceil(MIN_ITERS / rounds))
    with tqdm(total=len(points) * rounds * len(keys), desc="benchmark", unit="timing") as bar:
        for seq, batch in points:
            ids = torch.randint(1000, 29000, (batch, seq), generator=g)
            mask = torch.ones_like(ids)
            for turn in range(rounds):
                for key in turn_order(keys, turn):
                    measured = timers[key](seq, batch, ids, mask, budget_s=budget_s / rounds, warmup=1,
                                           min_iters=per_turn)
                    latencies.setdefault((seq, batch, key), []).extend(measured)
                    bar.update()
    return latencies


def parse_points(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in point.split("x")) for point in text.split(",")]


def paper_metric(records: list[dict], bounds: dict[int, float]) -> list[dict]:
    """Best seq/s with batch <= 8 and p90 <= bound, per runtime/variant and sequence length."""
    best: dict[tuple, dict] = {}
    for r in records:
        bound = bounds.get(r["seq"])
        if bound is None or r["batch"] > 8 or r["p90_ms"] > bound:
            continue
        key = (r["runtime"], r["variant"], r["seq"])
        if key not in best or r["seq_per_s"] > best[key]["seq_per_s"]:
            best[key] = {"runtime": r["runtime"], "variant": r["variant"], "seq": r["seq"], "batch": r["batch"],
                         "p90_bound_ms": bound, "seq_per_s": r["seq_per_s"], "p90_ms": r["p90_ms"]}
    return sorted(best.values(), key=lambda b: (b["seq"], -b["seq_per_s"]))


def markdown_table(records: list[dict]) -> str:
    points = sorted({(r["seq"], r["batch"]) for r in records})
    rows = sorted({(r["runtime"], r["variant"]) for r in records})
    reference = {(r["seq"], r["batch"]): r["seq_per_s"] for r in records if r["runtime"] == "pytorch-fp32"}
    lines = ["| runtime | variant | " + " | ".join(f"seq {s} x {b}" for s, b in points) + " |",
             "|---|---|" + "---|" * len(points)]
    for runtime, variant in rows:
        cells = []
        for point in points:
            r = next((r for r in records if (r["runtime"], r["variant"], r["seq"], r["batch"]) == (runtime, variant, *point)), None)
            if r is None:
                cells.append("-")
            else:
                ratio = f" ({r['seq_per_s'] / reference[point]:.1f}x)" if point in reference else ""
                cells.append(f"{r['seq_per_s']:.1f}{ratio}")
        lines.append(f"| {runtime} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def line_colours(lines: list) -> dict:
    """One colour per plotted line, the same in every panel (matplotlib's default cycle repeats after 10 lines, and
    a run has 11: two runtimes shared a colour)."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"]
    return {line: palette(i % palette.N) for i, line in enumerate(lines)}


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seqs = sorted({r["seq"] for r in records})
    lines = sorted({(r["runtime"], r["variant"]) for r in records})
    colours = line_colours(lines)
    fig, axes = plt.subplots(1, len(seqs), figsize=(6.5 * len(seqs), 6), squeeze=False)
    for ax, seq in zip(axes[0], seqs):
        for runtime, variant in lines:
            pts = sorted((r["batch"], r["p90_ms"], r["seq_per_s"]) for r in records
                         if r["seq"] == seq and (r["runtime"], r["variant"]) == (runtime, variant))
            if not pts:
                continue
            ax.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", label=f"{runtime} {variant}",
                    color=colours[(runtime, variant)])
            for batch, x, y in pts:
                ax.annotate(f"b{batch}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("p90 latency per batch (ms, log)")
        ax.set_ylabel("throughput (sequences/s)")
        ax.set_title(f"seq {seq}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)  # below the panels, covering no line
    env = records[0]
    cpu = f"{env['cpu']} ({env['cpu_model']})" if env.get("cpu_model") else env["cpu"]  # (older runs lack it)
    fig.suptitle(f"DistilBERT-base QA on {cpu}, {env['threads']} threads, ISA {env['isa']}")
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(lines) + 2) // 3), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, required=True, help="write records + summary here")
    p.add_argument("--plot", type=Path, help="throughput vs p90 latency plot (PNG)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--points", default=DEFAULT_POINTS, help=f"seq x batch list (default {DEFAULT_POINTS})")
    p.add_argument("--p90-bounds", default=DEFAULT_BOUNDS, help=f"seq:ms latency bounds (default {DEFAULT_BOUNDS})")
    p.add_argument("--sparsity", type=float, default=0.8)
    p.add_argument("--runtimes", default="", help="comma list of runtimes to run (default: all)")
    p.add_argument("--variants", default="", help="comma list of our (and DeepSparse's) variants (default: all)")
    p.add_argument("--budget", type=float, default=3.0,
                   help="seconds of timed calls per point and runtime, split over the rounds (default 3)")
    p.add_argument("--rounds", type=int, default=3,
                   help="turns in which every runtime is timed at each point (default 3; see measure_in_turns)")
    p.add_argument("--throughput-batches", type=int, default=24,
                   help="batches (seq 128 x 8) streamed in the throughput-mode comparison; 0 skips it (default 24)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args) -> int:
    from ..errors import UserError

    if args.json.exists():
        raise UserError(f"{args.json} exists; choose another --json path (results are never overwritten)")

    check_turns(args.rounds, args.budget)
    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    points = parse_points(args.points)
    bounds = {int(k): float(v) for k, v in (item.split(":") for item in args.p90_bounds.split(","))}
    wanted = set(filter(None, args.runtimes.split(",")))
    variant_names = list(filter(None, args.variants.split(",")))
    hf = base_shaped_model()
    # The pruned copies are made once: our models and DeepSparse's run the same weights.
    weights = weight_variants(hf, args.sparsity, [(4, 1), (1, 4)], variant_names)
    runners, notes = {}, []
    if not wanted or "fastdistilbert" in wanted:
        for variant, (run, formats) in our_variants(weights).items():
            runners[("fastdistilbert", variant)] = run
            notes.append(f"fastdistilbert {variant}: kernel formats {formats}, ISA {env['isa']}")
    with tempfile.TemporaryDirectory() as workdir:
        peers, skipped = build_peers(hf, Path(workdir), args.threads,
                                     [name for name in PEERS if not wanted or name in wanted])
        runners.update({(name, "dense"): run for name, run in peers.items()})
        notes += skipped
        timers = {key: in_process_timer(fn) for key, fn in runners.items()}
        with contextlib.ExitStack() as stack:
            deepsparse = None
            if not wanted or "deepsparse" in wanted:
                # DeepSparse runs in its own interpreter (see deepsparse_peer), kept up to be timed in turns with
                # the others; on the same weights as our variants.
                try:
                    deepsparse = stack.enter_context(DeepSparseWorker(weights, Path(workdir), args.threads, points))
                    for variant in deepsparse.variants:
                        timers[("deepsparse", variant)] = deepsparse_timer(deepsparse, variant)
                    notes += deepsparse.notes
                except PeerUnavailable as exc:
                    notes.append(f"deepsparse skipped: {exc}")
            latencies = measure_in_turns(timers, points, args.budget, args.rounds)
        records = []
        for (seq, batch, (runtime, variant)), measured in latencies.items():
            record = {"runtime": runtime, "variant": variant, "seq": seq, "batch": batch,
                      **summarize(measured, batch), "rounds": args.rounds, **env}
            if runtime == "deepsparse":
                record["fraction_of_supported_ops"] = deepsparse.fraction_of_supported_ops[(variant, seq, batch)]
                record["versions"] = {**env["versions"], "deepsparse": deepsparse.version}
            records.append(record)
        throughput = []
        if args.throughput_batches and (not wanted or "fastdistilbert" in wanted):
            throughput = throughput_mode(hf, args.sparsity, args.threads, 128, 8, args.throughput_batches, Path(workdir))
    summary = {"paper_metric": paper_metric(records, bounds), "throughput_mode": throughput, "notes": notes}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"records": records, "summary": summary, "environment": env}, indent=2))
    print(markdown_table(records))
    print("\nbest throughput with batch <= 8 under the p90 bound:")
    for b in summary["paper_metric"]:
        print(f"  seq {b['seq']} (p90 <= {b['p90_bound_ms']:.0f} ms): {b['runtime']} {b['variant']}: "
              f"{b['seq_per_s']:.1f} seq/s at batch {b['batch']}")
    for t in throughput:
        print(f"throughput mode, seq {t['seq']} batch {t['batch']}, {t['variant']}: {t['mode']}: {t['seq_per_s']:.1f} seq/s")
    for note in notes:
        print("note:", note)
    if args.plot:
        plot(records, args.plot)
        print(f"plot: {args.plot}")
    return 0

