"""The kernel benchmark: its AVX2-capped torch peer really runs torch with AVX2 kernels, in its own process; the points
it is asked for are the ones it measures, each in every turn; malformed point lists are refused before measuring."""
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_kernels  # noqa: E402


def test_torch_avx2_peer_runs_capped_and_records_points():
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("torch runs no AVX2 kernels on this CPU")
    base = {"threads": 1, "cpu": "test", "versions": {}, "isa_peaks": {}, "peak_gmacs": 1.0, "outputs": "reused"}
    records = []
    bench_kernels.bench_torch_avx2(records, [(64, 32, 16), (32, 64, 8)], 0.01, base)
    assert [(r["op"], r["isa"], r["out"], r["in"], r["tokens"]) for r in records] == [
        ("torch_fp32_linear_avx2", "torch-avx2", 64, 32, 16), ("torch_fp32_linear_avx2", "torch-avx2", 32, 64, 8)]
    assert all(r["us"] > 0 and r["dense_gmacs"] > 0 for r in records)
    lines = bench_kernels.summarize(records + [
        {**records[0], "op": "quantized_linear", "isa": "avx2", "pattern": "dense", "us": records[0]["us"] / 2}])
    assert lines == ["avx2 dense vs torch fp32 (AVX2 cap) 64x32 T=16: 2.00x"]


@pytest.mark.parametrize("flag, value, message", [
    ("--tokens", "16,0", "--tokens must be a comma list of positive integers"),
    ("--tokens", "16,abc", "--tokens must be a comma list of positive integers"),
    ("--shapes", "3072x770", "--shapes must be a comma list of OUTxIN with both multiples of 4"),
    ("--shapes", "3072", "--shapes must be a comma list of OUTxIN with both multiples of 4"),
    ("--densities", "0.2,1.5", "--densities must be a comma list of block densities in (0, 1]"),
    ("--densities", "dense", "--densities must be a comma list of block densities in (0, 1]"),
])
def test_bad_point_lists_are_refused_before_measuring(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        bench_kernels.main(["--json", str(tmp_path / "k.json"), flag, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "k.json").exists()


@pytest.mark.parametrize("outputs", ["reused", "new"])
def test_picked_points_are_the_ones_measured(tmp_path, outputs):
    out = tmp_path / "k.json"
    bench_kernels.main(["--json", str(out), "--threads", "1", "--isas", "ref", "--quick", "--rounds", "2",
                        "--shapes", "32x64", "--tokens", "16,24", "--densities", "1,0.5", "--outputs", outputs])
    report = json.loads(out.read_text())
    assert report["environment"]["outputs"] == outputs
    records = report["records"]
    ours = sorted({(r["pattern"], r["out"], r["in"], r["tokens"], r["density"]) for r in records
                   if r["op"] == "quantized_linear"})
    assert ours == sorted((p, 32, 64, t, d) for t in (16, 24)
                          for p, d in (("dense", 1.0), ("4x1", 0.5), ("1x4", 0.5)))
    assert all(r["turns"] == 2 for r in records)  # one record per point, from both turns


def test_a_point_keeps_its_fastest_turn_and_the_median_of_its_turns():
    point = {"op": "quantized_linear", "pattern": "4x1", "isa": "ref", "out": 8, "in": 8, "tokens": 16, "density": 0.5}
    turns = [{**point, "us": 5.0, "us_median": 9.0, "eff_gmacs": 1.0}, {**point, "tokens": 32, "us": 7.0,
                                                                       "us_median": 7.0, "eff_gmacs": 3.0},
             {**point, "us": 4.0, "us_median": 6.0, "eff_gmacs": 2.0}, {**point, "us": 6.0, "us_median": 8.0,
                                                                       "eff_gmacs": 4.0}]
    assert bench_kernels.best_turns(turns) == [{**point, "us": 4.0, "us_median": 8.0, "eff_gmacs": 2.0, "turns": 3},
                                               {**point, "tokens": 32, "us": 7.0, "us_median": 7.0, "eff_gmacs": 3.0,
                                                "turns": 1}]


def test_rounds_below_one_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_kernels.main(["--json", str(tmp_path / "k.json"), "--rounds", "0"])
    assert exit_info.value.code == 2 and "--rounds must be at least 1" in capsys.readouterr().err


def test_every_record_takes_the_better_probe_of_the_run(tmp_path, monkeypatch):
    """A probe that meets a slow spell (here the first) must not inflate the points' % of peak."""
    probes = iter([50.0, 100.0])
    monkeypatch.setattr(bench_kernels, "peak_probe", lambda isa: next(probes))
    out = tmp_path / "k.json"
    bench_kernels.main(["--json", str(out), "--threads", "1", "--isas", "ref", "--quick", "--rounds", "1",
                        "--shapes", "32x64", "--tokens", "16", "--densities", "1"])
    report = json.loads(out.read_text())
    assert report["isa_peaks"] == {"ref": 100.0}
    assert report["isa_peak_probes"] == {"start": {"ref": 50.0}, "end": {"ref": 100.0}}
    for r in report["records"]:
        assert r["peak_gmacs"] == 100.0 and r["pct_peak"] == pytest.approx(r["eff_gmacs"])
        assert r["isa_peak_gmacs"] == (100.0 if r["isa"] == "ref" else None)
