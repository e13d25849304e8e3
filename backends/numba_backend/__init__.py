"""The numba backend: parallel compiled CPU kernels (the workhorse)."""
from __future__ import annotations

from .. import Backend, host_backend


def load() -> Backend:
    from . import drn, graph

    return host_backend("numba", graph, drn)
