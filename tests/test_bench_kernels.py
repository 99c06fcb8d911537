"""The kernel benchmark's AVX2-capped torch peer really runs torch with AVX2 kernels, in its own process."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_kernels  # noqa: E402


def test_torch_avx2_peer_runs_capped_and_records_points():
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("torch runs no AVX2 kernels on this CPU")
    base = {"threads": 1, "cpu": "test", "versions": {}, "isa_peaks": {}, "peak_gmacs": 1.0}
    records = []
    bench_kernels.bench_torch_avx2(records, [(64, 32, 16), (32, 64, 8)], 0.01, base)
    assert [(r["op"], r["isa"], r["out"], r["in"], r["tokens"]) for r in records] == [
        ("torch_fp32_linear_avx2", "torch-avx2", 64, 32, 16), ("torch_fp32_linear_avx2", "torch-avx2", 32, 64, 8)]
    assert all(r["us"] > 0 and r["dense_gmacs"] > 0 for r in records)
    lines = bench_kernels.summarize(records + [
        {**records[0], "op": "quantized_linear", "isa": "avx2", "pattern": "dense", "us": records[0]["us"] / 2}])
    assert lines == ["avx2 dense vs torch fp32 (AVX2 cap) 64x32 T=16: 2.00x"]
