"""``resgraph.solve``: the steady state of a network, certified by its KKT residual.

0. On a small network (``DIRECT_START``) whose start has no diode at its limit, the linear network
   is solved outright by the polish below: the answer whenever no diode ends up conducting.
1. Projected over-relaxed exact coordinate descent, colour by colour, on the chosen backend,
   with a coarse step before every ``check_every`` sweeps (:mod:`resgraph.coarse`). Every
   ``check_every`` sweeps the backend measures how far it is from a fixed point
   (``sweep_residual``, computed where the potentials live) and the set of conducting diodes is
   read back. A point within ``tol`` of a fixed point is certified by its KKT residual and
   returned as it is when that holds.
2. Otherwise, once the conducting set settles (unless coordinate descent is about to converge by
   itself, ``CONVERGING_CHECKS``; or after ``POLISH_AFTER`` checks, or when the sweep budget is
   spent), the active-set polish (:mod:`resgraph.polish`) solves for the exact
   optimum and certifies it. Should the polish not settle, coordinate descent resumes from where
   it was and the polish is retried later. Within a polish, an interior-point method
   (:mod:`resgraph.interior`) restarts an active-set iteration that cycles or crawls; from the
   second polish on, should the restarted one not settle either, a primal active-set method
   that cannot cycle ends it (``polish._descend``).

``polish=False`` runs coordinate descent alone until the KKT residual reaches ``tol``; it can
stall when a conducting diode joins two free nodes, which the residual then shows.
"""
from __future__ import annotations

import functools
import time

import numpy as np
from threadpoolctl import ThreadpoolController

from .backends import get_backend
from .coarse import shift_step
from .compiled import CompiledNetwork
from .errors import NetworkError, ResgraphError
from .kkt import constraint_slack, current_scale, diode_currents, kkt_report
from .network import Network
from .polish import polish as active_set_polish
from .progress import SolveProgress
from .solution import Solution, build_solution

