"""Solving the symmetric positive definite systems of the active-set polish.

The matrices are weighted graph Laplacians plus a positive diagonal (M-matrices), all of one size
during a polish, each differing from the last in a few rows. The graph's shape
(:attr:`resgraph.compiled.CompiledNetwork.mesh_like`) picks the method. Expanders fill in badly and
are mostly well conditioned: Jacobi-preconditioned conjugate gradients, replaced by CG with a
plain-aggregation multigrid (:mod:`resgraph.aggregation`) where Jacobi proves slow (conductances
spanning decades); where even that proves slow or stalls (conductances over eight or more
decades), CG preconditioned by a support graph (a maximum spanning forest and the strong
couplings, factorised: :mod:`resgraph.support`); and where that stalls too, a factorisation
that fits a share of the memory (``RESCUE_MEMORY_SHARE``). Meshes need O(sqrt n) Jacobi
iterations but factorise well: a sparse Cholesky factorisation (an independent set of
low-degree variables eliminated first, :mod:`resgraph.schur`, then nested dissection,
:mod:`resgraph.cholesky`; up to ``FACTOR_LIMIT`` unknowns and ``FILL_LIMIT`` factor entries per
row) or an algebraic-multigrid hierarchy (PyAMG, classical Ruge-Stueben) beyond, where the same
support graph, then the same rescue, take over if CG stalls. Either is kept as the CG
preconditioner of the later, slightly different systems. Each row changed since it was built
costs CG about one iteration (a rank-one change), so it is rebuilt at once when the changed rows
would cost more than a rebuild; otherwise CG gets the iterations a fresh one would need (its
measured convergence rate) plus a rebuild's worth, and the preconditioner is rebuilt only if
that does not suffice. A rebuild of a factorisation whose sparsity pattern is unchanged (clamped
variables become identity rows, keeping the pattern) reuses the ordering and analysis (done once
per network, see :attr:`CompiledNetwork.cholesky`): a numeric refactorisation, of only the fronts
the changed rows reach where the factor keeps its update matrices (:meth:`Cholesky.factorise`;
1e4-node lattice, 20 rows changed: 0.8 ms, a fresh factorisation 2.0 ms). An AMG hierarchy in that
case keeps its splittings and interpolations and has its coarse levels re-formed from the new
matrix (``SPDSolver._regalerkin``). The first hierarchy of a polish is probed: where CG converges
slowly with it (conductances spanning decades), the later ones are built with the second coarsening
pass (``AMG_SECOND_PASS``).
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numba as nb
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from .aggregation import AggregationHierarchy, positive_diagonal
from .schur import DenseFill, NotPositiveDefinite, SchurCholesky
from .support import STRENGTHS, SupportPreconditioner, SupportUnavailable
from .csr import changed_lower_rows, lower_row_fingerprints, row_excess, term_magnitudes
from .kkt import EPS

#: Systems this small are factorised straight away.
DIRECT_LIMIT = 300
#: Mesh-like systems up to this size are factorised, unless their factor would hold more than
#: ``FILL_LIMIT`` entries per row; others use AMG.
FACTOR_LIMIT = 1_200_000
FILL_LIMIT = 64
#: Bounds on the CG iterations a reused preconditioner gets before it is rebuilt (within them,
#: as many as its construction took time).
REUSE_ITERATIONS = (10, 200)
#: The CG residual's floor, in eps times the 2-norm of the magnitudes of its terms per row
#: (``|rhs| + |A| |x|``).
ROUNDING_FLOOR = 1.0
#: Where that floor sets the target (conductances over many decades, potentials far from 0 V),
#: a residual at it in norm may sit on one row of small terms (a 5e3-node circuit over 12
#: decades: 3e-8 A at a node of 0.2 A, KKT 2.8e-9 against 1e-9), so the system is settled only
#: when each row is also within the tolerance plus this many eps of its own terms' magnitudes
#: (the certificate allows 64, ``kkt.ROUNDING_ULPS``). CG gets there by aiming its recurrence
#: below the floor, ``SETTLE_AIM`` times lower at each restart.
SETTLED_ULPS = 8.0
SETTLE_AIM = 0.01
#: Relative accuracy of a refinement of the rows not settled (see :func:`_refine_unsettled`),
#: and how far past rounding's floor its answer's norm may end: the norm is the noise of the
#: rows of large terms, which a refinement that corrects other rows redraws (5e3-node random
#: graphs over 14 decades: 1.05 times the floor on an AMD EPYC, where the rows were settled).
REFINE_RTOL = 1e-3
FLOOR_NOISE = 2.0
#: Products with matrices this large run on all cores.
PARALLEL_MIN = 50_000
#: Classical AMG settings (strength-of-connection threshold, second coarsening pass), and the
#: rate (residual decades per CG iteration over the first ``PROBE_ITERATIONS`` with a polish's
#: first hierarchy) under which the second set replaces the first. Rates of the first set over
#: 25 iterations (10 are too few: CG speeds up after them): 0.46-0.64 on uniform lattices, 0.12
#: on a 5e5-node mesh with conductances over four decades and 1.6e4 conducting diodes between
#: free nodes, 0.046 on a 1e6-node such mesh with 1.2e4 (180 iterations in all); there the
#: second set gains 0.5 per iteration (13 in all) and the whole solve goes 66 -> 21-24 s. The
#: second pass is not the default: it costs 10-15 % on uniform 1e6-node lattices, and on the
#: 5e5-node mesh 20-30 % (its hierarchies of rows merged by diode clusters cost twice as much to
#: build and apply). The first set's threshold 0.1 (PyAMG's default is 0.25) counts the weaker
#: couplings where conductances spread (5e5-node mesh: 55 -> 34 iterations).
#: (Rates above measured with PyAMG's symmetric smoothing; with ``AMG_SMOOTHERS`` the 1e6-node
#: mesh still switches, and a 5e5-node stress mesh with 2.9e4 diode clusters, at 0.29-0.32, does not.)
AMG_FIRST_PASS = (0.1, False)
AMG_SECOND_PASS = (0.25, True)
PROBE_ITERATIONS = 25
SLOW_DECADES = 0.07
#: One forward Gauss-Seidel sweep before the coarse correction and one backward after it (the
#: V-cycle stays symmetric, as CG needs), instead of PyAMG's symmetric sweep on both sides.
AMG_SMOOTHERS = dict(presmoother=("gauss_seidel", {"sweep": "forward"}),
                     postsmoother=("gauss_seidel", {"sweep": "backward"}))
#: CG iterations allowed with a multigrid preconditioner once it is final.
AMG_ITERATIONS = 500
#: Jacobi-CG iterations allowed on an expander-like graph.
EXPANDER_ITERATIONS = 5_000
#: Where CG with the aggregation multigrid misses its target on an expander, or CG with AMG on a
#: mesh (conductances over ten or more decades: condition numbers past 1e12), and CG with a
#: support graph misses it too, the system is
#: factorised instead, and so are the rest of the polish's systems, when the factorisation's
#: memory (its factor, the dense work space of its fronts and its update matrices,
#: :attr:`SchurCholesky.footprint`, known from the analysis) fits in this share of the
#: machine's physical memory (:func:`rescue_bytes`).
#: Expanders fill in badly, but at a few thousand variables that is affordable: stress circuits
#: of 5e3 variables with conductances over 12 decades hold 72-612 factor entries per row, and 6
#: of them that ended unconverged at KKT 3e-9 to 1e-3 after 0.5-5.0 s (the polish's steps
#: stalling) converge in 0.22-1.12 s (measured; each polish first spends its CG budget, then
#: factorises). The limit was 2**25 factor entries before; a 2e4-node random circuit over 12
#: decades needs 3.6e7 (footprint 1.9 GB, the process's peak 3.0 GB): refused, it ended at KKT
#: 4.1e-5 after 56 s, rescued it converges in 10 s (measured on this 24 GiB machine). A 2e4-node
#: mesh over 12 decades with 1233 diodes between free nodes, whose clusters fill its factor past
#: ``FILL_LIMIT``, ended at KKT 7.9e-8 with AMG-CG 1e4-1e6 times short of its targets; rescued, it
#: converges.
RESCUE_MEMORY_SHARE = 1 / 8
#: CG iterations with the aggregation hierarchy on an expander before a support graph
#: (:mod:`resgraph.support`) takes over (fewer where its rate over the first ``PROBE_ITERATIONS``
#: forecasts more); on a mesh, a system for which the slowest AMG-CG rate seen forecasts more
#: goes to the support graph at once (a 1e5-node mesh over 12 decades: 11 -> 4.4 s). The
#: support's CG takes 30-60 iterations, of about the cost of a cycle, where the hierarchy's needs
#: hundreds (conductances over 8 decades or more) or stalls (12); with four decades the
#: hierarchy takes 40-45 and the support's forest alone 240 (2e4-node random circuits,
#: measured), where the final system of a polish can need more than 100 (1.2e5-node random
#: stress circuits over 4 decades: 100 made two of them 2-2.5x slower, 200 none, and cost the
#: 2e4-node sets over 8 and 12 decades 3-5 %).
SUPPORT_AFTER = 200
#: CG with the support graph (the hierarchy's, once) is restarted from where its recurrence
#: claimed the target while the true residual missed it, aiming at this share of the target, as
#: long as each run cut the residual by ``RESTART_GAIN`` at least.
RESTART_AIM = 0.25
RESTART_GAIN = 0.8
#: The physical memory assumed where the system does not tell it.
ASSUMED_MEMORY = 8 * 2**30
#: An aggregation hierarchy's setup and one CG iteration with it, in Jacobi-CG iterations, and its
#: rate in residual decades per iteration (the forecast of its cost). Measured on
#: 1e5-node random circuits, uniform conductances / conductances over four decades: setup 19 / 36,
#: iteration 3.0 / 4.5, rate 0.49 / 0.18-0.28.
AGGREGATION_GUESS = (30.0, 4.0, 0.25)
#: Jacobi-CG's rate over its first iterations flatters it where conductances spread (1e5-node
#: random circuit, four decades: 0.04-0.10 decades per iteration over the first 30, 0.01-0.02 over
#: all; uniform conductances 0.11-0.18 and 0.13-0.16): its forecast of the iterations still
#: needed is doubled.
FORECAST_MARGIN = 2.0


def rescue_bytes() -> int:
    """Bytes a factorisation may take where it rescues a system on which CG stalled (see
    ``RESCUE_MEMORY_SHARE``)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):      # (no sysconf, or no such name: Windows)
        memory = ASSUMED_MEMORY
    return int(RESCUE_MEMORY_SHARE * (memory if memory > 0 else ASSUMED_MEMORY))


