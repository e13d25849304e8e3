"""Solving the symmetric positive definite systems of the active-set polish.

The matrices are weighted graph Laplacians plus a positive diagonal (M-matrices), all of one size
during a polish, changing in a few rows from one active set to the next. A short conjugate-
gradient probe with a Jacobi preconditioner measures the convergence rate: expander-like random
graphs converge in tens of iterations and stay on it; lattice-like graphs, where Jacobi needs
O(sqrt n) iterations, switch to a sparse LU (small systems) or to an algebraic-multigrid
preconditioner (PyAMG smoothed aggregation), built once and reused for the later active sets.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

#: Systems this small are factorised straight away.
DIRECT_LIMIT = 3_000
#: Systems up to this size are factorised when Jacobi-CG would be slow.
LU_LIMIT = 60_000
#: Jacobi-CG iterations of the probe, and the most it may be predicted to need to be kept.
PROBE_ITERATIONS = 30
JACOBI_BUDGET = 400


class SPDSolver:
    """Solves a sequence of same-sized SPD M-matrix systems to relative residual ``rtol``."""

    def __init__(self, rtol: float = 1e-12) -> None:
        self.rtol = rtol
        self._multigrid = None
        self._use_jacobi = True

    def solve(self, matrix: sp.csr_matrix, rhs: np.ndarray, guess: np.ndarray) -> np.ndarray:
        n = rhs.size
        if n == 0:
            return rhs.copy()
        if n <= DIRECT_LIMIT:
            return self._lu(matrix, rhs)
        # Relative to the currents in play, not just the drive: when a few sources drive a large
        # network, |rhs| is far below |A| |x| and the rounding floor of the residual.
        scale = max(float(np.linalg.norm(rhs)), float(np.linalg.norm(matrix.diagonal() * guess)), 1e-300)
        target = self.rtol * scale
        start = float(np.linalg.norm(matrix @ guess - rhs))
        if start <= target:
            return guess
        if self._use_jacobi:
            inv_diag = 1.0 / matrix.diagonal()
            jacobi = sla.LinearOperator((n, n), matvec=lambda r: inv_diag * r, dtype=np.float64)
            y, _ = sla.cg(matrix, rhs, x0=guess, rtol=0.0, atol=target, M=jacobi, maxiter=PROBE_ITERATIONS)
            now = float(np.linalg.norm(matrix @ y - rhs))
            if now <= target:
                return y
            rate = (now / start) ** (1.0 / PROBE_ITERATIONS) if now > 0 else 0.0
            needed = np.log(target / now) / np.log(rate) if 0 < rate < 1 else np.inf
            if needed <= JACOBI_BUDGET:
                y, _ = sla.cg(matrix, rhs, x0=y, rtol=0.0, atol=target, M=jacobi, maxiter=int(needed * 2) + 20)
                if np.linalg.norm(matrix @ y - rhs) <= target:
                    return y
            self._use_jacobi = False
            guess = y
        if n <= LU_LIMIT:
            return self._lu(matrix, rhs)
        if self._multigrid is None:
            import pyamg

            self._multigrid = pyamg.smoothed_aggregation_solver(matrix, symmetry="symmetric").aspreconditioner(cycle="V")
        y, _ = sla.cg(matrix, rhs, x0=guess, rtol=0.0, atol=target, M=self._multigrid, maxiter=500)
        return y

    @staticmethod
    def _lu(matrix: sp.csr_matrix, rhs: np.ndarray) -> np.ndarray:
        return sla.splu(matrix.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(rhs)
