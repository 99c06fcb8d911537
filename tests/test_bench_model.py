"""The model benchmark's timing in turns: every runtime timed at every point in each of `rounds` turns, the turn's
order rotated, the budget and the minimum number of calls split over the turns."""
import pytest

from fastdistilbert.benchmarking import model as bench
from fastdistilbert.cli import main


def test_every_runtime_is_timed_in_every_turn_in_rotating_order():
    calls = []

    def timer(name):
        def time(seq, batch, ids, mask, *, budget_s, warmup, min_iters):
            assert ids.shape == mask.shape == (batch, seq)
            calls.append((name, seq, batch, budget_s, warmup, min_iters))
            return [float(len(calls))] * min_iters
        return time

    timers = {("a", "x"): timer("a"), ("b", "x"): timer("b"), ("c", "x"): timer("c")}
    latencies = bench.measure_in_turns(timers, [(16, 1), (32, 2)], budget_s=3.0, rounds=3)
    assert [c[0] for c in calls] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"] * 2
    assert [c[1:3] for c in calls] == [(16, 1)] * 9 + [(32, 2)] * 9
    assert {c[3:] for c in calls} == {(1.0, 1, 2)}  # 3 s over 3 turns; at least 5 calls in all: 2 per turn
    assert set(latencies) == {(s, b, k) for s, b in [(16, 1), (32, 2)] for k in timers}
    assert all(len(v) == 6 for v in latencies.values())
    assert latencies[(16, 1, ("b", "x"))] == [2.0] * 2 + [4.0] * 2 + [9.0] * 2  # its calls, in order


@pytest.mark.parametrize("option", [["--rounds", "0"], ["--budget", "0"]])
def test_bad_rounds_or_budget_is_a_user_error(tmp_path, option, capsys):
    assert main(["bench", "--json", str(tmp_path / "b.json"), "--points", "16x1", *option]) == 2
    assert "--rounds must be >= 1 and --budget > 0" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_plot_gives_every_line_its_own_colour_and_writes_a_png(tmp_path):
    lines = [(f"runtime{i}", "dense") for i in range(11)]
    assert len(set(bench.line_colours(lines).values())) == 11
    records = [{"runtime": r, "variant": v, "seq": seq, "batch": b, "p90_ms": 10.0 * b, "seq_per_s": 5.0 + i,
                "cpu": "test CPU", "threads": 2, "isa": "ref"}
               for i, (r, v) in enumerate(lines) for seq in (128, 384) for b in (1, 8)]
    bench.plot(records, tmp_path / "plots" / "bench.png")
    assert (tmp_path / "plots" / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
