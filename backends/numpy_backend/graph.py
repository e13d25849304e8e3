"""Colour sweep in vectorised NumPy: the readable reference for every other backend.

For each colour, all its variables move at once to the conductance-weighted mean of their
neighbours plus injected current over total conductance, over-relaxed by ``omega`` and clipped to
the interval their diodes allow (projected SOR). Neighbours always have another colour, so the
update is exact coordinate descent.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...kkt import ROUNDING_ALLOWANCE


def _block(graph, r0: int, r1: int):
    """Variables ``r0:r1``: (start, stop, coupling rows, lower-diode rows, upper-diode rows)."""
    n = graph.total_conductance.size
    i0, i1 = int(graph.indptr[r0]), int(graph.indptr[r1])
    rows = sp.csr_matrix((graph.coupling[i0:i1], graph.indices[i0:i1], graph.indptr[r0:r1 + 1] - i0),
                         shape=(r1 - r0, n))
    diodes = []
    for ptr, var, off in ((graph.lower_ptr, graph.lower_var, graph.lower_offset),
                          (graph.upper_ptr, graph.upper_var, graph.upper_offset)):
        j0, j1 = int(ptr[r0]), int(ptr[r1])
        owner = np.repeat(np.arange(r1 - r0), np.diff(ptr[r0:r1 + 1]))
        diodes.append((owner, var[j0:j1], off[j0:j1]))
    return r0, r1, rows, *diodes


def _optimum(graph, block, x: np.ndarray):
    """Each variable's unconstrained optimum given its neighbours (volts), and its diode interval."""
    r0, r1, rows, (lo_owner, lo_var, lo_off), (up_owner, up_var, up_off) = block
    target = (graph.source[r0:r1] + rows @ x) / graph.total_conductance[r0:r1]
    lower = graph.lower_bound[r0:r1].copy()
    upper = graph.upper_bound[r0:r1].copy()
    np.maximum.at(lower, lo_owner, x[lo_var] + lo_off)
    np.minimum.at(upper, up_owner, x[up_var] + up_off)
    return target, lower, upper


def colour_sweep(graph, x: np.ndarray, omega: float, sweeps: int) -> None:
    """Run ``sweeps`` projected over-relaxed colour sweeps on ``x`` in place (see module doc)."""
    blocks = [_block(graph, int(a), int(b)) for a, b in zip(graph.colour_ptr[:-1], graph.colour_ptr[1:])]
    for _ in range(sweeps):
        for block in blocks:
            r0, r1 = block[:2]
            target, lower, upper = _optimum(graph, block, x)
            moved = x[r0:r1] + omega * (target - x[r0:r1])
            x[r0:r1] = np.minimum(np.maximum(moved, lower), upper)


def optima(graph, x: np.ndarray):
    """Every variable's optimum given its neighbours (volts) and its diode interval, all from the
    same ``x`` (a Jacobi evaluation): arrays ``(target, lower, upper)``."""
    return _optimum(graph, _block(graph, 0, x.size), x)


def sweep_residual(graph, x: np.ndarray) -> float:
    """Largest current (A) by which a variable is off its projected optimum, ``g |x - clip(target)|``,
    less its rounding allowance (as :class:`resgraph.kkt.KKTReport`'s ``kcl_excess``:
    ``ROUNDING_ALLOWANCE`` times ``|source| + |Q| |x|`` in its row), and at least 0. Zero at a fixed point of
    coordinate descent; equal to ``kcl_excess`` when no diode joins two free variables."""
    block = _block(graph, 0, x.size)
    target, lower, upper = _optimum(graph, block, x)
    g = graph.total_conductance
    imbalance = g * np.abs(x - np.minimum(np.maximum(target, lower), upper))
    magnitude = np.abs(graph.source) + g * np.abs(x) + abs(block[2]) @ np.abs(x)
    return max(0.0, float(np.max(imbalance - ROUNDING_ALLOWANCE * magnitude, initial=0.0)))
