"""Cholesky by way of the Schur complement after eliminating an independent set of low-degree
variables: exact solves on every shape of graph, the set it eliminates, refactorisation on the
same analysis, clear failures."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cholesky import assert_factor_solves as assert_solves
from test_cholesky import lattice, random_graph

import resgraph.schur as schur
from resgraph.cholesky import Cholesky, DenseFill, NotPositiveDefinite
from resgraph.csr import clamp_rows
from resgraph.errors import ResgraphError
from resgraph.schur import ELIMINATE_MAX_DEGREE, SchurCholesky


def assert_eliminates_an_independent_set(factor: SchurCholesky, matrix: sp.csr_matrix) -> np.ndarray:
    """The eliminated variables: no two neighbours, none of more than ``ELIMINATE_MAX_DEGREE``
    neighbours, and no other variable could join them (greedy: a maximal such set)."""
    eliminated = factor._new < 0
    off = matrix.copy()
    off.setdiag(0)
    off.eliminate_zeros()
    pattern = (abs(off) > 0).astype(np.int64)
    degree = np.diff(pattern.indptr)
    assert np.all(degree[eliminated] <= ELIMINATE_MAX_DEGREE)
    assert not np.any(pattern @ eliminated.astype(np.int64) * eliminated)         # independent
    blocked = (pattern @ eliminated.astype(np.int64) > 0) | (degree > ELIMINATE_MAX_DEGREE) | eliminated
    assert np.all(blocked)                                                          # maximal
    return eliminated


@pytest.mark.parametrize("side", [1, 2, 5, 17, 40])
def test_lattices_are_solved_exactly_with_one_colour_eliminated(side):
    rng = np.random.default_rng(side)
    matrix = lattice(side, rng)
    factor = SchurCholesky(matrix)
    eliminated = assert_eliminates_an_independent_set(factor, matrix)
    # Numbered row by row, a lattice's greedy set is one colour of its checkerboard.
    rows, columns = np.divmod(np.arange(side * side), side)
    assert np.array_equal(eliminated, (rows + columns) % 2 == 0)
    assert_solves(factor, matrix, rng)
    if side >= 17:
        assert factor.fill < Cholesky(matrix).fill


@pytest.mark.parametrize("n, edges, components", [(300, 600, 1), (300, 200, 1), (400, 900, 7), (97, 3000, 1)])
def test_random_and_disconnected_graphs_are_solved_exactly(n, edges, components):
    """Expanders (nodes of more than ``ELIMINATE_MAX_DEGREE`` neighbours stay), forests of
    small trees (almost everything eliminated), several components, a nearly complete graph
    (nothing eliminated)."""
    matrix = random_graph(n, edges, np.random.default_rng(n + edges), components)
    factor = SchurCholesky(matrix)
    assert_eliminates_an_independent_set(factor, matrix)
    assert_solves(factor, matrix, np.random.default_rng(1))


def test_diagonal_dense_and_empty_matrices():
    rng = np.random.default_rng(4)
    diagonal = sp.csr_matrix(np.diag(rng.uniform(1, 2, 50)))
    factor = SchurCholesky(diagonal)
    assert np.all(factor._new < 0)                       # every variable eliminated, S empty
    assert_solves(factor, diagonal, rng)
    dense = rng.normal(size=(30, 30))
    dense = sp.csr_matrix(dense @ dense.T + 30 * np.eye(30))
    factor = SchurCholesky(dense)
    assert np.all(factor._new >= 0)                      # 29 neighbours each: none eliminated
    assert_solves(factor, dense, rng)
    empty = sp.csr_matrix((0, 0))
    factor = SchurCholesky(empty)
    factor.factorise(empty)
    assert factor.solve(np.zeros(0)).shape == (0,)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 120), st.integers(0, 400), st.integers(0, 2**32 - 1), st.booleans())
def test_any_graph_is_solved_on_one_thread_or_several(n, edges, seed, threads):
    rng = np.random.default_rng(seed)
    matrix = random_graph(n, edges, rng, components=1 + seed % 3 if n >= 3 else 1)
    saved = schur.PARALLEL_MIN
    schur.PARALLEL_MIN = 1 if threads else saved
    try:
        factor = SchurCholesky(matrix)
    finally:
        schur.PARALLEL_MIN = saved
    assert factor._parallel == (threads or n >= saved)
    assert_eliminates_an_independent_set(factor, matrix)
    assert_solves(factor, matrix, rng)


def test_the_same_pattern_is_refactorised_on_one_analysis(monkeypatch):
    """Clamped variables (identity rows with explicit zeros, as the polish makes them) among the
    eliminated ones and the others: each system solved exactly, and only the fronts that the
    changed rows of ``S`` reach are factorised again (``S``'s unchanged rows are computed bit
    for bit as before)."""
    import resgraph.cholesky as cholesky
    reached = []
    real = cholesky._reached
    monkeypatch.setattr(cholesky, "_reached", lambda *args: reached.append(real(*args)) or reached[-1])
    rng = np.random.default_rng(7)
    matrix = lattice(40, rng)
    analysed = SchurCholesky(matrix)
    factor = analysed.fresh()
    eliminated = factor._new < 0
    assert_solves(factor, matrix, rng)
    for fixed in (np.flatnonzero(eliminated)[:5], np.flatnonzero(~eliminated)[:5], np.array([0, 1, 2, 41, 800])):
        unknown = np.ones(matrix.shape[0], bool)
        unknown[fixed] = False
        clamped = sp.csr_matrix((clamp_rows(matrix.indptr, matrix.indices, matrix.data, unknown), matrix.indices,
                                 matrix.indptr), shape=matrix.shape)
        assert analysed.same_pattern(clamped)
        assert_solves(factor, clamped, rng)
    supernodes = factor._inner._first.size - 1
    assert len(reached) == 3 and all(0 < r < supernodes // 4 for r in reached)
    # The analysis is shared, the values are not.
    other = analysed.fresh()
    other.factorise(matrix)
    rhs = rng.normal(size=matrix.shape[0])
    assert not np.array_equal(other.solve(rhs), factor.solve(rhs))
    assert not analysed.same_pattern(lattice(41, rng))


def test_analysis_stops_at_the_fill_allowed():
    """``max_fill`` counts the factor's entries per row of the whole matrix."""
    matrix = random_graph(3_000, 9_000, np.random.default_rng(9))
    assert SchurCholesky(matrix).fill > 20
    with pytest.raises(DenseFill, match="more than"):
        SchurCholesky(matrix, max_fill=20)
    small = lattice(30, np.random.default_rng(9))
    fill = SchurCholesky(small).fill
    assert SchurCholesky(small, max_fill=fill * 1.01).fill == fill


def test_a_pivot_that_is_not_positive_is_named_by_its_row():
    """Among the eliminated variables, among those left (reported in the matrix's numbering, not
    ``S``'s), and a missing diagonal entry."""
    rng = np.random.default_rng(12)
    matrix = lattice(30, rng)
    factor = SchurCholesky(matrix)
    for row in (417, 418):              # one eliminated, one not (a checkerboard)
        broken = matrix.tolil()
        broken[row, row] = -1.0
        with pytest.raises(NotPositiveDefinite, match=f"pivot of row {row}$") as caught:
            factor.factorise(broken.tocsr())
        assert caught.value.row == row
    assert (factor._new[417] < 0) != (factor._new[418] < 0)
    with pytest.raises(ResgraphError, match="no matrix has been factorised"):
        factor.solve(np.zeros(matrix.shape[0]))
    no_diagonal = sp.csr_matrix(np.array([[0.0, -1.0], [-1.0, 2.0]]))
    no_diagonal.eliminate_zeros()
    with pytest.raises(NotPositiveDefinite, match="row 0 has no diagonal entry"):
        SchurCholesky(no_diagonal)