#: Over-relaxation factor of the coordinate-descent sweeps on mesh-like and on expander-like
#: circuits (:attr:`CompiledNetwork.mesh_like`), measured with ``benchmarks/omega_sweep.py``: on
#: lattices SOR's best factor approaches 2 as they grow (1e4-node lattice with clamps on: 39 ms at
#: 1.5, 28 ms at 1.9; 1e5: 818 -> 709 ms); on random graphs 1.5 is best (1.9 takes 3x the sweeps).
DEFAULT_OMEGA = {True: 1.9, False: 1.5}
#: Checks of coordinate descent before the first polish, even if diodes are still switching, on
#: meshes whose systems are factorised (:attr:`CompiledNetwork.cholesky`), on other meshes and
#: on expanders. Measured on the benchmark circuits (quiet 2-core machine): with
#: AMG-preconditioned or QDLDL solves, 3 -> 30 cut a 1e4-node lattice with conducting clamps from
#: 129 to 59 ms (6 -> 3 active-set solves), a 1e5-node random circuit from 670 to 202 ms, a
#: 1e6-node lattice from 49 to 25 s; no circuit got slower; 100 gained no more. With the sparse
#: Cholesky (:mod:`resgraph.cholesky`) an active-set step costs less, and the best start depends
#: on the circuit: the benchmark lattices with conducting clamps want 5 (1e4 nodes 20-25 ->
#: 17-21 ms, 1e5 0.35 -> 0.29 s, 1e6 8.1 -> 5.6 s; 15: 1e6 about 6.4 s), stress meshes with 10-30 %
#: of their nodes clamped want 15-30 (65e3 nodes, 2e4 clamps: 0.85-0.97 s at 15-30, 1.5 s at 5;
#: seven stress meshes of 3e4-1.2e5 nodes, in all: 11.2 s at 15, 11.4 s at 30, 12.1 s at 5):
#: 15. Since expander systems get the aggregation multigrid, their polish is cheap enough to
#: start at 15 too: random stress circuits with conductances over four decades and thousands of
#: diodes between free nodes need the same active-set steps from there (1e5-1.2e5 nodes, four
#: circuits: 1.4-2.0 -> 1.3-1.7 s; 3e4-1.2e5 nodes, expander-like stress seeds 0-59: 0-20 % each,
#: 11.7 -> 11.1 s in all; 5e5 nodes: 10.1-11.7 -> 8.8-11.2 s).
POLISH_AFTER = {"factorised": 15, "mesh": 30, "expander": 15}
#: Where the polish factorises, it starts once the conducting set changed between two checks by
#: at most this share of its size (elsewhere, once it did not change). Benchmark lattices with
#: conducting clamps reach it after 60-110 sweeps instead of 90-150 and need the same active-set
#: steps or fewer (1e4 nodes 20-26 -> 17-22 ms, 1e5 0.33-0.47 -> 0.25-0.40 s, 1e6 7.4 -> 6.9 s,
#: 7 -> 6 steps); five stress meshes of 3e4-1.2e5 nodes: the same steps, fewer sweeps, no slower.
NEARLY_SETTLED = 0.05
#: Coordinate descent goes on past a settled conducting set while its residual, falling as fast
#: as over the last check, would pass ``tol`` within this many checks: a polish then costs more
#: than the sweeps (random 1e6-node circuit, no clamp conducting: 20 sweeps leave 8.6e-9, 30
#: pass at 4.5e-11, where the polish took 1.9 s; 1e5 nodes: 80 sweeps, 0.07 s, against 20 and a
#: polish, 0.11 s). Stalled sweeps (diodes between free nodes) fall slower and are polished.
CONVERGING_CHECKS = 3
#: The coarse step (:mod:`resgraph.coarse`) runs on networks of at least this many free variables;
#: on smaller ones its fixed cost (about 80 us, 7 sweeps of a 1e3-node lattice) buys nothing
#: measurable (1e3-node lattice with conducting clamps: 2.3 ms without, 2.6 ms with).
COARSE_MIN = 5_000
#: Up to this many free variables (where one factorisation costs about as much as 20-50 sweeps),
#: a start with no diode at its limit is polished before any sweep: 1e3-node lattice with no
#: diode conducting 1.8 -> 1.1 ms, 1e4-node one 15 -> 12 ms (measured).
DIRECT_START = 20_000


@functools.lru_cache(maxsize=1)
def _blas_threads() -> ThreadpoolController:
    """Scanning the loaded libraries takes milliseconds: do it once."""
    return ThreadpoolController()


def _active_tol(x: np.ndarray, tol: float, dtype) -> float:
    """Volts within which a diode counts as at its limit: ``tol`` (or the sweeps' rounding)
    relative to the largest potential."""
    return max(tol, np.finfo(dtype).eps * 16) * max(1.0, float(np.max(np.abs(x), initial=0.0)))


