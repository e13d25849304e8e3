"""Solving the symmetric positive definite systems of the active-set polish.

The reduced matrices are weighted graph Laplacians plus a positive diagonal (M-matrices). Small
ones are factorised directly (SuperLU); large ones go to conjugate gradients with a Jacobi
preconditioner, which suits expander-like random graphs, and switch to an algebraic-multigrid
preconditioner (PyAMG smoothed aggregation) when Jacobi stalls, as it does on lattices.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

#: Largest system factorised directly.
DIRECT_LIMIT = 30_000
#: Conjugate-gradient iterations tried with Jacobi before switching to multigrid.
JACOBI_ITERATIONS = 300


def solve_spd(matrix: sp.csr_matrix, rhs: np.ndarray, guess: np.ndarray, rtol: float = 1e-13) -> np.ndarray:
    """Solve ``matrix @ y = rhs`` (SPD M-matrix) to relative residual ``rtol``, starting at ``guess``."""
    n = rhs.size
    if n == 0:
        return rhs.copy()
    if n <= DIRECT_LIMIT:
        return sla.splu(matrix.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(rhs)
    target = rtol * max(float(np.linalg.norm(rhs)), 1e-300)
    jacobi = sla.LinearOperator((n, n), matvec=lambda r, d=1.0 / matrix.diagonal(): d * r)
    y, _ = sla.cg(matrix, rhs, x0=guess, rtol=0.0, atol=target, M=jacobi, maxiter=JACOBI_ITERATIONS)
    if np.linalg.norm(matrix @ y - rhs) <= target:
        return y
    import pyamg

    ml = pyamg.smoothed_aggregation_solver(matrix.tocsr(), symmetry="symmetric")
    y, _ = sla.cg(matrix, rhs, x0=y, rtol=0.0, atol=target, M=ml.aspreconditioner(cycle="V"), maxiter=200)
    return y
