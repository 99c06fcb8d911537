"""ISA dispatch: detection, forcing, and the exactness probe of every runnable variant."""
import os
import subprocess
import sys

import pytest
import torch

import fastdistilbert
from fastdistilbert._extension import cpu_features


def test_ref_is_always_available_and_last():
    isas = fastdistilbert.available_isas()
    assert isas[-1] == "ref"
    assert set(isas) <= set(fastdistilbert.compiled_isas())
    assert fastdistilbert.compiled_isas() == ["amx", "avx512vnni", "avx512vnni_256", "avxvnni", "avx2", "ref"]


def test_available_isas_follow_cpu_features():
    feats = set(cpu_features())
    isas = fastdistilbert.available_isas()
    assert ("avx512vnni" in isas) == ({"avx512_vnni", "avx512bw", "avx512f", "avx512vl", "avx512dq"} <= feats)
    assert ("avx512vnni_256" in isas) == ("avx512vnni" in isas)
    assert ("amx" in isas) == ("avx512vnni" in isas and {"amx_tile", "amx_int8"} <= feats)
    assert ("avxvnni" in isas) == ("avx_vnni" in feats)
    assert ("avx2" in isas) == ("avx2" in feats)


@pytest.mark.parametrize("isa", ["amx", "avx512vnni", "avx512vnni_256", "avxvnni", "avx2", "ref"])
def test_dot_probe_exact_against_int64(isa):
    if isa not in fastdistilbert.available_isas():
        pytest.skip(f"{isa} not runnable on this CPU")
    g = torch.Generator().manual_seed(0)
    for n in (0, 1, 3, 17, 64, 65, 1000, 4099):
        a = torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g)
        b = torch.randint(-128, 128, (n,), dtype=torch.int8, generator=g)
        want = int((a.to(torch.int64) * b.to(torch.int64)).sum())
        assert torch.ops.fastdistilbert.dot_u8s8(a, b, isa) == want


def test_set_isa_round_trip():
    before = fastdistilbert.active_isa()
    try:
        fastdistilbert.set_isa("ref")
        assert fastdistilbert.active_isa() == "ref"
    finally:
        fastdistilbert.set_isa("auto")
    assert fastdistilbert.active_isa() == before


def test_unknown_isa_is_a_clear_error():
    with pytest.raises(RuntimeError, match="unknown ISA 'amx512'"):
        fastdistilbert.set_isa("amx512")


@pytest.mark.parametrize("isa", ["avx2", "ref"])
def test_force_isa_environment_variable(isa):
    out = subprocess.run(
        [sys.executable, "-c", "import fastdistilbert; print(fastdistilbert.active_isa())"],
        env={**os.environ, "FASTDISTILBERT_FORCE_ISA": isa},
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == isa


def test_force_isa_environment_variable_bad_name_is_clear():
    out = subprocess.run(
        [sys.executable, "-c", "import fastdistilbert; fastdistilbert.active_isa()"],
        env={**os.environ, "FASTDISTILBERT_FORCE_ISA": "sse9"},
        capture_output=True, text=True,
    )
    assert out.returncode != 0
    assert "unknown ISA 'sse9'" in out.stderr