def _operator(n: int, apply) -> sla.LinearOperator:
    return sla.LinearOperator((n, n), matvec=apply, dtype=np.float64)


@nb.njit(parallel=True, cache=True)
def _csr_matvec(indptr, indices, data, x):
    out = np.empty(indptr.size - 1)
    for i in nb.prange(indptr.size - 1):
        total = 0.0
        for t in range(indptr[i], indptr[i + 1]):
            total += data[t] * x[indices[t]]
        out[i] = total
    return out


@nb.njit(cache=True)
def _jacobi_cg(indptr, indices, data, inverse_diagonal, rhs, start, target, iterations, probe, budget, margin,
               initial):
    """Jacobi-preconditioned CG on the CSR matrix from ``start`` until the (recurrence)
    residual's norm is below ``target`` or ``iterations`` are done, watched as :func:`_watch`
    watches SciPy's: it stops after ``budget`` iterations, or after ``probe`` where its rate from
    the residual ``initial`` forecasts more than that (``margin`` times the iterations still
    needed). Returns ``(x, stopped)``. The same steps as ``scipy.sparse.linalg.cg``, compiled:
    on systems below ``PARALLEL_MIN`` rows SciPy's loop spends more per iteration in Python
    than the product takes (1e3-node diode-dense circuits: 60-90 us against 3 us).

    The residual and search directions are kept divided by a power of two near the first
    residual (exact in floating point, the same steps): a system whose residual starts near
    1e-151 A (a restarted polish, every current zero) squared it into subnormals in the dot
    products, which lost their digits and then fell to zero (a division by zero)."""
    n = rhs.size
    x = start.copy()
    r = rhs - _serial_matvec(indptr, indices, data, x)
    largest = np.max(np.abs(r)) if n else 0.0
    if largest == 0.0:
        return x, False
    scale = 2.0 ** np.floor(np.log2(largest))
    r /= scale
    p = np.zeros(n)
    rho_previous = 1.0
    for count in range(1, iterations + 1):
        if np.sqrt(np.dot(r, r)) * scale < target:
            return x, False
        z = inverse_diagonal * r
        rho = np.dot(r, z)
        p = z + (rho / rho_previous) * p if count > 1 else z
        q = _serial_matvec(indptr, indices, data, p)
        alpha = rho / np.dot(p, q)
        x += (alpha * scale) * p
        r -= alpha * q
        rho_previous = rho
        if count == probe:
            true = (rhs - _serial_matvec(indptr, indices, data, x)) / scale
            residual = max(np.sqrt(np.dot(true, true)) * scale, 1e-300)
            progress = max(np.log10(max(initial, 1e-300) / residual), 1e-300) / count
            if count + margin * np.log10(residual / target) / progress > budget:
                return x, True
        elif count >= budget:
            return x, True
    return x, False


