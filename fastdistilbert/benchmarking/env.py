"""What every benchmark record carries: CPU, ISA, threads and versions (absolute times on a shared machine are
noise; ratios between runtimes measured in the same run are the result)."""
from __future__ import annotations

import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

# Settings that change what a run measures: threads and their waiting, the kernel variant, huge-page allocation.
RUN_SETTINGS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "FASTDISTILBERT_FORCE_ISA",
                "THP_MEM_ALLOC_ENABLE")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """"family F model M stepping S" of the first CPU (the brand string alone does not tell an AMD EPYC's generation:
    Zen 4 and Zen 5 differ 2x in their dot-product peak), or "" where /proc/cpuinfo is not there."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return ""
    fields = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    parts = [f"{name} {fields[key]}" for name, key in (("family", "cpu family"), ("model", "model"),
                                                        ("stepping", "stepping")) if key in fields]
    return " ".join(parts)


def environment(threads: int) -> dict:
    import torch

    import fastdistilbert

    versions = {}
    for package in ("fastdistilbert", "torch", "transformers", "onnxruntime", "openvino", "onnx"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": fastdistilbert._extension.cpu_brand(), "cpu_model": cpu_model(), "isa": fastdistilbert.active_isa(),
            "threads": threads, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "versions": versions, "settings": {k: os.environ[k] for k in RUN_SETTINGS if k in os.environ}}


def time_calls(fn, *, warmup: int = 2, min_iters: int = 5, budget_s: float = 3.0, max_iters: int = 200) -> list[float]:
    """Latencies (seconds) of repeated calls: at least `min_iters`, until `budget_s` is spent."""
    for _ in range(warmup):
        fn()
    latencies: list[float] = []
    start = time.perf_counter()
    while len(latencies) < min_iters or (time.perf_counter() - start < budget_s and len(latencies) < max_iters):
        t0 = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - t0)
    return latencies


def summarize(latencies: list[float], batch: int) -> dict:
    ordered = sorted(latencies)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"iters": len(latencies), "seq_per_s": batch / statistics.mean(latencies),
            "p50_ms": 1000 * statistics.median(latencies), "p90_ms": 1000 * p90}
