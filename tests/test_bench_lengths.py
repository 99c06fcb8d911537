"""The lengths benchmark's measuring functions on a tiny model (the benchmark itself runs a base-shaped one)."""
import sys
from pathlib import Path

import pytest
import torch

import fastdistilbert as fd
from fastdistilbert.benchmarking.peers import torch_runner
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


def test_squad_speedup_times_every_runner_on_padded_batches():
    ours, hf = _models()
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(0, 97, (2, 9), generator=g), "attention_mask": padding_mask(2, 9, [9, 5])},
               {"input_ids": torch.randint(0, 97, (2, 7), generator=g), "attention_mask": padding_mask(2, 7, [7, 7])}]
    seen = []
    runners = {"fastdistilbert": torch_runner(ours), "pytorch-fp32": torch_runner(hf),
               "recorder": lambda ids, mask: seen.append((tuple(ids.shape), int(mask.sum())))}
    s = bench_lengths.squad_speedup(runners, batches, rounds=1)
    assert (s["batches"], s["batch"]) == (2, 2)
    assert (s["tokens_per_batch_median"], s["padded_tokens_per_batch_median"]) == (14, 16)
    assert seen == [((2, 9), 14), ((2, 9), 14), ((2, 7), 14)]  # a warm-up, then each batch as given, padding included
    assert set(s["ms_per_batch"]) == set(runners) and min(s["ms_per_batch"].values()) > 0
    assert set(s["fastdistilbert_speedup"]) == {"pytorch-fp32", "recorder"}
    assert all(x > 0 for x in s["fastdistilbert_speedup"].values())


def test_squad_runners_put_ours_first_and_skip_a_missing_peer_with_a_note(tmp_path, monkeypatch):
    from fastdistilbert.benchmarking import peers

    def missing(hf, workdir, threads):
        raise peers.PeerUnavailable("not installed")
    monkeypatch.setitem(peers.PEERS, "onnxruntime-int8", missing)
    ours, hf = _models()
    runners, notes = bench_lengths.squad_runners(ours, hf, tmp_path, 1, ["pytorch-fp32", "onnxruntime-int8"])
    assert list(runners) == ["fastdistilbert", "pytorch-fp32"]
    assert notes == ["onnxruntime-int8 skipped: not installed"]
    ids = torch.randint(0, 97, (1, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    torch.testing.assert_close(runners["pytorch-fp32"](ids, mask), torch_runner(hf)(ids, mask))


@pytest.mark.parametrize("option", [["--lengths", "128,0"], ["--lengths", "128,x"], ["--batch", "0"],
                                    ["--peers", "onnxruntime-int8"], ["--peers", "pytorch-fp32,tvm"],
                                    ["--squad-limit", "0"]])
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