@nb.njit(cache=True)
def _serial_matvec(indptr, indices, data, x):
    """:func:`_csr_matvec` on one thread, for :func:`_jacobi_cg`: compiled code with ``cache=True``
    must not call a parallel function (see ``tests/test_numba_cache.py``), and on the systems it
    serves threads would cost more than they save."""
    out = np.empty(indptr.size - 1)
    for i in range(indptr.size - 1):
        total = 0.0
        for t in range(indptr[i], indptr[i + 1]):
            total += data[t] * x[indices[t]]
        out[i] = total
    return out


def _cg(matrix: sp.csr_matrix, product, rhs: np.ndarray, start: np.ndarray, target: float,
        preconditioner, iterations: int) -> tuple[np.ndarray, float, int, float]:
    """CG on ``product`` (``matrix`` as an operator) from ``start`` until the residual's norm is
    at most ``target`` or ``iterations`` are done. Returns ``(x, residual norm, iterations done,
    seconds)``."""
    count = [0]
    began = time.perf_counter()
    y, _ = sla.cg(product, rhs, x0=start, rtol=0.0, atol=target, M=preconditioner, maxiter=iterations,
                  callback=lambda _: count.__setitem__(0, count[0] + 1))
    seconds = time.perf_counter() - began
    return y, float(np.linalg.norm(matrix @ y - rhs)), count[0], seconds


