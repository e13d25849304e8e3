"""Sparse Cholesky after eliminating an independent set of low-degree variables.

A variable none of whose neighbours is eliminated too is a pivot of a diagonal block: eliminating
a whole independent set ``E`` of them leaves the Schur complement on the rest ``R``,

    S = A_RR - A_RE diag(A_EE)^-1 A_ER,

at the cost of one pass over their rows, and ``A x = b`` becomes ``S x_R = b_R - A_RE
diag(A_EE)^-1 b_E``, then ``x_E = diag(A_EE)^-1 (b_E - A_ER x_R)``. Each eliminated variable
of degree d joins its d neighbours in ``S``, which is what minimum-degree orderings do first;
nested dissection (:mod:`resgraph.cholesky`) then orders ``S`` alone. On the 2-D lattices of the
benchmarks ``E`` is one colour of the checkerboard (the compiled network numbers its variables
colour by colour, and ``E`` is picked greedily in index order), and ``S`` has half the
variables and 30 % fewer factor entries. Benchmark lattice with conducting clamps, one process,
best of 30 (1e4 nodes) and 5 (1e5), against nested dissection of ``A`` itself: elimination,
order and analysis 1.77-1.89 -> 1.49-1.53 ms, 26-32 -> 15-19 ms; numeric factorisation 1.35-1.41
-> 1.08-1.11 ms, 22-26 -> 19-20 ms; solve 0.37 -> 0.33 ms, 4.8-5.4 -> 4.2-4.3 ms; refactorisation
after 20 rows changed 0.70 -> 0.71 ms, 9.7-10.0 -> 10.6-11.3 ms (a changed row of ``A`` changes
several of ``S``). Where the polish contracts clusters of conducting diodes, each step's system
has a new pattern, with an identity row for every variable merged into another or clamped: those
rows have no neighbour and are eliminated outright. Two 65e3-node stress meshes (seeds 5 and 8
of ``benchmarks/stress.py``), whole solves 0.63-1.55 -> 0.20-0.48 s: on one the analyses took
18 instead of 210 ms each, on the other one system's factor no longer passed
``linalg.FILL_LIMIT`` (without the elimination the polish fell back to multigrid-preconditioned
CG there).

The pattern of ``S`` depends only on that of ``A``, so that a matrix of the same pattern (the
polish's clamped variables are identity rows with explicit zeros) is refactorised on the same
analysis; its changed rows change the rows of ``S`` they reach, and only the fronts of those
are factorised again (:meth:`Cholesky.factorise`).
"""
from __future__ import annotations

import copy

import numba as nb
import numpy as np
import scipy.sparse as sp

from .cholesky import Cholesky, DenseFill, NotPositiveDefinite
from .errors import ResgraphError

#: Variables with more neighbours than this are never eliminated before the factorisation (each
#: joins all its neighbours to one another in ``S``).
ELIMINATE_MAX_DEGREE = 8
#: Matrices of at least this many rows are reduced and back-substituted on all of numba's threads.
PARALLEL_MIN = 5_000

__all__ = ["SchurCholesky", "DenseFill", "NotPositiveDefinite"]


@nb.njit(cache=True)
def _independent_set(indptr, indices, max_degree):
    """Greedily, in index order: each variable with at most ``max_degree`` neighbours none of
    which is taken yet. Returns ``new``: the variable's row in ``S``, or -1 where eliminated."""
    n = indptr.size - 1
    eliminated = np.zeros(n, np.bool_)
    blocked = np.zeros(n, np.bool_)
    for i in range(n):
        if blocked[i]:
            continue
        degree = 0
        for t in range(indptr[i], indptr[i + 1]):
            if indices[t] != i:
                degree += 1
        if degree > max_degree:
            continue
        eliminated[i] = True
        for t in range(indptr[i], indptr[i + 1]):
            blocked[indices[t]] = True
    new = np.empty(n, np.int64)
    rows = 0
    for i in range(n):
        if eliminated[i]:
            new[i] = -1
        else:
            new[i] = rows
            rows += 1
    return new


@nb.njit(cache=True, inline="always")
def _term(k, r, stamp, slot, columns, position, s_start, c_start, unique, terms, write):
    """A term of row ``r`` of ``S`` in column ``k``: the column is new to the row unless
    ``stamp[k] == r`` (then ``slot[k]`` is its place). Returns the row's ``(columns, terms)``."""
    if stamp[k] != r:
        stamp[k], slot[k] = r, unique
        if write:
            columns[s_start + unique] = k
        unique += np.uint64(1)
    if write:
        position[c_start + terms] = s_start + slot[k]
    return unique, terms + np.uint64(1)


