"""The lengths benchmark's measuring functions on a tiny model (the benchmark itself runs a base-shaped one)."""
import sys
from pathlib import Path

import pytest
import torch

import fastdistilbert as fd
from fastdistilbert.testing import padding_mask, tiny_distilbert_qa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_lengths  # noqa: E402


def _models():
    hf = tiny_distilbert_qa(seed=3)
    return fd.convert_to_fast(hf, quantize=True).eval(), hf


def test_lengths_sweep_reports_every_length_against_the_first():
    ours, _ = _models()
    records = bench_lengths.lengths_sweep(ours, [16, 13, 21], batch=2, rounds=2, vocab=97)
    assert [(r["seq"], r["batch"]) for r in records] == [(16, 2), (13, 2), (21, 2)]
    assert records[0]["per_token_vs_first"] == 1.0
    assert all(r["ms"] > 0 and r["us_per_token"] > 0 and r["per_token_vs_first"] > 0 for r in records)


def test_squad_speedup_times_both_models_on_padded_batches():
    ours, hf = _models()
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(0, 97, (2, 9), generator=g), "attention_mask": padding_mask(2, 9, [9, 5])},
               {"input_ids": torch.randint(0, 97, (2, 7), generator=g), "attention_mask": padding_mask(2, 7, [7, 7])}]
    s = bench_lengths.squad_speedup(ours, hf, batches, rounds=1)
    assert (s["batches"], s["batch"], s["tokens_per_batch_median"]) == (2, 2, 14)
    assert s["ours_ms_per_batch"] > 0 and s["hf_fp32_ms_per_batch"] > 0 and s["speedup_over_hf_fp32"] > 0


@pytest.mark.parametrize("option", [["--lengths", "128,0"], ["--lengths", "128,x"], ["--batch", "0"]])
def test_bad_options_are_refused_before_any_work(tmp_path, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_lengths.main(["--json", str(tmp_path / "out.json"), *option])
    assert exit_info.value.code == 2 and "must" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_an_existing_result_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "lengths.json"
    out.write_text("{}")
    with pytest.raises(SystemExit):
        bench_lengths.main(["--json", str(out)])
    assert out.read_text() == "{}" and "exists" in capsys.readouterr().err