class _Handover(Exception):
    """Stops a Jacobi-CG run from its callback, carrying the iterate to the multigrid."""

    def __init__(self, x: np.ndarray) -> None:
        super().__init__()
        self.x = x.copy()


def _watch(matrix: sp.csr_matrix, rhs: np.ndarray, initial: float, target: float, budget: int, margin: float):
    """A CG callback that stops CG (raising :class:`_Handover` with its iterate) once it has run
    ``budget`` iterations, or after ``PROBE_ITERATIONS`` when its rate so far, from the residual
    ``initial``, forecasts more than ``budget`` in all (``margin`` times the iterations it still
    needs to reach ``target``)."""
    count = 0

    def watch(x):
        nonlocal count
        count += 1
        if count == PROBE_ITERATIONS:
            residual = max(float(np.linalg.norm(matrix @ x - rhs)), 1e-300)
            progress = max(np.log10(max(initial, 1e-300) / residual), 1e-300) / count
            if count + margin * np.log10(residual / target) / progress > budget:
                raise _Handover(x)
        elif count >= budget:
            raise _Handover(x)

    return watch


def _excess(matrix: sp.csr_matrix, rhs: np.ndarray, y: np.ndarray, target: float, tight: float) -> float:
    """Amperes by which the worst row of ``matrix y - rhs`` exceeds ``tight`` plus
    ``SETTLED_ULPS`` of its own terms' rounding, where rounding's floor set the ``target``
    above ``tight``; else 0 (the norm's target already bounds each row)."""
    if target <= tight:
        return 0.0
    return float(row_excess(matrix.indptr, matrix.indices, matrix.data, rhs, y, SETTLED_ULPS * EPS)[1].max()) - tight


def _solved(matrix: sp.csr_matrix, rhs: np.ndarray, y: np.ndarray, residual: float, target: float,
            tight: float) -> bool:
    """Whether ``y``, whose true residual is ``residual``, solves the system: the residual
    meets ``target`` and every row is settled (:func:`_excess`)."""
    return residual <= target and _excess(matrix, rhs, y, target, tight) <= 0.0


def _settle(matrix: sp.csr_matrix, product, rhs: np.ndarray, y: np.ndarray, residual: float, target: float,
            tight: float, preconditioner, budget: int) -> tuple[np.ndarray, bool]:
    """CG from ``y`` (true residual ``residual``) until the residual meets ``target`` and every
    row is settled (:func:`_excess`), in at most ``budget`` iterations; returns the answer (the
    one with the fewest amperes unsettled) and whether it got there. Restarted, aiming lower,
    where CG's recurrence claims the target and the true residual misses it (on ill-conditioned
    systems it can, by a few times: ``RESTART_AIM``), or where the rows are not yet settled
    (``SETTLE_AIM``); where a run gains less than ``RESTART_GAIN`` on the rows, they are refined
    alone (:func:`_refine_unsettled`) for as long as that gains; given up where a run gains less
    than ``RESTART_GAIN`` on the residual, or a refinement on the rows."""
    aim, excess, refining, best = target, np.inf, False, y
    while budget > 0:
        if refining:
            y, missed, count = _refine_unsettled(matrix, product, rhs, best, tight, preconditioner, budget)
        else:
            y, missed, count, _ = _cg(matrix, product, rhs, y, aim, preconditioner, budget)
        budget -= count
        # (Where rounding's floor set the target, a refinement's norm within FLOOR_NOISE of it is
        # at the floor too: the rows it leaves alone carry their rounding.)
        if missed > (FLOOR_NOISE * target if refining and target > tight else target):
            if refining:
                break
            budget = budget if missed < RESTART_GAIN * residual else 0
            residual, aim = missed, target * RESTART_AIM
            continue
        now = _excess(matrix, rhs, y, target, tight)
        if now <= 0.0:
            return y, True
        if now >= RESTART_GAIN * excess:
            if refining:
                break
            refining = True
        if now < excess:
            best, excess = y, now
        aim *= SETTLE_AIM
    return best, False


