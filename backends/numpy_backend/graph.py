"""Colour sweep in vectorised NumPy: the readable reference for every other backend.

For each colour, all its variables move at once to the conductance-weighted mean of their
neighbours plus injected current over total conductance, over-relaxed by ``omega`` and clipped to
the interval their diodes allow (projected SOR). Neighbours always have another colour, so the
update is exact coordinate descent.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _colour_blocks(graph):
    """Per colour: (start, stop, coupling rows, lower-diode rows, upper-diode rows)."""
    blocks = []
    n = graph.total_conductance.size
    for c in range(graph.colour_ptr.size - 1):
        r0, r1 = int(graph.colour_ptr[c]), int(graph.colour_ptr[c + 1])
        i0, i1 = int(graph.indptr[r0]), int(graph.indptr[r1])
        rows = sp.csr_matrix((graph.coupling[i0:i1], graph.indices[i0:i1], graph.indptr[r0:r1 + 1] - i0),
                             shape=(r1 - r0, n))
        diodes = []
        for ptr, var, off in ((graph.lower_ptr, graph.lower_var, graph.lower_offset),
                              (graph.upper_ptr, graph.upper_var, graph.upper_offset)):
            j0, j1 = int(ptr[r0]), int(ptr[r1])
            owner = np.repeat(np.arange(r1 - r0), np.diff(ptr[r0:r1 + 1]))
            diodes.append((owner, var[j0:j1], off[j0:j1]))
        blocks.append((r0, r1, rows, *diodes))
    return blocks


def colour_sweep(graph, x: np.ndarray, omega: float, sweeps: int) -> None:
    """Run ``sweeps`` projected over-relaxed colour sweeps on ``x`` in place (see module doc)."""
    blocks = _colour_blocks(graph)
    for _ in range(sweeps):
        for r0, r1, rows, (lo_owner, lo_var, lo_off), (up_owner, up_var, up_off) in blocks:
            target = (graph.source[r0:r1] + rows @ x) / graph.total_conductance[r0:r1]
            lower = graph.lower_bound[r0:r1].copy()
            upper = graph.upper_bound[r0:r1].copy()
            np.maximum.at(lower, lo_owner, x[lo_var] + lo_off)
            np.minimum.at(upper, up_owner, x[up_var] + up_off)
            moved = x[r0:r1] + omega * (target - x[r0:r1])
            x[r0:r1] = np.minimum(np.maximum(moved, lower), upper)
