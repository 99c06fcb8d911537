"""DeepSparse 1.8.0 (Neural Magic) as a peer of the model benchmark, run in a subprocess.

DeepSparse is the paper's competitor and the only CPU runtime that exploits block sparsity, but its last real
release pins onnx 1.14.1 and numpy < 2, so it lives in its own virtual environment (`benchmarks/setup_deepsparse.sh`
creates `.venv-deepsparse/`; `FASTDISTILBERT_DEEPSPARSE_PYTHON` points at another interpreter). Here, in the main
environment, each HF model is exported to ONNX and statically quantized to QOperator INT8 (`QLinearMatMul`, the only
INT8 form DeepSparse 1.8 runs); `deepsparse_worker.py` then compiles one engine per (seq, batch) point in the other
interpreter and stays up (`DeepSparseWorker`): the benchmark asks it to time an engine, with the same `time_calls` as
the in-process peers, in turns with them.

Graph choices, each checked with DeepSparse's own diagnostics (`NM_LOGGING_LEVEL=diagnose`):
- TorchScript exporter at opset 14 with eager attention: LayerNorm then decomposes into the primitive ops DeepSparse
  fuses (98.5% of ops supported, 3 subgraphs); the opset-17/18 `LayerNormalization` op and the SDPA graph leave 7-10%
  of ops to its ONNX Runtime fallback and split the graph into 15-20 pieces.
- Only the Linear MatMuls (constant weights) are quantized: DeepSparse refuses a `QLinearMatMul` of two activations
  with nonzero zero points (the attention products), which ONNX Runtime's quantizer produces.
- Per-tensor weight scales: with `per_channel=True` DeepSparse supported only 87% of the ops, and the start logits
  did not move closer to fp32.

DeepSparse's worker threads synchronise after every layer; on a machine where another job holds the cores each sync
waits for a scheduler slice (a seq-128 forward measured 30 ms on 1 thread and 700 ms on 2 threads next to a training
job). Measure it on a quiet machine.
"""
from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from .peers import PeerUnavailable, QALogits, _calibration_reader

PYTHON_ENV_VAR = "FASTDISTILBERT_DEEPSPARSE_PYTHON"
WORKER = Path(__file__).with_name("deepsparse_worker.py")
ENGINE_KEYS = ("variant", "seq", "batch", "fraction_of_supported_ops")


def deepsparse_python() -> Path:
    """The interpreter of DeepSparse's virtual environment: $FASTDISTILBERT_DEEPSPARSE_PYTHON, else
    `.venv-deepsparse/bin/python` in the repository root. PeerUnavailable when it does not exist."""
    configured = os.environ.get(PYTHON_ENV_VAR)
    python = Path(configured) if configured else Path(__file__).resolve().parents[2] / ".venv-deepsparse" / "bin" / "python"
    if not python.exists():
        raise PeerUnavailable(f"no DeepSparse interpreter at {python}: run benchmarks/setup_deepsparse.sh "
                              f"(or set {PYTHON_ENV_VAR})")
    return python


def export_deepsparse_onnx(hf_model, path: Path) -> Path:
    """fp32 ONNX graph in the form DeepSparse 1.8 compiles whole (see the module docstring), dynamic batch and seq."""
    model = copy.deepcopy(hf_model).eval()
    model.set_attn_implementation("eager")
    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    torch.onnx.export(QALogits(model), (ids, torch.ones_like(ids)), str(path), input_names=list(axes),
                      output_names=["start_logits", "end_logits"], opset_version=14, dynamo=False, dynamic_axes=axes)
    return path


