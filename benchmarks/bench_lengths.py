"""Real inputs are rarely a multiple of 64 tokens (the kernels' token chunk). This benchmark measures what a sequence's
ragged end costs: the time per token of our QA forward at each length beside the first length given (a multiple of
64), the lengths alternating in one process so that all meet the same spells of a shared machine. With --squad it also
runs real SQuAD-format questions (question + context, truncated to 384 tokens as the QA pipeline does, each batch
padded to its longest input as the pipeline's tokenizer does) through our model and through the in-process peers of
bench_model.py on the same weights (HF PyTorch fp32, PyTorch dynamic INT8, ONNX Runtime INT8, OpenVINO INT8; one that
is not installed is skipped with a note), each runtime on all the batches in turns, and reports our speed-up over
each. Our model computes only the real tokens of a padded batch; the peers compute the padding too, as they would
serving it. DeepSparse is not run here: its engines are compiled for one fixed input shape.

    python benchmarks/bench_lengths.py --json bench-results/lengths.json --squad ../shared/data/xquad-en.json

Model: the DistilBERT-base shaped QA model of bench_model.py, 80% (4,1) block-pruned, INT8 (our default variant).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

DEFAULT_LENGTHS = "128,127,110,143,200,256"


def lengths_sweep(model, lengths: list[int], batch: int, rounds: int, vocab: int) -> list[dict]:
    """One record per length: median ms per forward, us per token, and per-token time / the first length's."""
    g = torch.Generator().manual_seed(0)
    inputs = {n: torch.randint(0, vocab, (batch, n), generator=g) for n in lengths}
    times = {n: [] for n in lengths}
    with torch.inference_mode():
        for ids in inputs.values():  # warm-up (the first call packs the kernels)
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        for _ in tqdm(range(rounds), desc="lengths", unit="round"):
            for n, ids in inputs.items():
                mask = torch.ones_like(ids)
                start = time.perf_counter()
                model(input_ids=ids, attention_mask=mask)
                times[n].append(time.perf_counter() - start)
    first = statistics.median(times[lengths[0]]) / lengths[0]
    return [{"seq": n, "batch": batch, "ms": 1e3 * statistics.median(times[n]),
             "us_per_token": 1e6 * statistics.median(times[n]) / (n * batch),
             "per_token_vs_first": statistics.median(times[n]) / n / first} for n in lengths]


def squad_batches(path: Path, tokenizer, limit: int, batch: int) -> list[dict]:
    from fastdistilbert.squad import load_squad

    examples = load_squad(path)[:limit]
    return [tokenizer([e["question"] for e in examples[i:i + batch]], [e["context"] for e in examples[i:i + batch]],
                      truncation="only_second", max_length=384, padding=True, return_tensors="pt")
            for i in range(0, len(examples), batch)]


def squad_speedup(runners: dict, batches: list[dict], rounds: int) -> dict:
    """Every runner (callable(ids, mask)) on all the batches in turn, `rounds` times, each turn starting one runner
    further on (as bench_model's measure_in_turns) and with one untimed batch first: another runtime has used the
    caches since (run batch by batch in alternation, the peers' weights evicted ours between calls: 21.5 against 14.8
    ms per input at batch 1 in two runs). Each one's mean ms per batch and the first runner's speed-up over each (its
    total / the first's)."""
    from fastdistilbert.benchmarking.model import turn_order

    totals = dict.fromkeys(runners, 0.0)
    for turn in tqdm(range(rounds), desc="squad", unit="round"):
        for name in turn_order(list(runners), turn):
            run = runners[name]
            run(batches[0]["input_ids"], batches[0]["attention_mask"])
            for b in batches:
                start = time.perf_counter()
                run(b["input_ids"], b["attention_mask"])
                totals[name] += time.perf_counter() - start
    first = next(iter(runners))
    real = [int(b["attention_mask"].sum()) for b in batches]
    padded = [int(b["input_ids"].numel()) for b in batches]
    return {"batches": len(batches), "batch": int(batches[0]["input_ids"].shape[0]) if batches else 0,
            "tokens_per_batch_median": statistics.median(real) if real else 0,
            "padded_tokens_per_batch_median": statistics.median(padded) if padded else 0,
            "ms_per_batch": {name: 1e3 * t / (rounds * len(batches)) for name, t in totals.items()},
            f"{first}_speedup": {name: t / totals[first] for name, t in totals.items() if name != first}}