@nb.njit(cache=True, inline="always")
def _row_pattern(r, indptr, indices, new, keep, stamp, slot, columns, position, s_start, c_start, write):
    """Row ``r`` of ``S``: its distinct columns (``A``'s own among ``R``, and the neighbours of each
    eliminated neighbour), in the order first met, and for each of its terms (one per entry of
    ``A`` it sums, in the order :func:`_schur_row` meets them) the position of its column; both
    written from ``s_start`` and ``c_start`` where ``write``. Returns ``(columns, terms)``.
    (Unsigned indices, as in the Cholesky's kernels: no wraparound checks.)"""
    i = np.uint64(keep[r])
    unique = terms = np.uint64(0)
    one = np.uint64(1)
    for t in range(np.uint64(indptr[i]), np.uint64(indptr[i + one])):
        j = np.uint64(indices[t])
        if new[j] >= 0:
            unique, terms = _term(np.uint64(new[j]), r, stamp, slot, columns, position, s_start, c_start, unique,
                                  terms, write)
            continue
        for u in range(np.uint64(indptr[j]), np.uint64(indptr[j + one])):
            l = np.uint64(indices[u])
            if l != j:
                unique, terms = _term(np.uint64(new[l]), r, stamp, slot, columns, position, s_start, c_start,
                                      unique, terms, write)
    return unique, terms


@nb.njit(parallel=True, cache=True)
def _schur_pattern(indptr, indices, new, keep, blocks, index):
    """``S``'s pattern (columns unsorted: the factorisation does not need them sorted) and each
    term's position in it (both of ``index``'s dtype), on ``blocks`` threads, each with its own
    markers. Returns
    ``(s_ptr, s_columns, term_ptr, position)``. Called from Python only (see
    ``csr._merge_rows``)."""
    m = keep.size
    bounds = np.linspace(0, m, blocks + 1).astype(np.int64)
    stamp = np.full(blocks * m, -1, np.int64)
    slot = np.empty(blocks * m, np.uint64)
    s_count = np.zeros(m + 1, np.int64)
    t_count = np.zeros(m + 1, np.int64)
    nothing = np.empty(0, np.int64)
    for b in nb.prange(blocks):
        own_stamp, own_slot = stamp[b * m:(b + 1) * m], slot[b * m:(b + 1) * m]
        for r in range(bounds[b], bounds[b + 1]):
            unique, terms = _row_pattern(r, indptr, indices, new, keep, own_stamp, own_slot, nothing, nothing,
                                         np.uint64(0), np.uint64(0), False)
            s_count[r + 1], t_count[r + 1] = unique, terms
    s_ptr, term_ptr = np.cumsum(s_count), np.cumsum(t_count)
    s_columns = np.empty(s_ptr[m], index.dtype)
    position = np.empty(term_ptr[m], index.dtype)
    stamp[:] = -1
    for b in nb.prange(blocks):
        own_stamp, own_slot = stamp[b * m:(b + 1) * m], slot[b * m:(b + 1) * m]
        for r in range(bounds[b], bounds[b + 1]):
            _row_pattern(r, indptr, indices, new, keep, own_stamp, own_slot, s_columns, position,
                         np.uint64(s_ptr[r]), np.uint64(term_ptr[r]), True)
    return s_ptr, s_columns, term_ptr, position


@nb.njit(cache=True, inline="always")
def _schur_row(r, indptr, indices, data, diagonal_at, new, keep, s_ptr, term_ptr, position, s_data):
    """Row ``r`` of ``S`` into ``s_data``; returns an eliminated neighbour whose pivot is not
    positive, or -1."""
    one = np.uint64(1)
    for p in range(np.uint64(s_ptr[r]), np.uint64(s_ptr[r + 1])):
        s_data[p] = 0.0
    i = np.uint64(keep[r])
    c = np.uint64(term_ptr[r])
    for t in range(np.uint64(indptr[i]), np.uint64(indptr[i + one])):
        j = np.uint64(indices[t])
        if new[j] >= 0:
            s_data[np.uint64(position[c])] += data[t]
            c += one
            continue
        pivot = data[np.uint64(diagonal_at[j])]
        if not pivot > 0.0:
            return np.int64(j)
        ratio = data[t] / pivot
        for u in range(np.uint64(indptr[j]), np.uint64(indptr[j + one])):
            if np.uint64(indices[u]) != j:
                s_data[np.uint64(position[c])] -= ratio * data[u]
                c += one
    return -1


