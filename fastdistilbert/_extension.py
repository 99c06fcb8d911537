"""Loads the C++ extension and exposes the ISA dispatch.

torch is imported before `_C` so that only torch's own OpenMP runtime (libgomp) is in the process.
"""
from __future__ import annotations

import warnings

import torch

try:
    from . import _C  # noqa: F401  (loading registers torch.ops.fastdistilbert.*)

    EXTENSION_AVAILABLE = True
    EXTENSION_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    EXTENSION_AVAILABLE = False
    EXTENSION_ERROR = str(exc)

_warned = False


def warn_if_unavailable() -> bool:
    """Warns once when the extension is missing (the pure-PyTorch reference ops are used instead)."""
    global _warned
    if not EXTENSION_AVAILABLE and not _warned:
        warnings.warn(
            f"fastdistilbert C++ extension unavailable ({EXTENSION_ERROR}); falling back to the slow "
            "pure-PyTorch reference ops. Reinstall with `pip install --no-build-isolation .`.",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned = True
    return EXTENSION_AVAILABLE


def _require() -> None:
    if not EXTENSION_AVAILABLE:
        raise RuntimeError(f"fastdistilbert C++ extension unavailable: {EXTENSION_ERROR}")


def available_isas() -> list[str]:
    """Kernel variants this CPU can run, fastest first (`ref` always last)."""
    _require()
    return list(torch.ops.fastdistilbert.available_isas())


def compiled_isas() -> list[str]:
    """Every kernel variant compiled into the extension, fastest first."""
    _require()
    return list(torch.ops.fastdistilbert.compiled_isas())


def active_isa() -> str:
    """The variant in use (honours FASTDISTILBERT_FORCE_ISA and `set_isa`)."""
    _require()
    return str(torch.ops.fastdistilbert.active_isa())


def set_isa(name: str) -> None:
    """Forces a kernel variant for this process; "auto" restores the automatic choice.

    Raises RuntimeError naming the ISA when it is unknown or the CPU cannot run it.
    """
    _require()
    torch.ops.fastdistilbert.set_isa(name)


def cpu_features() -> list[str]:
    """Features seen by the extension's own CPUID + XGETBV (OS-enabled state included)."""
    _require()
    return list(torch.ops.fastdistilbert.cpu_features())


def cpu_brand() -> str:
    _require()
    return str(torch.ops.fastdistilbert.cpu_brand())
