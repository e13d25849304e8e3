"""Resolve a backend name to its module of DRN kernels (``resgraph.backends.<name>_backend.drn``).

The kernels module is imported directly, so the DRN needs nothing else from the backend package.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import BackendError

DRN_BACKENDS = ("numba", "numpy", "cupy")


def drn_kernels(name: str) -> ModuleType:
    """The DRN kernels of backend ``name``; :class:`BackendError` if unknown or unavailable here."""
    if not isinstance(name, str) or name not in DRN_BACKENDS:
        raise BackendError(f"unknown DRN backend {name!r}; choose one of {', '.join(DRN_BACKENDS)}")
    if name == "cupy":
        from ..backends.cupy_backend import cupy_module

        cupy_module()   # the same checks and messages (what to install) as resgraph.solve's
    try:
        return importlib.import_module(f"resgraph.backends.{name}_backend.drn")
    except ModuleNotFoundError as exc:
        raise BackendError(f"backend {name!r} has no DRN kernels here ({exc})") from exc