def squad_runners(ours, hf, workdir: Path, threads: int, wanted: list[str]) -> tuple[dict, list[str]]:
    """{name: callable(ids, mask)}, ours first, then the wanted peers of bench_model that are installed; notes on
    the ones skipped."""
    from fastdistilbert.benchmarking.peers import build_peers, torch_runner

    peers, notes = build_peers(hf, workdir, threads, wanted)
    return {"fastdistilbert": torch_runner(ours), **peers}, notes


def main(argv=None) -> int:
    import fastdistilbert as fd
    from fastdistilbert.benchmarking.env import environment
    from fastdistilbert.benchmarking.model import base_shaped_model, weight_variants
    from fastdistilbert.benchmarking.peers import PEERS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, required=True, help="write the records here (never overwritten)")
    p.add_argument("--lengths", default=DEFAULT_LENGTHS, help=f"sequence lengths, the first the reference "
                                                               f"(default {DEFAULT_LENGTHS})")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--squad", type=Path, help="SQuAD v1.1 JSON file of real questions (evaluation data is fine: "
                                              "nothing is trained)")
    p.add_argument("--squad-limit", type=int, default=96)
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma list of peers for --squad (default: all of "
                                                             f"{', '.join(PEERS)}; pytorch-fp32 at least)")
    args = p.parse_args(argv)
    peers = [v for v in args.peers.split(",") if v]
    if any(v not in PEERS for v in peers) or "pytorch-fp32" not in peers:
        p.error(f"--peers must be a comma list of {', '.join(PEERS)} holding pytorch-fp32, got {args.peers!r}")
    if args.json.exists():
        p.error(f"{args.json} exists; choose another --json path (results are never overwritten)")
    lengths = [int(v) for v in args.lengths.split(",") if v.strip().isdigit()]
    if len(lengths) != len(args.lengths.split(",")) or min(lengths) < 1 or max(lengths) > 512:
        p.error(f"--lengths must be a comma list of 1 to 512 tokens each, got {args.lengths!r}")
    if args.batch < 1 or args.rounds < 1 or args.squad_limit < 1:
        p.error("--batch, --rounds and --squad-limit must be positive")
    torch.set_num_threads(args.threads)
    name = "int8-sparse80-4x1"
    hf = weight_variants(base_shaped_model(), 0.8, [(4, 1)], [name])[name].eval()
    ours = fd.convert_to_fast(hf, quantize=True).eval()
    result = {"environment": environment(args.threads), "model": name,
              "lengths": lengths_sweep(ours, lengths, args.batch, args.rounds, hf.config.vocab_size)}
    for r in result["lengths"]:
        print(f"seq {r['seq']} x {r['batch']}: {r['ms']:.2f} ms, {r['us_per_token']:.1f} us per token, "
              f"{r['per_token_vs_first']:.2f}x the per-token time at {lengths[0]}")
    if args.squad:
        from fastdistilbert.testing import minilm_tokenizer

        result["squad"] = {}
        with tempfile.TemporaryDirectory() as workdir:
            runners, result["squad_notes"] = squad_runners(ours, hf, Path(workdir), args.threads, peers)
            for note in result["squad_notes"]:
                print("note:", note)
            for batch in (1, 8):
                batches = squad_batches(args.squad, minilm_tokenizer(), args.squad_limit, batch)
                s = result["squad"][f"batch_{batch}"] = squad_speedup(runners, batches, 2)
                print(f"SQuAD inputs, batch {batch} (median {s['tokens_per_batch_median']} real tokens, "
                      f"{s['padded_tokens_per_batch_median']} with padding, per batch): ms per batch "
                      + ", ".join(f"{name} {ms:.1f}" for name, ms in s["ms_per_batch"].items()) + "; ours over them "
                      + ", ".join(f"{name} {x:.2f}x" for name, x in s["fastdistilbert_speedup"].items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
