"""INT8 GEMM kernel benchmark: our dense and block-sparse kernels per ISA, beside torch's fp32 Linear and
torch's dynamic INT8 Linear, on DistilBERT's Linear shapes, with an in-process vpdpbusd peak probe.

    python benchmarks/bench_kernels.py --json results/kernels.json [--quick] [--threads 2]

`--shapes`, `--tokens` and `--densities` pick other points, e.g. a sequence's last tokens, which the (4,1)
kernel runs in tiles of 1-3 token vectors: `--threads 1 --isas amx --shapes 3072x768 --tokens 16,32,48,64,80
--densities 0.2` (compare each point's `us` per token vector, 16 tokens on the 512-bit variants, with the 64-token
point's).

Every point is timed in `--rounds` turns (default 3, the order rotated each turn). Per point: `us` (best of the
repeated calls over the turns: the machine is shared, the minimum is the least disturbed run; `us_median`, the
median of the turns' medians, is recorded too), `eff_gmacs` (nonzero multiply-accumulates per second), `dense_gmacs`
(out x in x tokens / time), `pct_peak` (eff_gmacs / peak_gmacs), where `peak_gmacs` is the measured 512-bit vpdpbusd
peak of this process (or the best variant's probe when AVX-512 VNNI is absent) and `isa_peak_gmacs` the probe of the
point's own variant. The probes run before and after the points and the better of the two counts (a probe that met a
slow spell of a shared host once measured half the peak, which doubled every point's % of it). Our op times include
the per-call activation packing; activations are feature-major [in, tokens] (the runtime's layout), torch's
token-major [tokens, in]. Our ops and torch's fp32 Linear (`torch.addmm`, what `F.linear` runs) write into one
output tensor allocated before the timing (`out=`), as a serving loop reuses one; torch's dynamic INT8 Linear has no
`out=` and allocates. `--outputs new` allocates a new output in every call instead: the 38 MB fp32 output of 3072 x
768 at 3,072 tokens is then page-faulted afresh (above glibc's 32 MB mmap threshold, freed memory goes back to the
system), and that, not the GEMM, is much of what the point measures. When the avx2 variant runs, torch's fp32 Linear
is also measured with its own kernels capped at AVX2 (a subprocess with ATEN_CPU_CAPABILITY /
MKL_ENABLE_INSTRUCTIONS / ONEDNN_MAX_CPU_ISA set): the peer our avx2 variant meets on a CPU without AVX-512, where
torch cannot use 512-bit FMAs either.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

import fastdistilbert
from fastdistilbert import ops
from fastdistilbert.benchmarking.model import parse_points
from fastdistilbert import quantization as Q

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import environment, time_calls  # noqa: E402

SHAPES = [(2304, 768), (768, 768), (3072, 768), (768, 3072)]  # (out, in): fused QKV, attn out, FFN in, FFN out
TOKENS = [16, 128, 384, 1024, 3072]
DENSITIES = [1.0, 0.2, 0.1]
SPARSE_PATTERNS = ["4x1", "1x4"]


def block_sparse_weight(out_f: int, in_f: int, density: float, pattern: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g)
    if pattern == "4x1":
        w = w * (torch.rand(out_f // 4, in_f, generator=g) < density).repeat_interleave(4, 0)
    elif pattern == "1x4":
        w = w * (torch.rand(out_f, in_f // 4, generator=g) < density).repeat_interleave(4, 1)
    weight_q, scale = Q.quantize_weight(w)
    return weight_q, scale, torch.randn(out_f, generator=g)


CLOCK = {"wall": time.perf_counter, "cpu": time.thread_time}
clock = time.perf_counter


def measure(fn, budget_s: float) -> tuple[float, float]:
    if clock is time.perf_counter:
        latencies = time_calls(fn, warmup=2, min_iters=3, budget_s=budget_s, max_iters=100)
    else:  # thread CPU time: immune to other processes taking the core (single-thread runs only)
        fn()
        latencies, start = [], time.perf_counter()
        while len(latencies) < 3 or (time.perf_counter() - start < budget_s and len(latencies) < 100):
            t0 = clock()
            fn()
            latencies.append(clock() - t0)
    return min(latencies), statistics.median(latencies)


def peak_probe(isa: str, repeats: int = 5) -> float:
    """Best GMAC/s of the variant's tight dot-product loop on all threads."""
    iterations = 200_000
    # Warm up for a second first: a core that had been idle ran the loop at half speed for about that long.
    start = time.perf_counter()
    while time.perf_counter() - start < 1.0:
        ops.peak_probe(iterations // 10, isa)
    best = 0.0
    for _ in range(repeats):
        t0 = clock()
        macs = ops.peak_probe(iterations, isa)
        best = max(best, macs / (clock() - t0) / 1e9)
    return best


def output_buffer(out_f, tokens, base):
    """The `out=` tensor of a point (None with --outputs new: every call allocates its own)."""
    return torch.empty(out_f, tokens) if base["outputs"] == "reused" else None


def bench_ours(records, isa, out_f, in_f, tokens, density, pattern, budget_s, base):
    weight_q, scale, bias = block_sparse_weight(out_f, in_f, density, pattern if density < 1 else "dense")
    nonzero_macs = int(weight_q.ne(0).sum()) * tokens
    packed = ops.pack_weight(weight_q, scale, bias, pattern)
    g = torch.Generator().manual_seed(1)
    x_q = torch.randint(0, 256, (in_f, tokens), dtype=torch.uint8, generator=g)
    x_scale = torch.rand(tokens, generator=g) * 0.02
    x_zp = torch.randint(0, 256, (tokens,), dtype=torch.int32, generator=g)
    x = torch.randn(in_f, tokens, generator=g)
    out = output_buffer(out_f, tokens, base)
    fastdistilbert.set_isa(isa)
    try:
        calls = {"quantized_linear": lambda: ops.quantized_linear(x_q, x_scale, x_zp, packed, out_features=out_f,
                                                                  out=out)}
        if isa == base["default_isa"]:
            calls["dynamic_quantized_linear"] = lambda: ops.dynamic_quantized_linear(x, packed, out_features=out_f,
                                                                                     out=out)
        for op, fn in calls.items():
            best, median = measure(fn, budget_s)
            assert ops.last_isa() == isa
            records.append(point(base, op, pattern, isa, out_f, in_f, tokens, density, best, median, nonzero_macs))
    finally:
        fastdistilbert.set_isa("auto")


def linear_operands(out_f, in_f, tokens):
    """Seeded fp32 weight [out, in], bias [out] and token-major input [tokens, in] for torch's Linear."""
    g = torch.Generator().manual_seed(2)
    return torch.randn(out_f, in_f, generator=g), torch.randn(out_f, generator=g), torch.randn(tokens, in_f, generator=g)


def torch_linear(w, b, x, outputs):
    """torch's fp32 Linear on linear_operands() as a call: into one reused output (`torch.addmm`, F.linear's own
    kernel) or a new one."""
    if outputs == "new":
        return lambda: torch.nn.functional.linear(x, w, b)
    y, w_t = torch.empty(x.shape[0], w.shape[0]), w.t()
    return lambda: torch.addmm(b, x, w_t, out=y)


def bench_torch(records, out_f, in_f, tokens, budget_s, base):
    w, b, x = linear_operands(out_f, in_f, tokens)
    best, median = measure(torch_linear(w, b, x, base["outputs"]), budget_s)
    records.append(point(base, "torch_fp32_linear", "dense", "torch", out_f, in_f, tokens, 1.0, best, median,
                         out_f * in_f * tokens))
    qlinear = torch.ao.nn.quantized.dynamic.Linear(in_f, out_f)
    qlinear.set_weight_bias(torch.quantize_per_channel(w, w.abs().amax(1) / 127, torch.zeros(out_f, dtype=torch.long),
                                                       0, torch.qint8), b)
    best, median = measure(lambda: qlinear(x), budget_s)
    records.append(point(base, "torch_dynamic_int8_linear", "dense", torch.backends.quantized.engine, out_f, in_f,
                         tokens, 1.0, best, median, out_f * in_f * tokens))


# Read by MKL, oneDNN and ATen when they start: torch then runs its fp32 GEMMs with AVX2 + FMA only.
AVX2_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def bench_torch_avx2(records, shapes_tokens, budget_s, base):
    """torch's fp32 Linear capped at AVX2, measured in a subprocess (the caps only act before torch loads)."""
    spec = json.dumps({"points": shapes_tokens, "threads": base["threads"], "budget": budget_s,
                       "outputs": base["outputs"]})
    done = subprocess.run([sys.executable, __file__, "--torch-avx2-worker", spec], capture_output=True, text=True,
                          env={**os.environ, **AVX2_ENVIRONMENT})
    if done.returncode != 0:
        raise RuntimeError(f"AVX2-capped torch worker failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout.splitlines()[-1])
    if report["capability"] != "AVX2":
        raise RuntimeError(f"torch ignored the AVX2 cap (runs {report['capability']})")
    for (out_f, in_f, tokens), (best, median) in zip(shapes_tokens, report["times"]):
        records.append(point(base, "torch_fp32_linear_avx2", "dense", "torch-avx2", out_f, in_f, tokens, 1.0, best,
                             median, out_f * in_f * tokens))


def torch_avx2_worker(spec: str) -> None:
    args = json.loads(spec)
    torch.set_num_threads(args["threads"])
    times = []
    for out_f, in_f, tokens in args["points"]:
        times.append(measure(torch_linear(*linear_operands(out_f, in_f, tokens), args["outputs"]), args["budget"]))
    print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "times": times}))


