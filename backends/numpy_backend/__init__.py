"""The numpy backend: vectorised NumPy kernels, the readable reference."""
from __future__ import annotations

import numpy as np

from .. import Backend


def load() -> Backend:
    from . import drn, graph

    return Backend(
        name="numpy",
        xp=np,
        colour_sweep=graph.colour_sweep,
        to_device=np.asarray,
        to_host=np.asarray,
        drn=drn,
    )
