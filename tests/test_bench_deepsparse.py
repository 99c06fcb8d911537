"""The DeepSparse peer's pure-Python parts: interpreter lookup, the worker's job and command line, and the checks on
the JSON the worker sends back. None of this needs DeepSparse itself."""
import json
import subprocess
import sys

import numpy as np
import pytest

from fastdistilbert.benchmarking import deepsparse_peer as dp
from fastdistilbert.benchmarking.peers import PeerUnavailable

MODELS = {"int8-dense": "dense.onnx", "int8-sparse80-4x1": "sparse.onnx"}
POINTS = [(128, 1), (384, 8)]


def record(variant, seq, batch, **overrides):
    return {"variant": variant, "seq": seq, "batch": batch, "iters": 7, "seq_per_s": 10.0 * batch, "p50_ms": 90.0,
            "p90_ms": 95.0, "fraction_of_supported_ops": 0.985, **overrides}


def result_json(records=None, check=None) -> str:
    if records is None:
        records = [record(v, s, b) for v in MODELS for s, b in POINTS]
    if check is None:
        check = {v: [[0.0] * 128] for v in MODELS}
    return json.dumps({"deepsparse_version": "1.8.0", "records": records, "check": check, "analysis": {}})


def test_missing_interpreter_is_peer_unavailable_naming_the_setup_script(monkeypatch, tmp_path):
    monkeypatch.setenv(dp.PYTHON_ENV_VAR, str(tmp_path / "no-such-venv" / "bin" / "python"))
    with pytest.raises(PeerUnavailable, match="setup_deepsparse.sh"):
        dp.deepsparse_python()


def test_interpreter_comes_from_the_environment_variable(monkeypatch):
    monkeypatch.setenv(dp.PYTHON_ENV_VAR, sys.executable)
    assert str(dp.deepsparse_python()) == sys.executable


def test_default_interpreter_is_the_repository_venv(monkeypatch):
    monkeypatch.delenv(dp.PYTHON_ENV_VAR, raising=False)
    try:
        python = dp.deepsparse_python()
    except PeerUnavailable as exc:
        assert ".venv-deepsparse" in str(exc)
    else:
        assert python.parts[-3:] == (".venv-deepsparse", "bin", "python")


def test_no_selected_variant_skips_before_looking_for_the_interpreter(monkeypatch, tmp_path):
    monkeypatch.setenv(dp.PYTHON_ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(PeerUnavailable, match="--variants"):
        dp.measure_deepsparse({}, tmp_path, 2, POINTS, 1.0)


def test_job_lists_models_points_threads_and_saved_inputs(tmp_path):
    job, inputs = dp.build_job({k: tmp_path / v for k, v in MODELS.items()}, POINTS, 2, 1.5, tmp_path)
    assert job["threads"] == 2 and job["budget_s"] == 1.5 and job["check_point"] == 0
    assert job["models"] == {k: str(tmp_path / v) for k, v in MODELS.items()}
    assert [(p["seq"], p["batch"]) for p in job["points"]] == POINTS
    for point in job["points"]:
        saved = np.load(point["inputs"])
        assert saved.dtype == np.int64 and saved.shape == (point["batch"], point["seq"])
        np.testing.assert_array_equal(saved, inputs[(point["seq"], point["batch"])])
        assert saved.min() >= 1000 and saved.max() < 29000
    json.dumps(job)  # the worker reads it as JSON


def test_job_inputs_are_seeded(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, first = dp.build_job(MODELS, POINTS, 2, 1.0, tmp_path / "a")
    _, again = dp.build_job(MODELS, POINTS, 2, 1.0, tmp_path / "b")
    _, other = dp.build_job(MODELS, POINTS, 2, 1.0, tmp_path / "a", seed=1)
    np.testing.assert_array_equal(first[(384, 8)], again[(384, 8)])
    assert not np.array_equal(first[(384, 8)], other[(384, 8)])


@pytest.mark.parametrize("threads, points, match", [(0, POINTS, "threads"), (2, [], "point"), (2, [(0, 1)], "seq 0")])
def test_job_rejects_bad_arguments(tmp_path, threads, points, match):
    with pytest.raises(ValueError, match=match):
        dp.build_job(MODELS, points, threads, 1.0, tmp_path)


def test_worker_command_runs_the_worker_file_with_the_given_interpreter(tmp_path):
    command = dp.worker_command(tmp_path / "python", tmp_path / "job.json", tmp_path / "result.json")
    assert command == [str(tmp_path / "python"), str(dp.WORKER), str(tmp_path / "job.json"), str(tmp_path / "result.json")]
    assert dp.WORKER.exists()


def test_worker_environment_disables_analytics_and_pins_threads():
    env = dp.worker_environment(3)
    assert env["NM_DISABLE_ANALYTICS"] == "1" and env["OMP_NUM_THREADS"] == "3"


def test_parse_result_accepts_a_complete_answer():
    result = dp.parse_result(result_json(), MODELS, POINTS)
    assert len(result["records"]) == 4 and result["deepsparse_version"] == "1.8.0"


@pytest.mark.parametrize("text, match", [
    ("DeepSparse, Copyright", "invalid JSON"),
    (json.dumps({"check": {}}), "records"),
    (result_json(records=[record("int8-dense", 128, 1)]), "expected"),
    (result_json(records=[record(v, s, b) for v in MODELS for s, b in POINTS][:-1] + [record("int8-dense", 128, 1)]),
     "expected"),
    (result_json(records=[{k: v for k, v in record(v, s, b).items() if k != "p90_ms"}
                          for v in MODELS for s, b in POINTS]), "lacks"),
    (result_json(records=[record(v, s, b, seq_per_s=float("nan")) for v in MODELS for s, b in POINTS]), "non-finite"),
    (result_json(records=[record(v, s, b, p50_ms=0.0) for v in MODELS for s, b in POINTS]), "non-positive"),
    (result_json(check={"int8-dense": [[0.0]]}), "int8-sparse80-4x1"),
])
def test_parse_result_rejects_incomplete_or_corrupt_answers(text, match):
    with pytest.raises(RuntimeError, match=match):
        dp.parse_result(text, MODELS, POINTS)


def test_logit_shape_mismatch_is_an_error():
    with pytest.raises(RuntimeError, match="shape"):
        dp.max_abs_diff([[0.0, 1.0]], np.zeros((1, 3), dtype=np.float32), "DeepSparse")
    assert dp.max_abs_diff([[0.0, 1.5]], np.array([[0.5, 1.0]], dtype=np.float32), "DeepSparse") == 0.5


def test_worker_loads_the_shared_timing_code_with_the_standard_library_alone():
    """The worker runs where neither torch nor fastdistilbert is installed: in a Python without site-packages it must
    still import and get time_calls/summarize from env.py."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import deepsparse_worker as w; "
            "time_calls, summarize = w.load_timing(); "
            "print(summarize(time_calls(lambda: None, warmup=0, min_iters=3, budget_s=0.0), batch=2)['iters'])")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(dp.WORKER.parent)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


def test_worker_usage_error_without_arguments():
    done = subprocess.run([sys.executable, "-I", "-S", str(dp.WORKER)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr
