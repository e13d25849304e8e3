"""OSQP as a reference QP backend: ``resgraph.solve(net, backend="osqp")``.

A generic ADMM solver on :meth:`Network.to_qp`; useful to cross-check resgraph's own solvers.

OSQP 1.x prints "Polishing not needed - no active set detected at optimal point" on stdout
whenever it is asked to polish an answer with no active constraint, whatever ``verbose`` says
(osqp/osqp#785): one line per solve of a circuit with no diode conducting. So ADMM runs first
without polishing, and the polish is asked for only where OSQP would find an active constraint.
"""
from __future__ import annotations

import numpy as np

from ..errors import BackendError


def may_polish(qp, x: np.ndarray, y: np.ndarray, eps: float) -> bool:
    """Whether OSQP's polish would find a constraint active at ADMM's answer ``(x, y)``: it counts
    row ``j`` (``l = -inf`` here) where ``u[j] - z[j] < y[j]``, with ``z`` its projection of
    ``A x``, which a solved ADMM leaves within its primal tolerance of ``A x``: those rows, with
    that much room."""
    if not y.size:
        return False
    ax = qp.A @ x
    room = eps * (1.0 + np.abs(ax))
    return bool(np.any((y > 0) & (qp.u - ax < y + room)))


def solve_qp(qp, eps: float = 1e-10, max_iter: int = 200_000, polish: bool = True, **settings):
    """Solve ``qp`` with OSQP; returns ``(x, diode_currents_by_row, info)``."""
    try:
        import osqp
    except ImportError as exc:  # pragma: no cover - osqp is a dependency
        raise BackendError("backend='osqp' needs the osqp package: pip install osqp") from exc
    n = qp.P.shape[0]
    if n == 0:
        return np.zeros(0), np.zeros(qp.A.shape[0]), {"status": "empty", "iterations": 0}
    solver = osqp.OSQP()
    solver.setup(qp.P, qp.q, qp.A, qp.l, qp.u, eps_abs=eps, eps_rel=eps, max_iter=max_iter,
                 polishing=False, verbose=False, **settings)
    result = solver.solve(raise_error=False)
    iterations, polished = result.info.iter, None
    if polish and may_polish(qp, np.asarray(result.x, np.float64), np.asarray(result.y, np.float64), eps):
        # From ADMM's answer (OSQP warm-starts): it stops at its first check, then polishes.
        solver.update_settings(polishing=True)
        result = solver.solve(raise_error=False)
        iterations += result.info.iter
        polished = result.info.status_polish
    info = {"status": result.info.status, "iterations": iterations, "polished": polished}
    return np.asarray(result.x, np.float64), np.asarray(result.y, np.float64), info
