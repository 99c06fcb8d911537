"""Every ISA exercised: the model test files run again in child processes with FASTDISTILBERT_FORCE_ISA set to
each fallback variant, as on a CPU without AVX-512 (avx2) or without any SIMD kernel (ref). Part of the normal
suite, so CI runs it.

On this CPU the default run uses the fastest variant; these runs prove the fallbacks give the same answers."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastdistilbert as fd
from fastdistilbert import ops

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")

REPO = Path(__file__).resolve().parents[1]
MODEL_TEST_FILES = ["tests/test_fast_forward.py", "tests/test_modeling.py", "tests/test_save_load.py"]
FALLBACKS = ["avx2", "ref"]
# Kept within ~5 minutes: under the scalar `ref` kernels the real-encoder 80%-sparse fidelity test alone takes
# minutes, so that run leaves it out (its dense twin and every tiny-model sparse test still run on `ref`).
DESELECT = {"ref": ["tests/test_fast_forward.py::test_real_encoder_int8_sparse_fidelity"]}


def forced_env(isa: str) -> dict:
    return {**os.environ, "FASTDISTILBERT_FORCE_ISA": isa}


@pytest.mark.parametrize("isa", FALLBACKS)
def test_forced_variant_runs_the_model(isa):
    """The environment variable reaches a model forward in a fresh process: the GEMMs run on that variant."""
    if isa not in fd.available_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    code = ("import torch, fastdistilbert as fd\nfrom fastdistilbert import ops\n"
            "from fastdistilbert.testing import tiny_distilbert_qa\n"
            "m = fd.convert_to_fast(tiny_distilbert_qa(), quantize=True).eval()\n"
            "m(input_ids=torch.ones(2, 7, dtype=torch.long))\n"
            "print(fd.active_isa(), ops.last_isa(), m.kernel_report()[0]['isa'])")
    out = subprocess.run([sys.executable, "-c", code], env=forced_env(isa), capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split() == [isa, isa, isa]


@pytest.mark.parametrize("isa", FALLBACKS)
def test_model_test_files_pass_with_a_forced_fallback(isa):
    if isa not in fd.available_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    missing = [f for f in MODEL_TEST_FILES if not (REPO / f).exists()]
    assert not missing, f"model test files not found: {missing}"
    deselect = [f"--deselect={test}" for test in DESELECT.get(isa, [])]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *deselect, *MODEL_TEST_FILES],
                            cwd=REPO, env=forced_env(isa), capture_output=True, text=True, timeout=900)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, f"FASTDISTILBERT_FORCE_ISA={isa}: {summary}\n{result.stdout[-3000:]}"
    assert " passed" in summary and "skipped" not in summary, summary  # nothing silently skipped
