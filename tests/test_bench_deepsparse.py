"""The DeepSparse peer's pure-Python parts: interpreter lookup, the worker's job and command line, and the checks on
the JSON the worker sends back. None of this needs DeepSparse itself."""
import importlib.util
import io
import json
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from fastdistilbert.benchmarking import deepsparse_peer as dp
from fastdistilbert.benchmarking.peers import PeerUnavailable

MODELS = {"int8-dense": "dense.onnx", "int8-sparse80-4x1": "sparse.onnx"}
POINTS = [(128, 1), (384, 8)]


def engine(variant, seq, batch, **overrides):
    return {"variant": variant, "seq": seq, "batch": batch, "fraction_of_supported_ops": 0.985, **overrides}


def ready_json(engines=None, check=None) -> str:
    if engines is None:
        engines = [engine(v, s, b) for v in MODELS for s, b in POINTS]
    if check is None:
        check = {v: [[0.0] * 128] for v in MODELS}
    return json.dumps({"deepsparse_version": "1.8.0", "engines": engines, "check": check, "analysis": {}})


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
        dp.DeepSparseWorker({}, tmp_path, 2, POINTS)


def test_job_lists_models_points_threads_and_saved_inputs(tmp_path):
    job, inputs = dp.build_job({k: tmp_path / v for k, v in MODELS.items()}, POINTS, 2, tmp_path)
    assert job["threads"] == 2 and job["check_point"] == 0
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
    _, first = dp.build_job(MODELS, POINTS, 2, tmp_path / "a")
    _, again = dp.build_job(MODELS, POINTS, 2, tmp_path / "b")
    _, other = dp.build_job(MODELS, POINTS, 2, tmp_path / "a", seed=1)
    np.testing.assert_array_equal(first[(384, 8)], again[(384, 8)])
    assert not np.array_equal(first[(384, 8)], other[(384, 8)])


@pytest.mark.parametrize("threads, points, match", [(0, POINTS, "threads"), (2, [], "point"), (2, [(0, 1)], "seq 0")])
def test_job_rejects_bad_arguments(tmp_path, threads, points, match):
    with pytest.raises(ValueError, match=match):
        dp.build_job(MODELS, points, threads, tmp_path)


def test_worker_command_runs_the_worker_file_with_the_given_interpreter(tmp_path):
    command = dp.worker_command(tmp_path / "python", tmp_path / "job.json")
    assert command == [str(tmp_path / "python"), str(dp.WORKER), str(tmp_path / "job.json")]
    assert dp.WORKER.exists()


def test_worker_environment_disables_analytics_and_pins_threads():
    env = dp.worker_environment(3)
    assert env["NM_DISABLE_ANALYTICS"] == "1" and env["OMP_NUM_THREADS"] == "3"


def test_parse_ready_accepts_a_complete_message():
    ready = dp.parse_ready(ready_json(), MODELS, POINTS)
    assert len(ready["engines"]) == 4 and ready["deepsparse_version"] == "1.8.0"


@pytest.mark.parametrize("text, match", [
    ("DeepSparse, Copyright", "invalid JSON"),
    (json.dumps({"check": {}}), "engines"),
    (ready_json(engines=[engine("int8-dense", 128, 1)]), "expected"),
    (ready_json(engines=[engine(v, s, b) for v in MODELS for s, b in POINTS][:-1] + [engine("int8-dense", 128, 1)]),
     "expected"),
    (ready_json(engines=[{k: v for k, v in engine(v, s, b).items() if k != "fraction_of_supported_ops"}
                         for v in MODELS for s, b in POINTS]), "lacks"),
    (ready_json(check={"int8-dense": [[0.0]]}), "int8-sparse80-4x1"),
])
def test_parse_ready_rejects_incomplete_or_corrupt_messages(text, match):
    with pytest.raises(RuntimeError, match=match):
        dp.parse_ready(text, MODELS, POINTS)


@pytest.mark.parametrize("text", ["oops", json.dumps({"latencies": []}), json.dumps({"latencies": [0.1, float("nan")]}),
                                  json.dumps({"latencies": [0.1, 0.0]}), json.dumps({"latencies": ["0.1"]}),
                                  json.dumps([0.1])])
def test_parse_latencies_rejects_unusable_replies(text):
    with pytest.raises(RuntimeError, match="DeepSparse worker sent"):
        dp.parse_latencies(text)


