"""Peer runtimes for bench_model.py, each built from the same HF DistilBertForQuestionAnswering weights.

A peer is a function `(hf_model, workdir, threads) -> callable(ids, mask)`; it raises `PeerUnavailable` with the
reason when its package is not installed (`pip install .[bench]`) so the benchmark skips it with a note.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch


class PeerUnavailable(RuntimeError):
    pass


def torch_runner(model):
    """callable(ids, mask) -> start logits of a torch QA model, without autograd."""
    def run(ids, mask):
        with torch.inference_mode():
            return model(input_ids=ids, attention_mask=mask).start_logits
    return run


def torch_fp32(hf_model, workdir: Path, threads: int):
    return torch_runner(hf_model.eval())


def torch_dynamic_int8(hf_model, workdir: Path, threads: int):
    return torch_runner(torch.ao.quantization.quantize_dynamic(copy.deepcopy(hf_model).eval(), {torch.nn.Linear},
                                                               dtype=torch.qint8))


class QALogits(torch.nn.Module):
    """A QA model as a function of (input_ids, attention_mask) -> (start_logits, end_logits), for ONNX export."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask):
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask)
        return out.start_logits, out.end_logits


def export_onnx(hf_model, path: Path) -> Path:
    """fp32 ONNX graph with dynamic batch and sequence axes (exported once per benchmark run)."""
    if path.exists():
        return path
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise PeerUnavailable("onnx is not installed (pip install '.[bench]')") from exc
    ids = torch.ones(2, 16, dtype=torch.long)
    mask = torch.ones(2, 16, dtype=torch.long)

    batch, seq = torch.export.Dim("batch", min=1, max=256), torch.export.Dim("seq", min=2, max=512)
    torch.onnx.export(QALogits(hf_model.eval()), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["start_logits", "end_logits"], opset_version=18, dynamo=True,
                      dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                      external_data=False)
    return path


def onnxruntime_int8(hf_model, workdir: Path, threads: int):
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise PeerUnavailable("onnxruntime is not installed (pip install '.[bench]')") from exc
    fp32 = export_onnx(hf_model, workdir / "model.onnx")
    int8 = workdir / "model.int8-dynamic.onnx"
    if not int8.exists():
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])

    def run(ids, mask):
        return session.run(["start_logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    return run


def _calibration_reader(vocab: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            g = np.random.default_rng(0)
            self.batches = iter([{"input_ids": g.integers(0, vocab, (4, 128), dtype=np.int64),
                                  "attention_mask": np.ones((4, 128), dtype=np.int64)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)
    return Reader()


def openvino_int8(hf_model, workdir: Path, threads: int):
    """OpenVINO on a statically quantized QDQ graph (per-channel s8 weights, u8 activations), which it runs as INT8."""
    try:
        import openvino as ov
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise PeerUnavailable("openvino (and onnxruntime for the QDQ quantizer) not installed (pip install '.[bench]')") from exc
    fp32 = export_onnx(hf_model, workdir / "model.onnx")
    qdq = workdir / "model.int8-qdq.onnx"
    if not qdq.exists():
        quantize_static(str(fp32), str(qdq), _calibration_reader(hf_model.config.vocab_size), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul", "Gemm"])
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(qdq)), "CPU",
                                  {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run(ids, mask):
        return request.infer({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    return run


PEERS = {
    "pytorch-fp32": torch_fp32,
    "pytorch-dynamic-int8": torch_dynamic_int8,
    "onnxruntime-int8": onnxruntime_int8,
    "openvino-int8": openvino_int8,
}


def build_peers(hf_model, workdir: Path, threads: int, names) -> tuple[dict, list[str]]:
    """{name: callable(ids, mask)} of the named peers (keys of PEERS) that are installed, built in that order, and a
    note for each one skipped."""
    runners, notes = {}, []
    for name in names:
        try:
            runners[name] = PEERS[name](hf_model, workdir, threads)
        except PeerUnavailable as exc:
            notes.append(f"{name} skipped: {exc}")
    return runners, notes