def _refine_unsettled(matrix: sp.csr_matrix, product, rhs: np.ndarray, y: np.ndarray, tight: float,
                      preconditioner, budget: int) -> tuple[np.ndarray, float, int]:
    """``y`` corrected on the rows not settled (:func:`_excess`): CG solves ``matrix d = -r``
    for their residuals ``r`` alone, the other rows' left out, to ``REFINE_RTOL`` of it. Where
    rounding's floor set CG's target, the residual's norm is rounding's noise in rows of large
    terms, which CG cannot reduce and aims at instead of the rows of small terms still off (a
    1e6-node mesh over 16 decades: 5 % of its rows off by up to 1.1e-8 A, CG stalled at 3.9e-6 A
    in norm; one refinement left 150 rows, off by 1.1e-10 A at most). Returns ``(y + d, its
    residual's norm, CG iterations)``."""
    residual, excess = row_excess(matrix.indptr, matrix.indices, matrix.data, rhs, y, SETTLED_ULPS * EPS)
    drive = np.where(excess > tight, -residual, 0.0)
    step, _, count, _ = _cg(matrix, product, drive, np.zeros_like(y), REFINE_RTOL * float(np.linalg.norm(drive)),
                            preconditioner, budget)
    y = y + step
    return y, float(np.linalg.norm(matrix @ y - rhs)), count


def parallel_operator(matrix: sp.csr_matrix) -> sla.LinearOperator:
    """``matrix`` as a LinearOperator whose products run on all cores (scipy's use one)."""
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    return _operator(matrix.shape[0], lambda v: _csr_matvec(indptr, indices, data, np.ascontiguousarray(v, np.float64).ravel()))


