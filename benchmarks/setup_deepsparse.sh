#!/usr/bin/env bash
# Creates .venv-deepsparse/ in the repository root: DeepSparse 1.8.0 (the last working release; 1.9.0 on PyPI is
# an end-of-life placeholder that refuses to install) with the onnx and numpy it was built against. It lives in
# its own virtual environment because it pins onnx 1.14.1 and numpy < 2, which the main environment cannot use.
# The benchmark's "deepsparse" peer runs it as a subprocess. Idempotent: re-running only checks the install.
#
#   bash benchmarks/setup_deepsparse.sh            (base interpreter: python3.11, or $PYTHON)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv-deepsparse"
base_python="${PYTHON:-python3.11}"  # deepsparse 1.8.0 ships wheels for CPython 3.8-3.11 only

if [ ! -x "$venv/bin/python" ]; then
    "$base_python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
# onnxruntime is not needed: the graphs are exported and quantized in the main environment.
"$venv/bin/python" -m pip install -q "deepsparse==1.8.0" "onnx==1.14.1" "numpy<2"
"$venv/bin/python" - <<'PY'
import deepsparse, numpy, onnx
from deepsparse.cpu import cpu_architecture
print(f"deepsparse {deepsparse.__version__}, onnx {onnx.__version__}, numpy {numpy.__version__}, "
      f"instruction set {cpu_architecture().isa}, VNNI {cpu_architecture().vnni}")
PY
