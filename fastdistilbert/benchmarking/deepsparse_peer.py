"""DeepSparse 1.8.0 (Neural Magic) as a peer of the model benchmark, run in a subprocess.

DeepSparse is the paper's competitor and the only CPU runtime that exploits block sparsity, but its last real
release pins onnx 1.14.1 and numpy < 2, so it lives in its own virtual environment (`benchmarks/setup_deepsparse.sh`
creates `.venv-deepsparse/`; `FASTDISTILBERT_DEEPSPARSE_PYTHON` points at another interpreter). Here, in the main
environment, each HF model is exported to ONNX and statically quantized to QOperator INT8 (`QLinearMatMul`, the only
INT8 form DeepSparse 1.8 runs); `deepsparse_worker.py` then compiles one engine per (seq, batch) point in the other
interpreter, times it there with the same `time_calls` as the in-process peers and returns JSON.

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
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from .peers import PeerUnavailable, QALogits, _calibration_reader

PYTHON_ENV_VAR = "FASTDISTILBERT_DEEPSPARSE_PYTHON"
WORKER = Path(__file__).with_name("deepsparse_worker.py")
RECORD_KEYS = ("variant", "seq", "batch", "iters", "seq_per_s", "p50_ms", "p90_ms")


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


def build_job(models: dict[str, Path], points: list[tuple[int, int]], threads: int, budget_s: float, workdir: Path,
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
    job = {"threads": threads, "budget_s": budget_s, "models": {k: str(v) for k, v in models.items()},
           "points": job_points, "check_point": 0, "analyze": True}
    return job, inputs


def worker_command(python: Path, job_path: Path, result_path: Path) -> list[str]:
    return [str(python), str(WORKER), str(job_path), str(result_path)]


def worker_environment(threads: int) -> dict[str, str]:
    """No usage analytics from a benchmark (they would try the network); OpenMP/MKL hints for any helper library."""
    return {**os.environ, "NM_DISABLE_ANALYTICS": "1", "OMP_NUM_THREADS": str(threads)}


def parse_result(text: str, models: dict, points: list[tuple[int, int]]) -> dict:
    """The worker's JSON, checked: one finite record per (variant, point) and the check logits of every variant."""
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"DeepSparse worker wrote invalid JSON: {exc}") from exc
    records = result.get("records")
    if not isinstance(records, list):
        raise RuntimeError("DeepSparse worker result has no 'records' list")
    for r in records:
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise RuntimeError(f"DeepSparse record {r} lacks {missing}")
        if not all(math.isfinite(r[k]) and r[k] > 0 for k in ("seq_per_s", "p50_ms", "p90_ms")):
            raise RuntimeError(f"DeepSparse record has non-positive or non-finite timings: {r}")
    got = sorted((r["variant"], r["seq"], r["batch"]) for r in records)
    expected = sorted((v, s, b) for v in models for s, b in points)
    if got != expected:
        raise RuntimeError(f"DeepSparse worker measured {got}, expected {expected}")
    missing_checks = set(models) - set(result.get("check", {}))
    if missing_checks:
        raise RuntimeError(f"DeepSparse worker returned no check logits for {sorted(missing_checks)}")
    return result


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


def measure_deepsparse(hf_variants: dict, workdir: Path, threads: int, points: list[tuple[int, int]],
                       budget_s: float) -> tuple[list[dict], list[str], str]:
    """Time DeepSparse on every {variant: HF QA model} at every point: (records, notes, deepsparse version)."""
    if not hf_variants:
        raise PeerUnavailable("none of the selected --variants is one DeepSparse runs (int8-dense, int8-sparse*-4x1, int8-sparse*-1x4)")
    python = deepsparse_python()
    models = {variant: quantize_for_deepsparse(hf, workdir, variant) for variant, hf in hf_variants.items()}
    job, inputs = build_job(models, points, threads, budget_s, workdir)
    job_path, result_path = workdir / "deepsparse-job.json", workdir / "deepsparse-result.json"
    job_path.write_text(json.dumps(job))
    sys.stdout.flush()
    done = subprocess.run(worker_command(python, job_path, result_path), env=worker_environment(threads))
    if done.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"DeepSparse worker failed with exit code {done.returncode} (its output is above)")
    result = parse_result(result_path.read_text(), models, points)
    records = [{k: r[k] for k in (*RECORD_KEYS, "fraction_of_supported_ops")} for r in result["records"]]
    seq, batch = points[0]
    notes = []
    for variant, hf in hf_variants.items():
        notes.append(agreement_note(variant, hf, models[variant], inputs[(seq, batch)], result["check"][variant]))
        if variant in result["analysis"]:
            notes.append(f"deepsparse {variant} analysis: {result['analysis'][variant]}")
    return records, notes, result["deepsparse_version"]
