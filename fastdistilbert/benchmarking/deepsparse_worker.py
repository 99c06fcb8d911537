"""Times DeepSparse engines inside DeepSparse's own virtual environment; started by `deepsparse_peer` as

    <.venv-deepsparse>/bin/python deepsparse_worker.py JOB.json

and then driven through its standard input and output, one JSON object per line, so that the benchmark can time
DeepSparse in turns with the in-process runtimes (on a machine whose speed drifts, runtimes timed one after the other
would each see another machine). This file runs under another interpreter (numpy < 2, onnx 1.14.1, no torch, no
fastdistilbert), so it imports only the standard library, numpy and deepsparse. The timing is `env.py`'s
`time_calls`, loaded from the file beside this one, so DeepSparse is timed exactly like the in-process peers.

JOB: {"threads": int, "models": {variant: onnx path}, "points": [{"seq", "batch", "inputs": .npy path of int64
input_ids [batch, seq]}], "check_point": index into points or null, "analyze": bool}
First line written (once every engine is compiled): {"deepsparse_version", "engines": [{variant, seq, batch,
fraction_of_supported_ops}], "check": {variant: start logits at the check point}, "analysis": {variant: {...}}}.
Then, per request line {"variant", "seq", "batch", "budget_s", "warmup", "min_iters"}: {"latencies": [seconds]}.
End of input ends the worker. Progress and DeepSparse's own messages go to standard error.
"""
from __future__ import annotations

import importlib.util
import json
import os
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


def compile_engines(job: dict) -> tuple[dict, dict]:
    """{(variant, seq, batch): (engine, inputs)} for every model and point, and the ready message's contents."""
    import deepsparse
    import numpy as np
    from tqdm import tqdm

    threads, points = job["threads"], job["points"]
    engines, info = {}, {"deepsparse_version": deepsparse.__version__, "engines": [], "check": {}, "analysis": {}}
    todo = [(variant, index) for variant in job["models"] for index in range(len(points))]
    for variant, index in tqdm(todo, desc="deepsparse engines", unit="engine", file=sys.stderr):
        model, point = Path(job["models"][variant]), points[index]
        seq, batch = point["seq"], point["batch"]
        ids = np.load(point["inputs"])
        if ids.shape != (batch, seq) or ids.dtype != np.int64:
            raise ValueError(f"{point['inputs']}: expected int64 [{batch}, {seq}], got {ids.dtype} {list(ids.shape)}")
        inputs = [ids, np.ones_like(ids)]
        graph = engine_copy(model, variant, seq, batch)
        engine = deepsparse.Engine(model=str(graph), batch_size=batch, num_cores=threads,
                                   input_shapes=[[batch, seq], [batch, seq]])
        graph.unlink()  # a full copy of the model per point: keep the work directory small
        engines[(variant, seq, batch)] = (engine, inputs)
        info["engines"].append({"variant": variant, "seq": seq, "batch": batch,
                                "fraction_of_supported_ops": engine.fraction_of_supported_ops})
        if index == job.get("check_point"):
            info["check"][variant] = engine.run(inputs)[0].tolist()
            if job.get("analyze"):
                info["analysis"][variant] = analyze(model, variant, ids, threads)
    return engines, info


def serve(job: dict, requests, replies) -> None:
    """Compiles every engine, sends the ready message, then times the requested engine per request line."""
    time_calls, _ = load_timing()
    engines, info = compile_engines(job)
    replies.write(json.dumps(info) + "\n")
    replies.flush()
    for line in requests:
        request = json.loads(line)
        engine, inputs = engines[(request["variant"], request["seq"], request["batch"])]
        latencies = time_calls(lambda: engine.run(inputs), warmup=request["warmup"], min_iters=request["min_iters"],
                               budget_s=request["budget_s"])
        replies.write(json.dumps({"latencies": latencies}) + "\n")
        replies.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: deepsparse_worker.py JOB.json  (then timing requests on standard input)", file=sys.stderr)
        return 2
    # The replies keep the real standard output; everything else written there (DeepSparse prints its banner from
    # native code) goes to standard error, where it cannot break the protocol.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(json.loads(Path(argv[0]).read_text()), sys.stdin, replies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
