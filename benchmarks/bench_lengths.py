"""Real inputs are rarely a multiple of 64 tokens (the kernels' token chunk). This benchmark measures what a sequence's
ragged end costs: the time per token of our QA forward at each length beside the first length given (a multiple of
64), the lengths alternating in one process so that all meet the same spells of a shared machine. With --squad it also
runs real SQuAD-format questions (question + context, truncated to 384 tokens as the QA pipeline does) through our
model and through HF's fp32 DistilBERT on the same weights, alternating per batch, and reports the speed-up.

    python benchmarks/bench_lengths.py --json bench-results/lengths.json --squad ../shared/data/xquad-en.json

Model: the DistilBERT-base shaped QA model of bench_model.py, 80% (4,1) block-pruned, INT8 (our default variant).
"""
from __future__ import annotations

import argparse
import json
import statistics
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


def squad_speedup(ours, hf, batches: list[dict], rounds: int) -> dict:
    """Both models on every batch, alternating; total time of each and HF's / ours."""
    totals = {"ours": 0.0, "hf": 0.0}
    with torch.inference_mode():
        for _ in tqdm(range(rounds), desc="squad", unit="round"):
            for b in batches:
                for name, model in (("ours", ours), ("hf", hf)):
                    start = time.perf_counter()
                    model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
                    totals[name] += time.perf_counter() - start
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    return {"batches": len(batches), "batch": int(batches[0]["input_ids"].shape[0]) if batches else 0,
            "tokens_per_batch_median": statistics.median(tokens) if tokens else 0,
            "ours_ms_per_batch": 1e3 * totals["ours"] / (rounds * len(batches)),
            "hf_fp32_ms_per_batch": 1e3 * totals["hf"] / (rounds * len(batches)),
            "speedup_over_hf_fp32": totals["hf"] / totals["ours"]}


def main(argv=None) -> int:
    import fastdistilbert as fd
    from fastdistilbert.benchmarking.env import environment
    from fastdistilbert.benchmarking.model import base_shaped_model, weight_variants

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
    args = p.parse_args(argv)
    if args.json.exists():
        p.error(f"{args.json} exists; choose another --json path (results are never overwritten)")
    lengths = [int(v) for v in args.lengths.split(",") if v.strip().isdigit()]
    if len(lengths) != len(args.lengths.split(",")) or min(lengths) < 1 or max(lengths) > 512:
        p.error(f"--lengths must be a comma list of 1 to 512 tokens each, got {args.lengths!r}")
    if args.batch < 1 or args.rounds < 1:
        p.error("--batch and --rounds must be positive")
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
        for batch in (1, 8):
            batches = squad_batches(args.squad, minilm_tokenizer(), args.squad_limit, batch)
            s = result["squad"][f"batch_{batch}"] = squad_speedup(ours, hf, batches, 2)
            print(f"SQuAD inputs, batch {batch} (median {s['tokens_per_batch_median']} real tokens per batch): ours "
                  f"{s['ours_ms_per_batch']:.1f} ms, HF fp32 {s['hf_fp32_ms_per_batch']:.1f} ms per batch, "
                  f"{s['speedup_over_hf_fp32']:.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