def load_worker():
    spec = importlib.util.spec_from_file_location("deepsparse_worker_under_test", dp.WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worker_answers_timing_requests_after_its_ready_message(tmp_path, monkeypatch):
    """The worker's protocol, with a stand-in for the deepsparse module: one ready line naming every compiled engine
    and the check logits, then one reply per request, timed on the engine the request names."""
    runs = []

    class Engine:
        def __init__(self, model, batch_size, num_cores, input_shapes):
            assert num_cores == 2 and input_shapes[0][0] == batch_size
            self.shape, self.fraction_of_supported_ops = tuple(input_shapes[0]), 0.75

        def run(self, inputs):
            assert inputs[0].shape == self.shape
            runs.append(self.shape)
            return [np.zeros(self.shape, dtype=np.float32)]

    monkeypatch.setitem(sys.modules, "deepsparse", types.SimpleNamespace(__version__="0-stand-in", Engine=Engine))
    models = {}
    for variant, name in MODELS.items():
        (tmp_path / name).write_bytes(b"onnx")
        models[variant] = tmp_path / name
    job, _ = dp.build_job(models, POINTS, 2, tmp_path)
    job["analyze"] = False
    request = {"variant": "int8-sparse80-4x1", "seq": 384, "batch": 8, "budget_s": 0.0, "warmup": 1, "min_iters": 3}
    replies = io.StringIO()
    load_worker().serve(job, io.StringIO(json.dumps(request) + "\n"), replies)
    lines = replies.getvalue().splitlines()
    assert len(lines) == 2
    ready = dp.parse_ready(lines[0], MODELS, POINTS)
    assert ready["deepsparse_version"] == "0-stand-in" and ready["check"]["int8-dense"] == np.zeros((1, 128)).tolist()
    assert {e["fraction_of_supported_ops"] for e in ready["engines"]} == {0.75}
    assert len(dp.parse_latencies(lines[1])) == 3
    assert runs[-4:] == [(8, 384)] * 4  # one warm-up call and three timed ones, on the requested engine
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == sorted(MODELS.values())  # engine copies removed


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


def test_worker_usage_error_without_a_job():
    done = subprocess.run([sys.executable, "-I", "-S", str(dp.WORKER)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr


STAND_IN = '''
import numpy as np
__version__ = "0-stand-in"
class Engine:
    def __init__(self, model, batch_size, num_cores, input_shapes):
        self.shape, self.fraction_of_supported_ops = tuple(input_shapes[0]), 0.75
    def run(self, inputs):
        print("DeepSparse, Copyright (a banner on standard output)")
        return [np.zeros(self.shape, dtype=np.float32)]
def model_debug_analysis(graph, inputs, **options):
    return {"layer_info": [{"name": "gemm_1", "canonical_name": "x_MatMul_output_0_quantized", "kernel_sparsity": 0.8}],
            "average_total_time": 1.0}
'''


def test_worker_process_is_stopped_between_turns_and_ends_on_close(tmp_path, monkeypatch):
    """DeepSparseWorker with the real worker script in a child process (this interpreter, a stand-in deepsparse
    module that also prints to standard output): ready, stopped while idle, timed on request, ended by close()."""
    (tmp_path / "deepsparse.py").write_text(STAND_IN)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv(dp.PYTHON_ENV_VAR, sys.executable)
    monkeypatch.setattr(dp, "quantize_for_deepsparse", lambda hf, workdir, name: workdir / f"{name}.onnx")
    monkeypatch.setattr(dp, "agreement_note", lambda variant, *args: f"{variant} checked")
    for variant in MODELS:
        (tmp_path / f"{variant}.onnx").write_bytes(b"onnx")
    with dp.DeepSparseWorker({v: None for v in MODELS}, tmp_path, 2, POINTS) as worker:
        def state():  # the stop is delivered asynchronously: wait for it (up to 5 s)
            for _ in range(500):
                code = (Path("/proc") / str(worker._process.pid) / "stat").read_text().split(") ")[1][0]
                if code == "T":
                    break
                time.sleep(0.01)
            return code

        assert worker.version == "0-stand-in" and worker.notes[::2] == [f"{v} checked" for v in MODELS]
        assert "'gemm_kernel_sparsity': [0.8]" in worker.notes[1]
        assert worker.fraction_of_supported_ops[("int8-dense", 384, 8)] == 0.75
        assert state() == "T"  # stopped while the others are timed
        assert len(worker.time("int8-dense", 128, 1, budget_s=0.0, warmup=0, min_iters=4)) == 4
        assert state() == "T"
        with pytest.raises(RuntimeError, match="ended with exit code 1"):  # an engine it never compiled
            worker.time("int8-dense", 16, 1, budget_s=0.0, warmup=0, min_iters=1)
    assert worker._process.returncode is not None