def with_peaks(records: list[dict], isa_peaks: dict, peak_isa: str) -> list[dict]:
    """The records with their peak fields recomputed from `isa_peaks` (the run's final probes)."""
    return [{**r, "peak_gmacs": isa_peaks[peak_isa], "isa_peak_gmacs": isa_peaks.get(r["isa"]),
             "pct_peak": 100 * r["eff_gmacs"] / isa_peaks[peak_isa]} for r in records]


def point(base, op, pattern, isa, out_f, in_f, tokens, density, best, median, nonzero_macs) -> dict:
    eff = nonzero_macs / best / 1e9
    return {
        "op": op, "pattern": pattern, "isa": isa, "out": out_f, "in": in_f, "tokens": tokens, "density": density,
        "threads": base["threads"], "us": best * 1e6, "us_median": median * 1e6, "eff_gmacs": eff,
        "dense_gmacs": out_f * in_f * tokens / best / 1e9, "peak_gmacs": base["peak_gmacs"],
        "isa_peak_gmacs": base["isa_peaks"].get(isa), "pct_peak": 100 * eff / base["peak_gmacs"],
        "cpu": base["cpu"], "versions": base["versions"],
    }


def summarize(records: list[dict]) -> list[str]:
    """The issue's targets, from this run's records."""
    ours = {(r["op"], r["pattern"], r["isa"], r["out"], r["in"], r["tokens"], r["density"]): r for r in records}
    lines = []
    for r in records:
        if r["op"] == "quantized_linear" and r["pattern"] == "dense" and r["tokens"] >= 128:
            lines.append(f"dense {r['isa']:>14} {r['out']}x{r['in']} T={r['tokens']}: {r['eff_gmacs']:.0f} GMAC/s "
                         f"= {r['pct_peak']:.0f}% of peak")
    for r in records:
        if r["op"] == "quantized_linear" and r["density"] < 1:
            dense = ours.get(("quantized_linear", "dense", r["isa"], r["out"], r["in"], r["tokens"], 1.0))
            if dense:
                lines.append(f"{r['pattern']} d={r['density']} {r['isa']:>14} {r['out']}x{r['in']} T={r['tokens']}: "
                             f"{dense['us'] / r['us']:.2f}x dense, {r['pct_peak']:.0f}% of peak (effective)")
    # Crossover of each sparse pattern (fastdistilbert.ops.SPARSE_CROSSOVER): a sparse kernel at block
    # density d takes about d * c dense-times, so it beats dense below 1 / c = d * dense_us / sparse_us.
    for isa in sorted({r["isa"] for r in records if r["op"] == "quantized_linear"}):
        for pattern in SPARSE_PATTERNS:
            ratios = [r["density"] * ours[("quantized_linear", "dense", isa, r["out"], r["in"], r["tokens"], 1.0)]["us"]
                      / r["us"] for r in records
                      if r["op"] == "quantized_linear" and r["isa"] == isa and r["pattern"] == pattern
                      and r["density"] < 1 and r["tokens"] >= 128]
            if ratios:
                lines.append(f"crossover {pattern} {isa}: {statistics.median(ratios):.2f} (median of {len(ratios)})")
    for r in records:
        if r["op"] in ("torch_fp32_linear", "torch_fp32_linear_avx2"):
            mine = ours.get(("quantized_linear", "dense", "avx2", r["out"], r["in"], r["tokens"], 1.0))
            if mine:
                peer = "torch fp32 (AVX2 cap)" if r["op"].endswith("avx2") else "torch fp32"
                lines.append(f"avx2 dense vs {peer} {r['out']}x{r['in']} T={r['tokens']}: {r['us'] / mine['us']:.2f}x")
    return lines


def best_turns(turns: list[dict]) -> list[dict]:
    """One record per point (in first-seen order): its fastest turn's, with us_median the median of the turns'."""
    key = ("op", "pattern", "isa", "out", "in", "tokens", "density")
    groups: dict[tuple, list[dict]] = {}
    for r in turns:
        groups.setdefault(tuple(r[k] for k in key), []).append(r)
    return [{**min(g, key=lambda r: r["us"]), "us_median": statistics.median(r["us_median"] for r in g),
             "turns": len(g)} for g in groups.values()]


def int_list(text: str, what: str) -> list[int]:
    """Positive integers from a comma list, or ValueError naming `what`."""
    values = [v.strip() for v in text.split(",")]
    if not all(v.isdigit() and int(v) > 0 for v in values):
        raise ValueError(f"{what} must be a comma list of positive integers, got {text!r}")
    return [int(v) for v in values]


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'OUTxIN,...' -> [(out, in)] (the model benchmark's SEQxBATCH syntax); both multiples of 4, the sparse
    patterns' blocks."""
    try:
        shapes = parse_points(text)
    except ValueError:
        shapes = []
    if not shapes or not all(len(s) == 2 and min(s) >= 4 and s[0] % 4 == 0 and s[1] % 4 == 0 for s in shapes):
        raise ValueError(f"--shapes must be a comma list of OUTxIN with both multiples of 4, got {text!r}")
    return shapes


def parse_densities(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise ValueError(f"--densities must be a comma list of block densities in (0, 1], got {text!r}")
    return values


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--torch-avx2-worker"]:
        return torch_avx2_worker(argv[1])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True, type=Path, help="output file (one record per point)")
    parser.add_argument("--quick", action="store_true", help="two shapes, three token counts, shorter timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--isas", default="", help="comma-separated variants (default: all available but ref)")
    parser.add_argument("--clock", choices=sorted(CLOCK), default="wall",
                        help="wall time, or this thread's CPU time (only with --threads 1: on a shared, loaded "
                             "machine it excludes time other processes hold the core)")
    parser.add_argument("--outputs", choices=["reused", "new"], default="reused",
                        help="write every call into one output allocated beforehand (out=, the default) or allocate "
                             "a new output per call")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--rounds", type=int, default=3, help="turns over all the points, the order rotated each "
                                                                 "turn, sharing each point's time budget (default 3)")
    parser.add_argument("--shapes", help="comma list of OUTxIN (default: DistilBERT's four Linear shapes)")
    parser.add_argument("--tokens", help=f"comma list of token counts (default: {','.join(map(str, TOKENS))})")
    parser.add_argument("--densities", help=f"comma list of block densities; 1 is the dense kernel, which always "
                                            f"runs (default: {','.join(map(str, DENSITIES))})")
    args = parser.parse_args(argv)
    try:
        picked = (parse_shapes(args.shapes) if args.shapes else None,
                  int_list(args.tokens, "--tokens") if args.tokens else None,
                  parse_densities(args.densities) if args.densities else None)
    except ValueError as e:
        parser.error(str(e))
    if args.json.exists() and not args.overwrite:
        parser.error(f"{args.json} exists; pass --overwrite to replace it")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures one thread; use it with --threads 1")
    global clock
    clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    isas = args.isas.split(",") if args.isas else [i for i in fastdistilbert.available_isas() if i != "ref"]
    shapes, tokens, budget = (SHAPES[:2], [16, 128, 384], 0.3) if args.quick else (SHAPES, TOKENS, 0.6)
    shapes, tokens = picked[0] or shapes, picked[1] or tokens
    densities = picked[2] or DENSITIES

    env = environment(args.threads)
    env["clock"] = args.clock
    env["outputs"] = args.outputs
    env["loadavg_start"] = os.getloadavg()  # other processes on the machine skew absolute numbers
    isa_peaks = {isa: peak_probe(isa) for isa in isas}
    peak_isa = "avx512vnni" if "avx512vnni" in isa_peaks else max(isa_peaks, key=isa_peaks.get)
    base = {"threads": args.threads, "cpu": env["cpu"], "versions": env["versions"], "isa_peaks": isa_peaks,
            "peak_gmacs": isa_peaks[peak_isa], "default_isa": fastdistilbert.active_isa(), "outputs": args.outputs}
    print(f"{env['cpu']} ({env['cpu_model']}), {args.threads} threads, {args.outputs} outputs; peak probes (GMAC/s): "
          + ", ".join(f"{k} {v:.0f}" for k, v in isa_peaks.items()))

    jobs = []
    for out_f, in_f in shapes:
        for t in tokens:
            jobs.append(("torch", out_f, in_f, t, 1.0, "dense"))
            for isa in isas:
                jobs.append((isa, out_f, in_f, t, 1.0, "dense"))
                jobs += [(isa, out_f, in_f, t, d, p) for d in densities if d < 1 for p in SPARSE_PATTERNS]
    # Every point in each of `rounds` turns, the order rotated every turn, each turn a share of the budget: the points
    # meet the same mix of a shared machine's faster and slower spells, so their ratios are steadier than when each
    # point is timed in one go (a point's record is its best turn's; us_median the median of the turns' medians).
    turns: list[dict] = []
    with tqdm(total=args.rounds * len(jobs), desc="kernel points") as progress:
        for turn in range(args.rounds):
            shift = turn * len(jobs) // args.rounds
            for isa, out_f, in_f, t, density, pattern in jobs[shift:] + jobs[:shift]:
                if isa == "torch":
                    bench_torch(turns, out_f, in_f, t, budget / args.rounds, base)
                else:
                    bench_ours(turns, isa, out_f, in_f, t, density, pattern, budget / args.rounds, base)
                progress.update()
    records = best_turns(turns)
    if "avx2" in isas:
        bench_torch_avx2(records, [(o, i, t) for o, i in shapes for t in tokens], budget, base)
    probes = {"start": isa_peaks, "end": {isa: peak_probe(isa) for isa in isas}}
    isa_peaks = {isa: max(p[isa] for p in probes.values()) for isa in isas}
    print("peak probes at the end (GMAC/s): " + ", ".join(f"{k} {v:.0f}" for k, v in probes["end"].items()))
    records = with_peaks(records, isa_peaks, peak_isa)
    env["loadavg_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"environment": env, "isa_peaks": isa_peaks, "isa_peak_probes": probes,
                                     "records": records}, indent=1))
    print("\n".join(summarize(records)))


if __name__ == "__main__":
    main()