def quantize_for_deepsparse(hf_model, workdir: Path, name: str) -> Path:
    """Static INT8 QOperator graph: per-tensor s8 weights and u8 activations calibrated on random token ids."""
    try:
        import onnx
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise PeerUnavailable("onnx and onnxruntime (the quantizer) are not installed (pip install '.[bench]')") from exc
    fp32 = export_deepsparse_onnx(hf_model, workdir / f"{name}.deepsparse-fp32.onnx")
    graph = onnx.load(str(fp32))
    weights = {init.name for init in graph.graph.initializer}
    linears = [node.name for node in graph.graph.node if node.op_type == "MatMul" and node.input[1] in weights]
    int8 = workdir / f"{name}.deepsparse-int8.onnx"
    quantize_static(str(fp32), str(int8), _calibration_reader(hf_model.config.vocab_size),
                    quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul"], nodes_to_quantize=linears)
    return int8


def build_job(models: dict[str, Path], points: list[tuple[int, int]], threads: int, workdir: Path,
              seed: int = 0) -> tuple[dict, dict[tuple[int, int], np.ndarray]]:
    """The worker's job (inputs saved as .npy beside it) and the input ids of every point. The first point is the one
    whose start logits come back for the accuracy check."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if not models or not points:
        raise ValueError("need at least one model and one (seq, batch) point")
    g = np.random.default_rng(seed)
    inputs, job_points = {}, []
    for seq, batch in points:
        if seq < 1 or batch < 1:
            raise ValueError(f"bad point seq {seq} x batch {batch}")
        ids = g.integers(1000, 29000, (batch, seq), dtype=np.int64)
        path = workdir / f"deepsparse-inputs-{seq}x{batch}.npy"
        np.save(path, ids)
        inputs[(seq, batch)] = ids
        job_points.append({"seq": seq, "batch": batch, "inputs": str(path)})
    job = {"threads": threads, "models": {k: str(v) for k, v in models.items()},
           "points": job_points, "check_point": 0, "analyze": True}
    return job, inputs


def worker_command(python: Path, job_path: Path) -> list[str]:
    return [str(python), str(WORKER), str(job_path)]


def worker_environment(threads: int) -> dict[str, str]:
    """No usage analytics from a benchmark (they would try the network); OpenMP/MKL hints for any helper library."""
    return {**os.environ, "NM_DISABLE_ANALYTICS": "1", "OMP_NUM_THREADS": str(threads)}


def parse_ready(text: str, models: dict, points: list[tuple[int, int]]) -> dict:
    """The worker's first line, checked: one engine per (variant, point) and the check logits of every variant."""
    try:
        ready = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"DeepSparse worker wrote invalid JSON: {exc}: {text[:200]!r}") from exc
    engines = ready.get("engines") if isinstance(ready, dict) else None
    if not isinstance(engines, list):
        raise RuntimeError("DeepSparse worker's ready message has no 'engines' list")
    for e in engines:
        missing = [k for k in ENGINE_KEYS if k not in e]
        if missing:
            raise RuntimeError(f"DeepSparse engine {e} lacks {missing}")
    got = sorted((e["variant"], e["seq"], e["batch"]) for e in engines)
    expected = sorted((v, s, b) for v in models for s, b in points)
    if got != expected:
        raise RuntimeError(f"DeepSparse worker compiled {got}, expected {expected}")
    missing_checks = set(models) - set(ready.get("check", {}))
    if missing_checks:
        raise RuntimeError(f"DeepSparse worker returned no check logits for {sorted(missing_checks)}")
    return ready


def parse_latencies(text: str) -> list[float]:
    """A timing reply: a non-empty list of positive, finite latencies in seconds."""
    try:
        latencies = json.loads(text).get("latencies")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise RuntimeError(f"DeepSparse worker sent an invalid timing reply: {text[:200]!r}") from exc
    if not isinstance(latencies, list) or not latencies or not all(
            isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for t in latencies):
        raise RuntimeError(f"DeepSparse worker sent no usable latencies: {text[:200]!r}")
    return [float(t) for t in latencies]


def max_abs_diff(logits, reference: np.ndarray, who: str) -> float:
    logits = np.asarray(logits, dtype=np.float32)
    if logits.shape != reference.shape:
        raise RuntimeError(f"{who} start logits have shape {logits.shape}, HF's {reference.shape}")
    return float(np.abs(logits - reference).max())


