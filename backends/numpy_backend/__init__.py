"""The numpy backend: vectorised NumPy kernels, the readable reference."""
from __future__ import annotations

from .. import Backend, host_backend


def load() -> Backend:
    from . import drn, graph

    return host_backend("numpy", graph, drn)