@nb.njit(cache=True)
def _schur_values(indptr, indices, data, diagonal_at, new, keep, s_ptr, term_ptr, position, s_data):
    """``S``'s values on its pattern, row by row; returns a non-positive eliminated pivot's row
    (of ``A``) or -1."""
    for r in range(keep.size):
        bad = _schur_row(r, indptr, indices, data, diagonal_at, new, keep, s_ptr, term_ptr, position, s_data)
        if bad >= 0:
            return bad
    return -1


@nb.njit(parallel=True, cache=True)
def _schur_values_in_parallel(indptr, indices, data, diagonal_at, new, keep, s_ptr, term_ptr, position, s_data):
    """:func:`_schur_values` on all threads (called from Python only, see ``csr._merge_rows``)."""
    bad = np.full(keep.size, -1, np.int64)
    for r in nb.prange(keep.size):
        bad[r] = _schur_row(r, indptr, indices, data, diagonal_at, new, keep, s_ptr, term_ptr, position, s_data)
    for r in range(keep.size):
        if bad[r] >= 0:
            return bad[r]
    return -1


@nb.njit(cache=True, inline="always")
def _reduced_entry(r, indptr, indices, data, diagonal_at, new, keep, rhs):
    i = keep[r]
    total = rhs[i]
    for t in range(indptr[i], indptr[i + 1]):
        j = indices[t]
        if new[j] < 0 and data[t] != 0.0:
            total -= data[t] * rhs[j] / data[diagonal_at[j]]
    return total


@nb.njit(cache=True, inline="always")
def _eliminated_entry(j, indptr, indices, data, diagonal_at, new, x, rhs):
    total = rhs[j]
    for u in range(indptr[j], indptr[j + 1]):
        k = indices[u]
        if k != j:
            total -= data[u] * x[new[k]]
    return total / data[diagonal_at[j]]


@nb.njit(cache=True)
def _reduce(indptr, indices, data, diagonal_at, new, keep, rhs):
    """``b_R - A_RE diag(A_EE)^-1 b_E``."""
    out = np.empty(keep.size)
    for r in range(keep.size):
        out[r] = _reduced_entry(r, indptr, indices, data, diagonal_at, new, keep, rhs)
    return out


@nb.njit(parallel=True, cache=True)
def _reduce_in_parallel(indptr, indices, data, diagonal_at, new, keep, rhs):
    out = np.empty(keep.size)
    for r in nb.prange(keep.size):
        out[r] = _reduced_entry(r, indptr, indices, data, diagonal_at, new, keep, rhs)
    return out


@nb.njit(cache=True)
def _back_substitute(indptr, indices, data, diagonal_at, new, keep, eliminated, rhs, y):
    """``x`` from ``x_R = y``: ``x_E = diag(A_EE)^-1 (b_E - A_ER x_R)``."""
    x = np.empty(new.size)
    for r in range(keep.size):
        x[keep[r]] = y[r]
    for s in range(eliminated.size):
        j = eliminated[s]
        x[j] = _eliminated_entry(j, indptr, indices, data, diagonal_at, new, y, rhs)
    return x


@nb.njit(parallel=True, cache=True)
def _back_substitute_in_parallel(indptr, indices, data, diagonal_at, new, keep, eliminated, rhs, y):
    x = np.empty(new.size)
    for r in nb.prange(keep.size):
        x[keep[r]] = y[r]
    for s in nb.prange(eliminated.size):
        j = eliminated[s]
        x[j] = _eliminated_entry(j, indptr, indices, data, diagonal_at, new, y, rhs)
    return x


@nb.njit(cache=True)
def _diagonal_positions(indptr, indices, eliminated):
    """Where each eliminated variable's diagonal entry is stored (-1: none)."""
    at = np.full(indptr.size - 1, -1, np.int64)
    for s in range(eliminated.size):
        j = eliminated[s]
        for t in range(indptr[j], indptr[j + 1]):
            if indices[t] == j:
                at[j] = t
    return at


