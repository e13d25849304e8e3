"""The numba backend: parallel compiled CPU kernels (the workhorse)."""
from __future__ import annotations

import numpy as np

from .. import Backend


def load() -> Backend:
    from . import drn, graph

    return Backend(
        name="numba",
        xp=np,
        colour_sweep=graph.colour_sweep,
        to_device=np.asarray,
        to_host=np.asarray,
        drn=drn,
    )