def agreement_note(variant: str, hf_model, int8_graph: Path, ids: np.ndarray, deepsparse_logits) -> str:
    """How far DeepSparse's start logits are from HF fp32 on one batch, next to ONNX Runtime running the same INT8
    graph: equal distances mean the gap is the quantization recipe's, not DeepSparse's."""
    import onnxruntime as ort

    mask = np.ones_like(ids)
    with torch.inference_mode():
        reference = hf_model.eval()(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).start_logits.numpy()
    session = ort.InferenceSession(str(int8_graph), providers=["CPUExecutionProvider"])
    ort_logits = session.run(["start_logits"], {"input_ids": ids, "attention_mask": mask})[0]
    return (f"deepsparse {variant}: max |start logits - HF fp32| = {max_abs_diff(deepsparse_logits, reference, 'DeepSparse'):.4f} "
            f"(ONNX Runtime on the same INT8 graph: {max_abs_diff(ort_logits, reference, 'ONNX Runtime'):.4f}; "
            f"max |HF logit| {np.abs(reference).max():.3f}) at seq {ids.shape[1]} x {ids.shape[0]}")


class DeepSparseWorker:
    """DeepSparse on every {variant: HF QA model} at every point, compiled in its own interpreter and kept there:
    `time(variant, seq, batch, ...)` times one engine on request. Use as a context manager (the worker ends on exit).
    `notes` say how far its start logits are from HF fp32 and what its own analysis saw."""

    def __init__(self, hf_variants: dict, workdir: Path, threads: int, points: list[tuple[int, int]]):
        if not hf_variants:
            raise PeerUnavailable("none of the selected --variants is one DeepSparse runs (int8-dense, "
                                  "int8-sparse*-4x1, int8-sparse*-1x4)")
        python = deepsparse_python()
        models = {variant: quantize_for_deepsparse(hf, workdir, variant) for variant, hf in hf_variants.items()}
        job, inputs = build_job(models, points, threads, workdir)
        job_path = workdir / "deepsparse-job.json"
        job_path.write_text(json.dumps(job))
        sys.stdout.flush()
        self._process = subprocess.Popen(worker_command(python, job_path), env=worker_environment(threads),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:  # until __init__ returns no `with` block owns the worker: end it here on any failure
            ready = parse_ready(self._readline(), models, points)
            self._pause()
            self.version = ready["deepsparse_version"]
            self.variants = list(models)
            self.fraction_of_supported_ops = {(e["variant"], e["seq"], e["batch"]): e["fraction_of_supported_ops"]
                                              for e in ready["engines"]}
            seq, batch = points[0]
            self.notes = []
            for variant, hf in hf_variants.items():
                self.notes.append(agreement_note(variant, hf, models[variant], inputs[(seq, batch)],
                                                 ready["check"][variant]))
                if variant in ready["analysis"]:
                    self.notes.append(f"deepsparse {variant} analysis: {ready['analysis'][variant]}")
        except BaseException:
            self._process.kill()
            self._process.wait()
            raise

    # Between its turns the worker is stopped (SIGSTOP): an idle DeepSparse engine's threads keep competing for the
    # cores; our (4,1) model at seq 128 x 8 measured 44-45 ms alone and 54-55 ms beside a running but idle worker,
    # 43-46 ms beside a stopped one (minimum of 15 calls, 2 threads, one run).
    def _pause(self) -> None:
        os.kill(self._process.pid, signal.SIGSTOP)

    def _resume(self) -> None:
        os.kill(self._process.pid, signal.SIGCONT)

    def _readline(self) -> str:
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise RuntimeError(f"DeepSparse worker ended with exit code {code} (its output is above)")
        return line

    def time(self, variant: str, seq: int, batch: int, *, budget_s: float, warmup: int, min_iters: int) -> list[float]:
        request = {"variant": variant, "seq": seq, "batch": batch, "budget_s": budget_s, "warmup": warmup,
                   "min_iters": min_iters}
        self._resume()
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            return parse_latencies(self._readline())
        finally:
            if self._process.poll() is None:
                self._pause()

    def close(self) -> None:
        if self._process.poll() is None:
            self._resume()
            self._process.stdin.close()
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