class SchurCholesky:
    """``A = L L'`` by way of the Schur complement ``S`` on the variables left after eliminating an
    independent set (see the module docstring), for symmetric positive definite CSR matrices of
    one sparsity pattern (both triangles stored, explicit zeros count as entries, every diagonal
    entry stored). The interface of :class:`~resgraph.cholesky.Cholesky`: construction analyses
    the pattern, :meth:`factorise` factorises a matrix of it, :meth:`solve` uses the last one."""

    def __init__(self, matrix: sp.csr_matrix, max_fill: float = np.inf) -> None:
        """Raises :class:`DenseFill` as soon as the analysis finds more than ``max_fill`` entries
        of the factor of ``S`` per row of ``matrix``."""
        indptr, indices = matrix.indptr, matrix.indices
        n = matrix.shape[0]
        self._indptr, self._indices = indptr, indices
        self._new = _independent_set(indptr, indices, ELIMINATE_MAX_DEGREE)
        self._keep = np.flatnonzero(self._new >= 0)
        self._eliminated = np.flatnonzero(self._new < 0)
        self._diagonal_at = _diagonal_positions(indptr, indices, self._eliminated)
        missing = self._eliminated[self._diagonal_at[self._eliminated] < 0]
        if missing.size:
            row = int(missing[0])
            raise NotPositiveDefinite(f"the matrix is not positive definite: row {row} has no diagonal entry", row)
        m = self._keep.size
        self._parallel = n >= PARALLEL_MIN
        blocks = nb.get_num_threads() if self._parallel else 1
        # (32-bit columns and positions where they fit: less memory to fault in and to read.)
        bound = int(indptr[-1]) * (ELIMINATE_MAX_DEGREE + 1)
        index = np.empty(0, np.int32 if bound < 2**31 else np.int64)
        s_ptr, s_columns, self._term_ptr, self._position = _schur_pattern(indptr, indices, self._new, self._keep,
                                                                          blocks, index)
        self._schur = sp.csr_matrix((np.zeros(s_columns.size), s_columns, s_ptr), shape=(m, m))
        self._inner = Cholesky(self._schur, max_fill * max(n, 1) / max(m, 1))
        self._data: np.ndarray | None = None      # the values of the matrix last factorised
        self._factorised = False

    def fresh(self) -> "SchurCholesky":
        """A factorisation of this pattern with memory of its own, sharing this one's (read-only)
        order and analysis."""
        other = copy.copy(self)
        other._inner = self._inner.fresh()
        schur = self._schur
        other._schur = sp.csr_matrix((np.zeros_like(schur.data), schur.indices, schur.indptr), shape=schur.shape)
        other._data, other._factorised = None, False
        return other

    @property
    def fill(self) -> float:
        """Entries of the factor of ``S`` per row of the matrix."""
        return self._inner.fill * self._keep.size / max(self._new.size, 1)

    @property
    def flops(self) -> float:
        """Floating-point operations of a factorisation of ``S`` (:attr:`Cholesky.flops`; the
        elimination of the independent set costs next to nothing beside it)."""
        return self._inner.flops

    @property
    def footprint(self) -> int:
        """Bytes a factorisation takes at most: :attr:`Cholesky.footprint` of ``S``'s, plus
        ``S`` and the values of the matrix kept for the solves."""
        return self._inner.footprint + 8 * (self._schur.nnz + self._indices.size)

    def same_pattern(self, matrix: sp.csr_matrix) -> bool:
        return (matrix.shape[0] == self._new.size and np.array_equal(matrix.indptr, self._indptr)
                and np.array_equal(matrix.indices, self._indices))

    def _arrays(self, data: np.ndarray) -> tuple:
        return self._indptr, self._indices, data, self._diagonal_at, self._new

    def factorise(self, matrix: sp.csr_matrix) -> None:
        """Factorise ``matrix``, which has the analysed pattern; raises
        :class:`NotPositiveDefinite` naming a row of ``matrix`` whose pivot is not positive."""
        self._factorised = False
        data = np.ascontiguousarray(matrix.data, np.float64)
        schur = self._schur
        values = _schur_values_in_parallel if self._parallel else _schur_values
        bad = values(*self._arrays(data), self._keep, schur.indptr, self._term_ptr, self._position, schur.data)
        if bad >= 0:
            raise NotPositiveDefinite(f"the matrix is not positive definite: pivot of row {bad}", int(bad))
        try:
            self._inner.factorise(schur)
        except NotPositiveDefinite as error:
            row = int(self._keep[error.row])
            raise NotPositiveDefinite(f"the matrix is not positive definite: pivot of row {row}", row) from None
        # (Kept for the solves, in one buffer: a fresh copy each time would be faulted in anew.)
        if self._data is None:
            self._data = np.empty_like(data)
        np.copyto(self._data, data)
        self._factorised = True

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``x`` with ``A x = rhs`` for the matrix last factorised."""
        if not self._factorised:
            raise ResgraphError("no matrix has been factorised")
        rhs = np.ascontiguousarray(rhs, np.float64)
        arrays = self._arrays(self._data)
        reduce, back = ((_reduce_in_parallel, _back_substitute_in_parallel) if self._parallel
                        else (_reduce, _back_substitute))
        y = self._inner.solve(reduce(*arrays, self._keep, rhs))
        return back(*arrays, self._keep, self._eliminated, rhs, y)
