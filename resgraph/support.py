"""Support-graph preconditioning: the CG preconditioner of systems whose conductances span many
decades (Vaidya's maximum-spanning-tree preconditioners, augmented).

A polish system is a weighted graph Laplacian plus a non-negative diagonal (conductances to fixed
potentials): ``A = D + sum_e g_e b_e b_e'`` over the resistors ``e`` between free variables
(``b_e`` has +1 and -1 at its ends). Keeping only some of the resistors, ``M = D + sum_kept g_e
b_e b_e'`` (the dropped conductances also leave the diagonal), gives ``M <= A``: the eigenvalues
of ``M^-1 A`` are at least 1 and sum to at most ``n`` plus the dropped resistors' stretch, ``sum
g_e R_e`` (``R_e``: the resistance between the resistor's ends in the kept network). Kept along a
maximum spanning forest (by conductance), every dropped resistor is bridged by a path of
resistors at least as conductive as itself, so its stretch is at most that path's length; where
conductances spread over many decades most of them are far below the path's and CG converges in
tens of iterations. The forest spans every connected part, so ``M`` is positive definite where
``A`` is; the resistors that carry at least ``STRENGTHS`` of a variable's conductance are kept
too (the strongest set whose factor stays within ``linalg.FILL_LIMIT``), which cuts the
iterations by two or three more. A forest factorises with no fill (the Schur elimination of
:mod:`resgraph.schur` and nested dissection hold such factors to 6-10 entries per row).

Measured on the matrices of stress circuits (``benchmarks/stress.py`` with conductances drawn
log-uniform over the decades given, random right-hand sides, CG to 1e-11 of them): 2e4-node
random graphs and lattices over 8 and 12 decades, 33-43 iterations; CG with the plain-aggregation
multigrid (:mod:`resgraph.aggregation`) needed 400-500 there and stalled at 12 decades (relative
residual 3e-7 to 2e-6 after 500), classical AMG stalls the same way. A 5e4-node random graph over
12 decades, whose own factorisation would take 7.5 GB: 36 iterations, 0.1 s. With uniform
conductances it is useless (a forest alone: 500 iterations short; stronger supports fill in),
which is why it serves only where the other preconditioners stall.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from .csr import diagonal_minus, symmetric_from_edges
from .schur import DenseFill, NotPositiveDefinite, SchurCholesky

#: Resistors carrying at least this share of the conductance of the less connected of their
#: ends are kept beside the forest; tried in turn, the first whose factor fits is taken.
STRENGTHS = (0.1, 0.3)


class SupportUnavailable(Exception):
    """No support graph of the matrix factorises (not positive definite as built)."""


def support_matrix(matrix: sp.csr_matrix, strength: float) -> sp.csr_matrix:
    """``M``: ``matrix`` (an SPD M-matrix, CSR with sorted columns) with only its maximum
    spanning forest and the couplings of at least ``strength`` relative weight kept (see the
    module docstring), in the same CSR form."""
    n = matrix.shape[0]
    rows = np.repeat(np.arange(n), np.diff(matrix.indptr))
    upper = (matrix.indices > rows) & (matrix.data < 0)      # each coupling once (explicit zeros out)
    a, b, g = rows[upper], matrix.indices[upper].astype(np.int64), -matrix.data[upper]
    diagonal = matrix.diagonal()
    # Kruskal's forest by largest conductance: the smallest total resistance.
    forest = csgraph.minimum_spanning_tree(sp.csr_matrix((1.0 / g, (a, b)), shape=(n, n))).tocoo()
    ends = np.sort(np.c_[forest.row, forest.col], axis=1).astype(np.int64)
    keep = np.isin(a * n + b, ends[:, 0] * n + ends[:, 1])
    keep |= g >= strength * np.minimum(diagonal[a], diagonal[b])
    kept = (a[keep], b[keep], g[keep])
    dropped = ~keep
    # The dropped conductances leave the diagonal too; rounding never takes a row below the
    # conductances it keeps (weak diagonal dominance holds row by row).
    diagonal = diagonal - np.bincount(a[dropped], g[dropped], n) - np.bincount(b[dropped], g[dropped], n)
    diagonal = np.maximum(diagonal, np.bincount(kept[0], kept[2], n) + np.bincount(kept[1], kept[2], n))
    indptr, indices, data = symmetric_from_edges(n, *kept)
    q_indptr, q_indices, q_data = diagonal_minus(indptr, indices, data, diagonal, np.empty(0, matrix.indices.dtype))
    return sp.csr_matrix((q_data, q_indices, q_indptr), shape=(n, n))


class SupportPreconditioner:
    """A factorised support graph of an SPD M-matrix; calling it on a vector solves with it."""

    def __init__(self, matrix: sp.csr_matrix, max_fill: float, strengths: tuple[float, ...] = STRENGTHS) -> None:
        """The strongest support of ``strengths`` (each a share, as ``STRENGTHS``) whose factor
        holds at most ``max_fill`` entries per row, else the forest alone (``strength`` inf);
        raises :class:`SupportUnavailable` where the support is not positive definite
        (``matrix`` is not, as far as rounding tells)."""
        for strength in strengths:
            try:
                self._factorise(support_matrix(matrix, strength), max_fill)
                self.strength = strength
                return
            except DenseFill:
                continue
        self._factorise(support_matrix(matrix, np.inf), np.inf)
        self.strength = np.inf

    def _factorise(self, support: sp.csr_matrix, max_fill: float) -> None:
        try:
            self._factor = SchurCholesky(support, max_fill)
            self._factor.factorise(support)
        except NotPositiveDefinite as exc:
            raise SupportUnavailable(str(exc)) from None

    def __call__(self, b: np.ndarray) -> np.ndarray:
        return self._factor.solve(np.ascontiguousarray(b, np.float64).ravel())