def _start(c: CompiledNetwork, warm_start) -> np.ndarray:
    if warm_start is None:
        return c.feasible_start.copy()
    v = warm_start.potentials if isinstance(warm_start, Solution) else np.asarray(warm_start, np.float64)
    if v.shape != (c.num_nodes,):
        raise NetworkError(f"warm_start must hold {c.num_nodes} node potentials, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise NetworkError("warm_start potentials must be finite")
    x = np.clip(c.variables(v), c.sweep.lower_bound, c.sweep.upper_bound)
    # A warm start that breaks a coupled diode cannot seed coordinate descent.
    return x if np.all(constraint_slack(c, x) >= 0) else c.feasible_start.copy()


def solve(net: Network | CompiledNetwork, backend: str = "numba", tol: float = 1e-9, *,
          warm_start: Solution | np.ndarray | None = None, omega: float | None = None,
          max_sweeps: int = 100_000, check_every: int = 10, polish: bool = True,
          dtype=np.float64, colouring: np.ndarray | None = None, coarse: bool = True,
          progress: bool = False) -> Solution:
    """Steady state of ``net``.

    Parameters
    ----------
    backend : "numba" (default), "numpy", "cupy" or "osqp" (reference QP solver).
    tol : relative KKT tolerance (see :class:`~resgraph.Solution`), e.g. 1e-9.
    warm_start : a previous :class:`Solution` or node potentials to start from.
    omega : over-relaxation factor in (0, 2) of the coordinate-descent sweeps; None picks
        ``DEFAULT_OMEGA`` by the circuit's shape (mesh-like or not).
    max_sweeps, check_every : sweep budget, and how often progress is read back.
    polish : finish with the exact active-set polish (default); False runs sweeps alone.
    dtype : float dtype of the sweeps (float32 is faster on GPUs; the polish is float64).
    colouring : optional colour per node (see :meth:`Network.compile`); default first-fit.
    coarse : before every ``check_every`` sweeps, shift the unclamped potentials by their optimal
        common amount (:mod:`resgraph.coarse`; networks of ``COARSE_MIN`` free variables or
        more); False runs plain coordinate descent.
    progress : show a progress bar on stderr (tqdm): sweeps, residual, diodes at their limit,
        then the polish's steps (for long solves: a 1e6-node circuit can take a minute); not
        for the "osqp" backend, which runs as one call.
    """
    if omega is not None and not 0 < omega < 2:
        raise ResgraphError(f"omega must be in (0, 2) for coordinate descent to converge, got {omega}")
    if not tol > 0:
        raise ResgraphError(f"tol must be positive, got {tol}")
    # BLAS threads only spin against numba's pool here: the solve's vector work is memory-bound.
    # (Measured on a 1e5-node lattice: 41 s with OpenBLAS threads, 4.6 s without.)
    with _blas_threads().limit(limits=1, user_api="blas"):
        t0 = time.perf_counter()
        c = net.compile(colouring) if isinstance(net, Network) else net
        timings = {"compile": time.perf_counter() - t0}
        if backend == "osqp":
            return _solve_osqp(c, tol, timings)
        bar = SolveProgress(progress, c.num_free)
        try:
            sol = _solve(c, backend, tol, warm_start, omega, max_sweeps, check_every, polish, dtype, coarse,
                         timings, bar)
            bar.finished(sol.converged, sol.kkt.scaled)
            return sol
        finally:
            bar.close()


def _solve(c, backend, tol, warm_start, omega, max_sweeps, check_every, polish, dtype, coarse, timings,
           bar) -> Solution:
    be = get_backend(backend)
    x = _start(c, warm_start)
    omega = DEFAULT_OMEGA[c.mesh_like] if omega is None else omega
    t0 = time.perf_counter()
    factorised = polish and c.mesh_like and c.cholesky is not None     # (analysed once per network)
    timings["analysis"] = time.perf_counter() - t0
    polish_after = POLISH_AFTER[("factorised" if factorised else "mesh") if c.mesh_like else "expander"]
    sweeps = polishes = 0
    if polish and c.num_free <= DIRECT_START:
        active_tol = _active_tol(x, tol, dtype)
        if not np.any(c.diode_is_constraint & (constraint_slack(c, x) <= active_tol)):
            # No diode at its limit: solve the linear network outright, which is the answer
            # whenever no diode ends up conducting; otherwise coordinate descent takes over.
            t0 = time.perf_counter()
            first = active_set_polish(c, x, tol, active_tol, on_step=bar.polish_step, descend=False,
                                      on_newton=bar.interior_step)
            timings["polish"] = time.perf_counter() - t0
            polishes = first.iterations
            if first.converged:
                timings["sweeps"] = 0.0
                return build_solution(c, first.x, first.currents, first.report, tol, 0, polishes, be.name, timings)
    t0 = time.perf_counter()
    polish_before = timings.get("polish", 0.0)
    graph = c.sweep.astype(dtype, be.to_device)
    xd = be.to_device(x.astype(dtype))
    con = c.diode_is_constraint
    coarse = coarse and c.num_free >= COARSE_MIN
    result = None
    previous_active = previous_residual = None
    next_polish = failed = 0
    while True:
        chunk = min(check_every, max_sweeps - sweeps)
        if chunk > 0:
            if coarse:
                shift_step(be, graph, xd)
            be.colour_sweep(graph, xd, omega, chunk)
            sweeps += chunk
        # The backend measures the imbalance where x lives (one number comes back), the host
        # scales it as the certificate does, and certifies only a point that passes, by the KKT
        # conditions.
        residual = be.sweep_residual(graph, xd) if chunk > 0 else np.inf
        x = np.asarray(be.to_host(xd), np.float64)
        residual /= current_scale(c, x)
        near = residual <= tol
        converging = (not near and previous_residual is not None and residual < previous_residual
                      and np.log(residual / tol) <= CONVERGING_CHECKS * np.log(previous_residual / residual))
        previous_residual = residual
        if not polish and chunk > 0 and not near:
            continue
        active_tol = _active_tol(x, tol, dtype)
        active = con & (constraint_slack(c, x) <= active_tol)
        if previous_active is None:
            settled = False
        else:
            changes = np.count_nonzero(active != previous_active)
            # Where the polish factorises, a conducting set that changed by a few per cent is
            # settled enough.
            settled = changes <= (NEARLY_SETTLED * np.count_nonzero(active) if factorised else 0)
        previous_active = active
        bar.checked(chunk, residual, int(np.count_nonzero(active)))
        if near or not polish:
            lam = diode_currents(c, x, active)
            report = kkt_report(c, x, lam)
            if report.scaled <= tol or not polish:
                result = None      # coordinate descent alone reached the optimum (or gave up)
                break
        # Polish once the conducting set stops changing, or after a few checks at most: the
        # active-set iteration corrects a rough guess in a few cheap, preconditioner-reusing
        # solves, while sweeps on a poorly conditioned network would crawl.
        if polish and (chunk == 0 or (((settled and not converging) or sweeps >= polish_after * check_every)
                                      and sweeps >= next_polish)):
            t1 = time.perf_counter()
            # The first that fails hands back to coordinate descent; from the second on, where
            # the active-set iteration cycles even from the interior-point method's conducting
            # set, the slower primal active-set method ends it (from a stalled point every retry
            # would cycle the same way).
            result = active_set_polish(c, x, tol, active_tol, on_step=bar.polish_step, descend=failed > 0,
                                       on_newton=bar.interior_step)
            timings["polish"] = timings.get("polish", 0.0) + time.perf_counter() - t1
            polishes += result.iterations
            if result.converged or chunk == 0:
                break
            failed += 1
            next_polish = 2 * sweeps
    timings["sweeps"] = time.perf_counter() - t0 - (timings.get("polish", 0.0) - polish_before)
    if result is not None:
        if result.converged:
            x, lam, report = result.x, result.currents, result.report     # (measured by the polish)
        else:
            lam = diode_currents(c, x, previous_active)
            report = kkt_report(c, x, lam)
    return build_solution(c, x, lam, report, tol, sweeps, polishes, be.name, timings)


def _solve_osqp(c: CompiledNetwork, tol: float, timings: dict) -> Solution:
    from .backends.osqp_backend import solve_qp
    from .qp import network_qp

    qp = network_qp(c)
    t0 = time.perf_counter()
    x, y, info = solve_qp(qp, eps=tol)
    timings["osqp"] = time.perf_counter() - t0
    lam = np.zeros(c.diode_offset.size)
    lam[qp.diode_index] = y
    report = kkt_report(c, x, lam)
    return build_solution(c, x, lam, report, tol, int(info["iterations"]), 0, "osqp", timings)
