"""OSQP as a reference QP backend: ``resgraph.solve(net, backend="osqp")``.

A generic ADMM solver on :meth:`Network.to_qp`; useful to cross-check resgraph's own solvers.
"""
from __future__ import annotations

import numpy as np

from ..errors import BackendError


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
                 polishing=polish, verbose=False, **settings)
    result = solver.solve(raise_error=False)
    info = {"status": result.info.status, "iterations": result.info.iter,
            "polished": getattr(result.info, "status_polish", None)}
    return np.asarray(result.x, np.float64), np.asarray(result.y, np.float64), info
