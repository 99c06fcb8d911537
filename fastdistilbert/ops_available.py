"""Whether the INT8 kernel ops can be used (the extension built and the op wrappers importable)."""
from __future__ import annotations

import functools


@functools.cache
def kernels_available() -> bool:
    from ._extension import warn_if_unavailable

    if not warn_if_unavailable():
        return False
    try:
        from . import ops  # noqa: F401
    except ImportError:
        return False
    return True
