"""Colour sweep compiled with Numba: parallel over the variables of one colour.

Same update as :mod:`resgraph.backends.numpy_backend.graph` (projected over-relaxed exact
coordinate descent), fused into one pass per colour with no temporaries. Colours smaller than
``PARALLEL_MIN`` run on one thread: starting the thread pool costs more than they do.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ...kkt import ROUNDING_ALLOWANCE

PARALLEL_MIN = 4096


@nb.njit(cache=True, inline="always")
def _optimum(k, indptr, indices, coupling, inverse_total, source, lower_bound, upper_bound,
             lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, coupled):
    """Variable ``k``'s unconstrained optimum given its neighbours (volts) and its diode interval.
    (Times the inverse total conductance: a division here cost a fifth of a sweep on networks of
    1e3-1e5 variables, measured. Unsigned indices: numba checks a signed one for wraparound,
    which cost a quarter of a sweep, benchmark circuits of 1e4 and 1e5 nodes: 10 sweeps of the
    lattices 0.48 -> 0.35 ms, 4.6 -> 3.2 ms, of the random graphs 0.88 -> 0.68, 9.5 -> 7.4 ms.)
    ``coupled``: whether any diode joins two variables; without, the empty searches of the
    bounds they set cost a third of a sweep (benchmark lattices with conducting clamps, 60
    sweeps: 1e4 nodes 2.05 -> 1.44 ms, 1e5 19.5 -> 13.3 ms, same process)."""
    drive = source[k]
    for t in range(np.uint64(indptr[k]), np.uint64(indptr[k + 1])):
        drive += coupling[t] * x[np.uint64(indices[t])]
    lower = lower_bound[k]
    upper = upper_bound[k]
    if coupled:
        for t in range(lower_ptr[k], lower_ptr[k + 1]):
            lower = max(lower, x[lower_var[t]] + lower_offset[t])
        for t in range(upper_ptr[k], upper_ptr[k + 1]):
            upper = min(upper, x[upper_var[t]] + upper_offset[t])
    return drive * inverse_total[k], lower, upper


@nb.njit(cache=True, inline="always")
def _update(k, indptr, indices, coupling, inverse_total, source, lower_bound, upper_bound,
            lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, coupled, omega):
    target, lower, upper = _optimum(k, indptr, indices, coupling, inverse_total, source, lower_bound, upper_bound,
                                    lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, coupled)
    moved = x[k] + omega * (target - x[k])
    x[k] = min(max(moved, lower), upper)


@nb.njit(cache=True)
def _colour_serial(start, stop, indptr, indices, coupling, inverse_total, source, lower_bound, upper_bound,
                   lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, coupled, omega):
    """A colour too small for the thread pool. (A serial function: written inline in the parallel
    ``_sweeps`` this loop slowed a 1e4-node lattice's sweep from 0.05 to 0.07-0.08 ms.) One loop
    for each value of ``coupled``, a constant in each: written as one loop, with the test inside
    it (or, before there was a test, with the bound searches always run), the loop ran 7-10x
    slower on this project's AMD Zen 4 machine, 47 against 5-7 ns a variable of the 1e4-node
    random benchmark graph, either value (LLVM's code for the two differs; why one is so slow
    there was not pinned down)."""
    if coupled:
        for k in range(start, stop):
            _update(k, indptr, indices, coupling, inverse_total, source, lower_bound, upper_bound,
                    lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, True, omega)
    else:
        for k in range(start, stop):
            _update(k, indptr, indices, coupling, inverse_total, source, lower_bound, upper_bound,
                    lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, False, omega)


@nb.njit(parallel=True, cache=True)
def _sweeps(indptr, indices, coupling, inverse_total, source, lower_bound, upper_bound,
            lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset,
            colour_ptr, x, coupled, omega, sweeps):
    # (The parallel loop is written here, not in a parallel function called from a serial one:
    # numba 0.68 caches such a caller broken when it compiles it against the callee's cached
    # code, and the next process that loads it crashes; see tests/test_numba_cache.py.)
    for _ in range(sweeps):
        for c in range(colour_ptr.size - 1):
            start, stop = colour_ptr[c], colour_ptr[c + 1]
            if stop - start >= PARALLEL_MIN:
                for k in nb.prange(start, stop):
                    _update(k, indptr, indices, coupling, inverse_total, source, lower_bound, upper_bound,
                            lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, coupled, omega)
            else:
                _colour_serial(start, stop, indptr, indices, coupling, inverse_total, source, lower_bound,
                               upper_bound, lower_ptr, lower_var, lower_offset, upper_ptr, upper_var,
                               upper_offset, x, coupled, omega)


def _coupled(graph) -> bool:
    """Whether any diode joins two variables (bounds one by another)."""
    return graph.lower_var.size > 0 or graph.upper_var.size > 0


def colour_sweep(graph, x: np.ndarray, omega: float, sweeps: int) -> None:
    """Run ``sweeps`` projected over-relaxed colour sweeps on ``x`` in place."""
    _sweeps(graph.indptr, graph.indices, graph.coupling, graph.inverse_total, graph.source,
            graph.lower_bound, graph.upper_bound, graph.lower_ptr, graph.lower_var,
            graph.lower_offset, graph.upper_ptr, graph.upper_var, graph.upper_offset,
            graph.colour_ptr, x, _coupled(graph), x.dtype.type(omega), int(sweeps))


@nb.njit(parallel=True, cache=True)
def _optima(indptr, indices, coupling, inverse_total, source, lower_bound, upper_bound,
            lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, coupled):
    target, lower, upper = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    for k in nb.prange(x.size):
        target[k], lower[k], upper[k] = _optimum(k, indptr, indices, coupling, inverse_total, source, lower_bound,
                                                 upper_bound, lower_ptr, lower_var, lower_offset,
                                                 upper_ptr, upper_var, upper_offset, x, coupled)
    return target, lower, upper


def optima(graph, x: np.ndarray):
    """See :func:`resgraph.backends.numpy_backend.graph.optima`."""
    return _optima(graph.indptr, graph.indices, graph.coupling, graph.inverse_total, graph.source,
                   graph.lower_bound, graph.upper_bound, graph.lower_ptr, graph.lower_var,
                   graph.lower_offset, graph.upper_ptr, graph.upper_var, graph.upper_offset, x, _coupled(graph))


@nb.njit(parallel=True, cache=True)
def _residual(indptr, indices, coupling, total, inverse_total, source, lower_bound, upper_bound,
              lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, coupled, allowance):
    worst = 0.0
    for k in nb.prange(x.size):       # (a max reduction: no per-variable arrays)
        target, lower, upper = _optimum(k, indptr, indices, coupling, inverse_total, source, lower_bound,
                                        upper_bound, lower_ptr, lower_var, lower_offset, upper_ptr,
                                        upper_var, upper_offset, x, coupled)
        magnitude = abs(source[k]) + total[k] * abs(x[k])
        for t in range(np.uint64(indptr[k]), np.uint64(indptr[k + 1])):
            magnitude += abs(coupling[t] * x[np.uint64(indices[t])])
        worst = max(worst, total[k] * abs(x[k] - min(max(target, lower), upper)) - allowance * magnitude)
    return worst


def sweep_residual(graph, x: np.ndarray) -> float:
    """See :func:`resgraph.backends.numpy_backend.graph.sweep_residual`."""
    return float(_residual(graph.indptr, graph.indices, graph.coupling, graph.total_conductance,
                           graph.inverse_total, graph.source, graph.lower_bound, graph.upper_bound,
                           graph.lower_ptr, graph.lower_var, graph.lower_offset, graph.upper_ptr,
                           graph.upper_var, graph.upper_offset, x, _coupled(graph), ROUNDING_ALLOWANCE))


@nb.njit(parallel=True, cache=True)
def _shift_terms(indptr, indices, coupling, total, inverse_total, source, lower_bound, upper_bound,
                 lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset, x, coupled):
    d = np.empty_like(x)
    slope, room_up, room_down = 0.0, np.inf, -np.inf
    for k in nb.prange(x.size):
        target, lower, upper = _optimum(k, indptr, indices, coupling, inverse_total, source, lower_bound,
                                        upper_bound, lower_ptr, lower_var, lower_offset, upper_ptr,
                                        upper_var, upper_offset, x, coupled)
        pull = total[k] * (target - x[k])
        if (x[k] > lower or pull > 0) and (x[k] < upper or pull < 0):
            d[k] = 1.0
            slope += pull
            room_up = min(room_up, upper - x[k])
            room_down = max(room_down, lower - x[k])
        else:
            d[k] = 0.0
    curvature = 0.0
    for k in nb.prange(x.size):        # d'Q d, row by row
        if d[k] != 0.0:
            row = total[k]
            for t in range(indptr[k], indptr[k + 1]):
                row -= coupling[t] * d[indices[t]]
            curvature += row
    return d, slope, curvature, room_up, room_down


def shift_terms(graph, x: np.ndarray):
    """See :func:`resgraph.coarse.shift_terms`: the same direction and sums in two fused passes
    with no temporaries (that version, built on ``optima``, cost about seven sweeps per step on
    a 1e6-node lattice)."""
    d, *sums = _shift_terms(graph.indptr, graph.indices, graph.coupling, graph.total_conductance,
                            graph.inverse_total, graph.source, graph.lower_bound, graph.upper_bound,
                            graph.lower_ptr, graph.lower_var, graph.lower_offset, graph.upper_ptr,
                            graph.upper_var, graph.upper_offset, x, _coupled(graph))
    return d, sums
