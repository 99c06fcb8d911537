"""End-to-end QA model benchmark against PyTorch fp32 / dynamic INT8, ONNX Runtime INT8 and OpenVINO INT8.

    python benchmarks/bench_model.py --json bench-results/model.json --plot bench-results/model.png

Same as `fastdistilbert bench`; see `fastdistilbert.benchmarking.model` for what is measured.
"""
from fastdistilbert.benchmarking.model import main

if __name__ == "__main__":
    raise SystemExit(main())
