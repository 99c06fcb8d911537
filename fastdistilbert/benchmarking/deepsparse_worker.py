"""Times DeepSparse engines inside DeepSparse's own virtual environment; run by `deepsparse_peer` as

    <.venv-deepsparse>/bin/python deepsparse_worker.py JOB.json RESULT.json

This file runs under another interpreter (numpy < 2, onnx 1.14.1, no torch, no fastdistilbert), so it imports only
the standard library, numpy and deepsparse. The timing is `env.py`'s `time_calls` and `summarize`, loaded from the
file beside this one, so DeepSparse is timed exactly like the in-process peers.

JOB: {"threads": int, "budget_s": float, "models": {variant: onnx path}, "points": [{"seq", "batch", "inputs": .npy
path of int64 input_ids [batch, seq]}], "check_point": index into points or null, "analyze": bool}
RESULT: {"deepsparse_version", "records": [{variant, seq, batch, iters, seq_per_s, p50_ms, p90_ms,
fraction_of_supported_ops}], "check": {variant: start logits at the check point}, "analysis": {variant: {...}}}
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path


def load_timing():
    spec = importlib.util.spec_from_file_location("fastdistilbert_bench_env", Path(__file__).with_name("env.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.time_calls, module.summarize


def engine_copy(model: Path, variant: str, seq: int, batch: int) -> Path:
    """DeepSparse rewrites the ONNX file it is given when input shapes are passed: hand it a per-point copy."""
    copy = model.with_name(f"{model.stem}.deepsparse-{variant}-{seq}x{batch}.onnx")
    shutil.copyfile(model, copy)
    return copy


def analyze(model: Path, variant: str, ids, threads: int) -> dict:
    """What DeepSparse's own per-layer analysis says about the compiled graph: how many of the graph's quantized
    MatMuls it runs (their `..._quantized` outputs name its layers), how many stand alone as `gemm` layers and the
    weight (kernel) sparsity it reports for those. It reports no kernel sparsity for MatMuls it fuses into `pyramid`
    layers, so for those only the time tells whether sparsity was exploited."""
    import numpy as np
    from deepsparse import model_debug_analysis

    batch, seq = ids.shape
    graph = engine_copy(model, f"{variant}-analysis", seq, batch)
    report = model_debug_analysis(str(graph), [ids, np.ones_like(ids)], batch_size=batch, num_cores=threads,
                                  num_iterations=2, num_warmup_iterations=1, input_shapes=[[batch, seq], [batch, seq]])
    graph.unlink()
    layers = report["layer_info"]
    quantized = {name for layer in layers for name in layer["canonical_name"].split(",")
                 if name.endswith("MatMul_output_0_quantized")}
    gemms = [layer for layer in layers if layer["name"].startswith("gemm")]
    fused = [layer for layer in layers if not layer["name"].startswith("gemm") and "_quantized" in layer["canonical_name"]]
    sparsity = [round(layer["kernel_sparsity"], 3) for layer in gemms]
    return {"layers": len(layers), "quantized_matmuls": len(quantized), "gemm_layers": len(gemms),
            "gemm_kernel_sparsity": sorted(set(sparsity)) if len(set(sparsity)) <= 4 else [min(sparsity), max(sparsity)],
            "fused_layers_with_quantized_matmul": len(fused), "analysis_ms": round(report["average_total_time"], 2)}


def run(job: dict) -> dict:
    import deepsparse
    import numpy as np
    from tqdm import tqdm

    time_calls, summarize = load_timing()
    threads, points = job["threads"], job["points"]
    result = {"deepsparse_version": deepsparse.__version__, "records": [], "check": {}, "analysis": {}}
    todo = [(variant, index) for variant in job["models"] for index in range(len(points))]
    for variant, index in tqdm(todo, desc="deepsparse", unit="point", file=sys.stderr):
        model, point = Path(job["models"][variant]), points[index]
        seq, batch = point["seq"], point["batch"]
        ids = np.load(point["inputs"])
        if ids.shape != (batch, seq) or ids.dtype != np.int64:
            raise ValueError(f"{point['inputs']}: expected int64 [{batch}, {seq}], got {ids.dtype} {list(ids.shape)}")
        inputs = [ids, np.ones_like(ids)]
        graph = engine_copy(model, variant, seq, batch)
        engine = deepsparse.Engine(model=str(graph), batch_size=batch, num_cores=threads,
                                   input_shapes=[[batch, seq], [batch, seq]])
        stats = summarize(time_calls(lambda: engine.run(inputs), budget_s=job["budget_s"]), batch)
        result["records"].append({"variant": variant, "seq": seq, "batch": batch, **stats,
                                  "fraction_of_supported_ops": engine.fraction_of_supported_ops})
        if index == job.get("check_point"):
            result["check"][variant] = engine.run(inputs)[0].tolist()
            if job.get("analyze"):
                result["analysis"][variant] = analyze(model, variant, ids, threads)
        del engine
        graph.unlink()  # a full copy of the model per point: keep the work directory small
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: deepsparse_worker.py JOB.json RESULT.json", file=sys.stderr)
        return 2
    job_path, result_path = (Path(a) for a in argv)
    Path(result_path).write_text(json.dumps(run(json.loads(job_path.read_text()))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