class SPDSolver:
    """Solves a sequence of same-sized SPD M-matrix systems (see :meth:`solve`)."""

    def __init__(self, mesh_like: bool, factor: SchurCholesky | None = None, factorise: bool = True) -> None:
        """``factor``: an analysed factorisation to start from for matrices of its pattern
        (:attr:`CompiledNetwork.cholesky`); ``factorise=False`` sends mesh systems past
        ``DIRECT_LIMIT`` to AMG straight away (a network known to fill too much)."""
        # (On expanders AMG builds dense coarse levels: minutes at 1e6 nodes.)
        self._mesh = mesh_like
        self._analysed = factor
        self._preconditioner: sla.LinearOperator | None = None
        self._factor: SchurCholesky | None = None
        self._built_from: sp.csr_matrix | None = None  # the preconditioner's matrix
        self._setup_seconds = 0.0      # time the current preconditioner took to build
        self._iteration_seconds = 1.0  # time of one CG iteration with it (measured on use)
        self._decades = 0.0            # residual decades per CG iteration, fresh (slowest measured)
        self._hierarchy = None         # pyamg.MultilevelSolver, when the preconditioner is AMG
        self._regalerkined = False     # whether its coarse levels were re-formed since it was built
        self._probed = False           # whether a hierarchy's convergence rate has been probed
        self._second_pass = False      # whether hierarchies are built with the second pass
        self._aggregate = False        # whether expander systems get an aggregation hierarchy
        self._dense_fill = not factorise   # whether a factor would fill beyond FILL_LIMIT
        self._support = False          # whether CG with a support graph took over from a stalled CG
        self._support_failed = False   # whether that stalled too
        self._support_strengths = STRENGTHS    # the support strengths still worth trying
        self._rescued = False          # whether a factorisation took over from a stalled CG
        self._rescue_refused = False   # whether one would take more than rescue_bytes()
        self._indefinite = False       # whether a factorisation met a pivot that is not positive

    def solve(self, matrix: sp.csr_matrix, rhs: np.ndarray, guess: np.ndarray, rtol: float = 1e-12,
              scale: float | Callable[[], float] = 1.0) -> np.ndarray:
        """Solve ``matrix y = rhs`` from ``guess``: exactly where it is factorised, else by CG to a
        residual (2-norm) of ``rtol`` times ``scale`` (amperes: the currents in play; a function
        giving it is called only where CG needs it)."""
        n = rhs.size
        if n == 0:
            return rhs.copy()
        if n <= DIRECT_LIMIT and not self._indefinite:
            y = self._factorise(matrix, rhs)
            if y is not None:
                return y
        if self._rescued:
            y = self._factorise(matrix, rhs, rescue_bytes())
            if y is not None:
                return y
            self._rescued, self._rescue_refused = False, True
        if self._mesh:
            changed, same_pattern = self._changes(matrix)
            # Each changed row costs CG about one iteration with the old preconditioner: rebuild
            # straight away when that would cost more than rebuilding.
            rebuild = changed * self._iteration_seconds >= self._setup_seconds
            # A factor to renew, or none yet and the first matrix to factorise: no CG, and none
            # of its residuals to measure (1e4-node lattice: 0.15 ms a system).
            if (self._factor is not None and rebuild) or (
                    self._preconditioner is None and n <= FACTOR_LIMIT and not self._dense_fill):
                y = self._factorise(matrix, rhs)
                if y is not None:
                    return y
        # Relative to the currents in play at a typical row, not just the drive: when a few
        # sources drive a large network, |rhs| is far below |A| |x|. Per node (root mean square),
        # so that no node's residual exceeds rtol times a typical node's currents: with the
        # 2-norm itself a 1e5-node circuit kept 1e-8 A of a 0.02 A node's currents unbalanced.
        # But |A| |x| grows with the potentials themselves, not their differences (a circuit
        # floating at 1 kV): never above ``scale``, the certificate's (the largest branch
        # current). And never below what rounding lets a residual reach (potentials far from
        # 0 V, conductances over many decades): ``ROUNDING_FLOOR`` units of eps times the norm of
        # the magnitudes of its terms.
        typical = max(float(np.linalg.norm(rhs)), float(np.linalg.norm(matrix.diagonal() * guess))) / np.sqrt(n)
        floor = ROUNDING_FLOOR * EPS * term_magnitudes(matrix.indptr, matrix.indices, matrix.data, rhs, guess)
        tight = rtol * min(typical, scale() if callable(scale) else scale)
        target = max(tight, floor, 1e-300)

        product = parallel_operator(matrix) if n >= PARALLEL_MIN else matrix
        if self._support:
            return self._unless_stalled(matrix, product, rhs, guess, np.inf, target, tight)

        def cg(start, preconditioner, iterations, fresh_from=None):
            """CG from ``start``; with ``fresh_from`` (the residual at ``start``) the new
            preconditioner's convergence rate is recorded."""
            y, residual, count, seconds = _cg(matrix, product, rhs, start, target, preconditioner, iterations)
            if preconditioner is self._preconditioner and count:
                self._iteration_seconds = seconds / count
                if fresh_from is not None:
                    # The slowest seen: from a start near the answer (the later systems of a
                    # polish) CG's first iterations gain more than its steady rate.
                    rate = np.log10(max(fresh_from, 1e-300) / max(residual, 1e-300)) / count
                    self._decades = min(self._decades, rate) if self._decades > 0 else rate
            return y, residual

        initial = float(np.linalg.norm(matrix @ guess - rhs))
        if not self._mesh:
            return self._solve_expander(matrix, product, rhs, guess, target, tight, initial)
        # As many iterations as a fresh preconditioner would need, plus as many as building one
        # would cost.
        low, high = REUSE_ITERATIONS
        needed = np.log10(max(initial, 1e-300) / target) / self._decades if self._decades > 0 else 0.0
        if needed > SUPPORT_AFTER and not self._support_failed:
            # At the slowest rate seen so far, AMG-CG would crawl (conductances over many
            # decades): CG with a support graph instead, without building a hierarchy.
            return self._unless_stalled(matrix, product, rhs, guess, initial, target, tight)
        budget = int(np.ceil(max(needed, 0.0))) + int(np.clip(self._setup_seconds / max(self._iteration_seconds, 1e-9), low, high))
        if self._preconditioner is not None and not rebuild:
            y, residual = cg(guess, self._preconditioner, budget)
            if _solved(matrix, rhs, y, residual, target, tight):
                return y
            if changed == 0 and not self._regalerkined:
                # A rebuild would make this same preconditioner: go on with it.
                return self._unless_stalled(matrix, product, rhs, *cg(y, self._preconditioner, AMG_ITERATIONS), target,
                                            tight)
            guess, initial = y, residual
        if n <= FACTOR_LIMIT and not self._dense_fill:
            y = self._factorise(matrix, rhs)
            if y is not None:
                return y
        if self._hierarchy is not None and rebuild and same_pattern:
            # Rows changed but the pattern did not (clamped variables became identity rows):
            # re-form the coarse levels from the new matrix, keeping the splittings and
            # interpolations, at a fifth of a rebuild's time (1e6-node lattice with conducting
            # clamps: polish 14.9 -> 11.3 s). Not when clusters merged: there the kept
            # interpolation halved CG's rate (5e5-node mesh with 1.6e4 diodes between free
            # nodes, 24 -> 32 s; measured).
            self._regalerkin(matrix)
            y, residual = cg(guess, self._preconditioner, budget)
            if _solved(matrix, rhs, y, residual, target, tight):
                return y
            guess, initial = y, residual
        self._build_hierarchy(matrix)
        if not self._probed:
            # The first hierarchy is probed: where classical coarsening misses the structure
            # (conductances spanning decades leave strong couplings between fine points with
            # no coarse point in common), CG crawls, and the later ones are built with PyAMG's
            # second coarsening pass, which adds those coarse points.
            self._probed = True
            y, residual = cg(guess, self._preconditioner, PROBE_ITERATIONS, fresh_from=initial)
            if _solved(matrix, rhs, y, residual, target, tight):
                return y
            guess, initial = y, residual
            if self._decades < SLOW_DECADES:
                self._second_pass = True
                self._decades = 0.0
                self._build_hierarchy(matrix)
        return self._unless_stalled(matrix, product, rhs,
                                    *cg(guess, self._preconditioner, AMG_ITERATIONS, fresh_from=initial), target, tight)

    def _unless_stalled(self, matrix: sp.csr_matrix, product, rhs: np.ndarray, y: np.ndarray, residual: float,
                        target: float, tight: float) -> np.ndarray:
        """``y``, CG's answer with ``residual``; where CG stalled short of ``target``, or
        reached it without settling every row (:func:`_excess`; conductances over many
        decades), CG from ``y`` preconditioned by a support graph (:mod:`resgraph.support`),
        which then starts the polish's later systems too; where that stalls as well, the answer
        of a factorisation that fits :func:`rescue_bytes`, which then solves the later systems."""
        if _solved(matrix, rhs, y, residual, target, tight):
            return y
        if not self._support_failed:
            try:
                support = SupportPreconditioner(matrix, FILL_LIMIT, self._support_strengths)
                # The later systems, much like this one, skip the supports that filled in (each
                # try an analysis: on a 5e4-node random graph 0.1 s of a 0.2 s build).
                self._support_strengths = tuple(s for s in self._support_strengths if s >= support.strength)
                preconditioner = _operator(rhs.size, support)
            except SupportUnavailable:
                preconditioner = None
            if preconditioner is not None:
                y, settled = _settle(matrix, product, rhs, y, residual, target, tight, preconditioner, AMG_ITERATIONS)
                if settled:
                    self._support = True
                    return y
            self._support, self._support_failed = False, True
        if self._rescue_refused:
            return y
        rescued = self._factorise(matrix, rhs, rescue_bytes())
        self._rescued, self._rescue_refused = rescued is not None, rescued is None
        return y if rescued is None else rescued

    def _solve_expander(self, matrix: sp.csr_matrix, product, rhs: np.ndarray, guess: np.ndarray,
                        target: float, tight: float, initial: float) -> np.ndarray:
        """Jacobi-CG, or CG preconditioned by an aggregation hierarchy once Jacobi proves slow,
        or by a support graph once that does too.

        Jacobi-CG gets as many iterations as the hierarchy would cost (its setup and the cycles
        it would need, ``AGGREGATION_GUESS``, in Jacobi-CG iterations); when its rate over the
        first ``PROBE_ITERATIONS`` (which flatters it) already forecasts more, or it runs out of
        them, the hierarchy takes over from where it stopped, and does so for every later
        system of the polish. (One CG run, watched by its callback: restarting it after the
        probe cost the systems Jacobi does solve 10-20 %.) The hierarchy's CG is watched the same
        way, with ``SUPPORT_AFTER`` iterations, and hands over to the support graph's
        (:meth:`_unless_stalled`)."""
        n = rhs.size
        if not self._aggregate:
            inverse_diagonal = 1.0 / positive_diagonal(matrix)
            setup, cycle, rate = AGGREGATION_GUESS
            budget = int(min(setup + np.log10(max(initial, 1e-300) / target) / rate * cycle, EXPANDER_ITERATIONS))
            jacobi = _operator(n, lambda r: inverse_diagonal * r)
            try:
                if n < PARALLEL_MIN:
                    y, stopped = _jacobi_cg(matrix.indptr, matrix.indices, matrix.data, inverse_diagonal, rhs,
                                            np.asarray(guess, np.float64), target, EXPANDER_ITERATIONS,
                                            PROBE_ITERATIONS, budget, FORECAST_MARGIN, initial)
                    if stopped:
                        raise _Handover(y)
                else:
                    y = sla.cg(product, rhs, x0=guess, rtol=0.0, atol=target, M=jacobi, maxiter=EXPANDER_ITERATIONS,
                               callback=_watch(matrix, rhs, initial, target, budget, FORECAST_MARGIN))[0]
                if target <= tight:
                    return y
                # Rounding's floor set the target: on until every row is settled too (a random
                # 1e4-node circuit floating at 1e5 V stopped at KKT 1.4e-8 without).
                return _settle(matrix, product, rhs, y, np.inf, target, tight, jacobi, budget)[0]
            except _Handover as handover:
                guess = handover.x
            self._aggregate = True
            initial = float(np.linalg.norm(matrix @ guess - rhs))
        hierarchy = _operator(n, AggregationHierarchy(matrix))
        try:
            y = sla.cg(product, rhs, x0=guess, rtol=0.0, atol=target, M=hierarchy,
                       maxiter=SUPPORT_AFTER, callback=_watch(matrix, rhs, initial, target, SUPPORT_AFTER, 1.0))[0]
            residual = float(np.linalg.norm(matrix @ y - rhs))
            if residual > target:
                # Its recurrence claimed the target and the true residual missed it (by a few
                # times): once more, aiming lower, before a support graph is built.
                y, residual, _, _ = _cg(matrix, product, rhs, y, target * RESTART_AIM, hierarchy, SUPPORT_AFTER)
        except _Handover as handover:
            y = handover.x
            residual = float(np.linalg.norm(matrix @ y - rhs))
        return self._unless_stalled(matrix, product, rhs, y, residual, target, tight)

    def _build_hierarchy(self, matrix: sp.csr_matrix) -> None:
        import pyamg

        began = time.perf_counter()
        # Classical AMG, not smoothed aggregation: as fast on uniform meshes (1e6-node lattice,
        # whole solve 15.1 -> 13.1 s), 2-3x faster where conductances span decades and clusters
        # of conducting diodes merge rows (SA: 104-133 CG iterations, RS 53-62; measured).
        strength, second_pass = AMG_SECOND_PASS if self._second_pass else AMG_FIRST_PASS
        self._hierarchy = pyamg.ruge_stuben_solver(matrix, strength=("classical", {"theta": strength}),
                                                   CF=("RS", {"second_pass": second_pass}), **AMG_SMOOTHERS)
        self._preconditioner = self._hierarchy.aspreconditioner(cycle="V")
        self._regalerkined = False
        self._built_from = matrix
        self._setup_seconds = time.perf_counter() - began

    def _regalerkin(self, matrix: sp.csr_matrix) -> None:
        """Put ``matrix`` on the finest level of the kept hierarchy and re-form every coarser
        level from it (``R A P``), keeping the splittings and interpolations. The result is a
        Galerkin hierarchy of ``matrix``, so its V-cycle is still a symmetric positive definite
        preconditioner; only the interpolation may suit it less than a fresh one's."""
        import pyamg

        levels = self._hierarchy.levels
        levels[0].A = matrix
        for fine, coarse in zip(levels[:-1], levels[1:]):
            coarse.A = (fine.R @ fine.A @ fine.P).tocsr()
        self._hierarchy.coarse_solver = pyamg.multilevel.coarse_grid_solver("pinv")
        self._preconditioner = self._hierarchy.aspreconditioner(cycle="V")
        self._regalerkined = True
        self._built_from = matrix

    def _changes(self, matrix: sp.csr_matrix) -> tuple[int, bool]:
        """(columns of the upper triangle of ``matrix`` that differ from the matrix the
        preconditioner was built from, whether the sparsity pattern is the same). Across
        patterns a column counts as changed when its entry count, row indices or values sum
        differently; with nothing built, every column has changed. (Counted on the rows of the
        lower triangle, which are those columns: 1e6-node lattice, 0.27 s of a polish spent
        taking upper triangles before.)"""
        done = self._built_from
        n = matrix.shape[0]
        if done is None or done.shape != matrix.shape:
            return n, False
        if np.array_equal(done.indptr, matrix.indptr) and np.array_equal(done.indices, matrix.indices):
            return int(changed_lower_rows(matrix.indptr, matrix.indices, matrix.data, done.data)), True
        old = lower_row_fingerprints(done.indptr, done.indices, done.data)
        new = lower_row_fingerprints(matrix.indptr, matrix.indices, matrix.data)
        return int(np.count_nonzero((old[0] != new[0]) | (old[1] != new[1]) | (old[2] != new[2]))), False

    def _factorise(self, matrix: sp.csr_matrix, rhs: np.ndarray, max_bytes: int | None = None) -> np.ndarray | None:
        """Solve directly by sparse Cholesky (:mod:`resgraph.schur`), refactorising on the last
        analysis when the pattern is the last one's; None (and no factorisation from now on)
        when a large system's factor would hold more than ``FILL_LIMIT`` entries per row, or,
        given ``max_bytes``, when the factorisation would take more memory than that instead, or
        when a pivot is not positive."""
        began = time.perf_counter()
        if self._factor is None or not self._factor.same_pattern(matrix):
            if self._analysed is not None and self._analysed.same_pattern(matrix):
                self._factor = self._analysed.fresh()
            else:
                self._factor = None
        if self._factor is None:
            # (Given bytes, the analysis stops as soon as the factor alone would not fit them.)
            limit = FILL_LIMIT if max_bytes is None else max_bytes / 8 / rhs.size
            try:
                factor = SchurCholesky(matrix, limit if rhs.size > DIRECT_LIMIT else np.inf)
            except DenseFill:
                factor = None
            if factor is None or (max_bytes is not None and factor.footprint > max_bytes):
                self._dense_fill = True
                return None
            self._factor = factor
        try:
            self._factor.factorise(matrix)
        except NotPositiveDefinite:
            # Conductances over more decades than float64 resolves (20: a node's total conductance
            # rounds to its largest term) can leave the matrix numerically indefinite: no
            # factorisation from now on, CG's answer stands and the certificate says how good it is.
            self._factor = self._preconditioner = None
            self._dense_fill = self._rescue_refused = self._indefinite = True
            return None
        self._built_from = matrix
        self._preconditioner = _operator(rhs.size, self._factor.solve)
        solving = time.perf_counter()
        y = self._factor.solve(rhs)
        self._setup_seconds = solving - began
        # Until CG measures it: one iteration is about a triangular solve plus a product.
        self._iteration_seconds = 1.5 * (time.perf_counter() - solving)
        return y
