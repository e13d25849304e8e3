"""The sparse Cholesky factorisation of mesh systems (nested dissection, multifrontal): exact
solves on every shape of graph, refactorisation on the same analysis, clear failures."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from hypothesis import given, settings
from hypothesis import strategies as st

from resgraph.cholesky import (SMALL_FRONT, Cholesky, DenseFill, NotPositiveDefinite, _analyse, _dissect,
                               _factor_small_front)
from resgraph.csr import clamp_rows
from resgraph.errors import ResgraphError


def laplacian_plus(n: int, a: np.ndarray, b: np.ndarray, g: np.ndarray, extra: np.ndarray) -> sp.csr_matrix:
    """Weighted Laplacian of the edges ``(a, b, g)`` plus the diagonal ``extra``, rows sorted."""
    off = sp.csr_matrix((np.r_[g, g], (np.r_[a, b], np.r_[b, a])), shape=(n, n))
    matrix = (sp.diags(np.asarray(off.sum(axis=1)).ravel() + extra) - off).tocsr()
    matrix.sort_indices()
    return matrix


def lattice(side: int, rng: np.random.Generator) -> sp.csr_matrix:
    idx = np.arange(side * side).reshape(side, side)
    a = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    b = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    extra = np.zeros(side * side)
    extra[rng.choice(side * side, min(3, side * side), replace=False)] = 1.0     # held at three points
    return laplacian_plus(side * side, a, b, rng.uniform(0.5, 2.0, a.size), extra)


def random_graph(n: int, edges: int, rng: np.random.Generator, components: int = 1) -> sp.csr_matrix:
    """Random edges within ``components`` blocks of consecutive nodes, each held at one node
    (1 S) and every node weakly (1 mS: random edges may leave pieces unconnected)."""
    block = rng.integers(0, components, edges)
    size = n // components
    a = block * size + rng.integers(0, size, edges)
    b = block * size + rng.integers(0, size, edges)
    keep = a != b
    extra = np.full(n, 1e-3)
    extra[np.arange(components) * size] = 1.0
    return laplacian_plus(n, a[keep], b[keep], rng.uniform(0.1, 10.0, int(keep.sum())), extra)


def assert_factor_solves(factor, matrix: sp.csr_matrix, rng: np.random.Generator) -> None:
    """``factor`` (analysed for ``matrix``'s pattern) factorises ``matrix`` and solves with it as
    SciPy's direct solver does."""
    factor.factorise(matrix)
    rhs = rng.normal(size=matrix.shape[0])
    x = factor.solve(rhs)
    reference = sla.spsolve(matrix.tocsc(), rhs)
    assert np.abs(matrix @ x - rhs).max() <= 1e-11 * np.abs(matrix).max() * max(np.abs(x).max(), 1.0)
    np.testing.assert_allclose(x, reference, rtol=1e-8, atol=1e-10 * np.abs(reference).max())


def assert_solves(matrix: sp.csr_matrix, rng: np.random.Generator) -> Cholesky:
    factor = Cholesky(matrix)
    assert_factor_solves(factor, matrix, rng)
    # The dissection's running count of the factor's entries never passes the analysis' own:
    # a factor exactly at the limit allowed is accepted.
    n = max(matrix.shape[0], 1)
    assert Cholesky(matrix, max_fill=(factor.fill * n + 0.5) / n).fill == factor.fill
    return factor


@pytest.mark.parametrize("side", [1, 2, 5, 17, 40])
def test_lattices_are_solved_exactly(side):
    assert_solves(lattice(side, np.random.default_rng(side)), np.random.default_rng(0))


@pytest.mark.parametrize("n, edges, components", [(300, 600, 1), (300, 200, 1), (400, 900, 7), (97, 3000, 1)])
def test_random_and_disconnected_graphs_are_solved_exactly(n, edges, components):
    """Expanders, forests of small trees, several components and a nearly complete graph (whose
    breadth-first levels are too few to cut)."""
    assert_solves(random_graph(n, edges, np.random.default_rng(n + edges), components), np.random.default_rng(1))


def test_dense_matrix_and_empty_graph():
    rng = np.random.default_rng(4)
    dense = rng.normal(size=(60, 60))
    assert_solves(sp.csr_matrix(dense @ dense.T + 60 * np.eye(60)), rng)
    assert_solves(sp.csr_matrix(np.diag(rng.uniform(1, 2, 50))), rng)    # no edges at all
    empty = sp.csr_matrix((0, 0))
    factor = Cholesky(empty)
    factor.factorise(empty)
    assert factor.solve(np.zeros(0)).shape == (0,)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 120), st.integers(0, 400), st.integers(0, 2**32 - 1))
def test_any_graph_is_ordered_and_solved(n, edges, seed):
    rng = np.random.default_rng(seed)
    matrix = random_graph(n, edges, rng, components=1 + seed % 3 if n >= 3 else 1)
    perm, first, parent, complete = _dissect(matrix.indptr, matrix.indices, 2**62, 1 + seed % 2)
    assert complete
    assert np.array_equal(np.sort(perm), np.arange(n))              # an order of every row
    assert first[0] == 0 and first[-1] == n and np.all(np.diff(first) > 0)
    assert np.all((parent == -1) | (parent > np.arange(parent.size)))   # children first
    assert_solves(matrix, rng)


@pytest.mark.parametrize("shape", ["lattice", "random", "components"])
def test_fronts_factorised_on_several_threads(monkeypatch, shape):
    """Subtrees of the elimination tree dealt to threads, the supernodes above them after, in the
    factorisation and in both substitutions: the same answer as one thread (every graph here goes
    parallel), the supernodes above working in the threads' work areas."""
    import resgraph.cholesky as cholesky
    monkeypatch.setattr(cholesky, "PARALLEL_MIN", 1)
    rng = np.random.default_rng(7)
    matrix = {"lattice": lambda: lattice(45, rng), "random": lambda: random_graph(2_000, 4_000, rng),
              "components": lambda: random_graph(2_000, 3_000, rng, components=5)}[shape]()
    factor = assert_solves(matrix, rng)
    order = factor._order
    assert np.array_equal(np.sort(order), np.arange(factor._first.size - 1))    # each front once
    assert factor._group_ptr.size - 2 == cholesky.nb.get_num_threads()
    if cholesky.nb.get_num_threads() > 1 and shape != "components":
        # The threads' forward updates of the supernodes above were collected apart (separate
        # components leave none above).
        assert factor._above.size > 0 and np.all(factor._slot[factor._above] >= 0)
    # The supernodes above, done once the threads are, take their work area in the threads'.
    groups = factor._group_ptr.size - 2
    above = order[factor._group_ptr[groups]:]
    widest = np.max(np.diff(factor._first)[above] + np.diff(factor._rows_ptr)[above], initial=0)
    assert factor._work_ptr[-1] == max(factor._work_ptr[groups], widest**2)


@pytest.mark.parametrize("threads", [2, 3])
def test_dissection_on_several_threads_gives_the_one_thread_order(threads):
    """The parts left by the first cuts, dissected on threads, numbered as one thread would."""
    rng = np.random.default_rng(11)
    for matrix in (lattice(60, rng), random_graph(3_000, 6_000, rng), random_graph(3_000, 2_500, rng, components=5),
                   random_graph(400, 300, rng), lattice(3, rng)):
        one = _dissect(matrix.indptr, matrix.indices, 2**62, 1)
        several = _dissect(matrix.indptr, matrix.indices, 2**62, threads)
        for a, b in zip(one, several):
            assert np.array_equal(a, b)
        # A limit below the supernodes' own blocks is refused on threads too.
        limit = int(np.diff(one[1]).astype(float) @ np.diff(one[1])) // 2
        assert not _dissect(matrix.indptr, matrix.indices, limit, threads)[3]


def test_refactorisation_on_the_same_pattern():
    """Clamped rows become identity rows with explicit zeros (as in the polish): the analysis of
    the first matrix serves the second."""
    rng = np.random.default_rng(5)
    first = lattice(30, rng)
    factor = Cholesky(first)
    assert factor.same_pattern(first)
    factor.factorise(first)
    second = first.copy()
    rows = np.repeat(np.arange(first.shape[0]), np.diff(first.indptr))
    fixed = np.zeros(first.shape[0], bool)
    fixed[rng.choice(first.shape[0], 100, replace=False)] = True
    second.data = np.where(fixed[rows] | fixed[second.indices], 0.0, second.data)
    second.data[(rows == second.indices) & fixed[rows]] = 1.0
    assert factor.same_pattern(second)
    factor.factorise(second)
    rhs = rng.normal(size=first.shape[0])
    assert np.abs(second @ factor.solve(rhs) - rhs).max() <= 1e-11 * np.abs(rhs).max() * 100


def clamped(matrix: sp.csr_matrix, fixed: np.ndarray) -> sp.csr_matrix:
    """``matrix`` with the rows and columns of ``fixed`` made identity rows, the pattern kept (as
    the polish clamps them)."""
    return sp.csr_matrix((clamp_rows(matrix.indptr, matrix.indices, matrix.data, ~fixed), matrix.indices,
                          matrix.indptr), shape=matrix.shape)


@pytest.mark.parametrize("parallel_min", [1, 10**9])
@pytest.mark.parametrize("keep", ["early", "late", "never"])
def test_refactorising_only_the_fronts_that_changed(monkeypatch, parallel_min, keep):
    """A matrix differing from the last one factorised in a few rows is refactorised in the
    fronts those rows reach, with the kept update matrices of the others: the factor is the one
    a fresh factorisation gives (its solves agree bit for bit), on one thread and on several,
    over a sequence of changes (rows clamped and released, none at all). Update matrices kept
    from the first factorisation, from the second (large ones), or not at all (every front
    factorised again). A factorisation that fails leaves the next one complete. The buffers in
    use never exceed :attr:`Cholesky.footprint`."""
    import resgraph.cholesky as cholesky
    monkeypatch.setattr(cholesky, "PARALLEL_MIN", parallel_min)
    monkeypatch.setattr(cholesky, "KEPT_UPDATES_EARLY", 2**25 if keep == "early" else 0)
    monkeypatch.setattr(cholesky, "KEPT_UPDATES_MAX", 0 if keep == "never" else 2**28)
    rng = np.random.default_rng(13)
    matrix = lattice(50, rng)
    factor = Cholesky(matrix)
    fixed = np.zeros(matrix.shape[0], bool)
    reached = []
    real = cholesky._reached
    monkeypatch.setattr(cholesky, "_reached", lambda *args: reached.append(real(*args)) or reached[-1])
    for change in (0, 300, 10, 0, -5, 40):
        if change > 0:
            fixed[rng.choice(np.flatnonzero(~fixed), change, replace=False)] = True
        elif change < 0:
            fixed[rng.choice(np.flatnonzero(fixed), -change, replace=False)] = False
        system = clamped(matrix, fixed)
        factor.factorise(system)
        # Its buffers never take more than the footprint told before any was taken.
        held = [b.size for b in (factor._values, factor._work, factor._kept, factor._stack) if b is not None]
        assert 8 * sum(held) <= factor.footprint
        fresh = factor.fresh()
        fresh.factorise(system)
        rhs = rng.normal(size=matrix.shape[0])
        x = factor.solve(rhs)
        assert np.array_equal(x, fresh.solve(rhs))
        assert np.abs(system @ x - rhs).max() <= 1e-11 * np.abs(rhs).max() * 100
    # Fronts factorised again after the first factorisation: none after no change, a few after
    # 10 or 5 rows changed.
    supernodes = factor._first.size - 1
    if keep == "late":
        reached = [None] + reached            # (the second factorisation is complete)
    if keep == "never":
        assert reached == []
    else:
        assert reached[2] == 0 and 0 < min(reached[1], reached[3]) and max(reached[1], reached[3]) < supernodes // 3
        assert reached[4] < supernodes
    broken = clamped(matrix, fixed).tolil()
    broken[7, 7] = -1.0
    with pytest.raises(NotPositiveDefinite, match="pivot of row 7"):
        factor.factorise(broken.tocsr())
    factor.factorise(matrix)
    fresh = factor.fresh()
    fresh.factorise(matrix)
    rhs = rng.normal(size=matrix.shape[0])
    assert np.array_equal(factor.solve(rhs), fresh.solve(rhs))


def test_memory_of_a_released_factorisation_serves_the_next(monkeypatch):
    """Its buffers go back to a pool once it is gone and are taken by the next factorisation of
    that size, which still solves exactly; beyond ``SPARE_MAX`` entries none are kept."""
    import gc

    import resgraph.cholesky as cholesky
    rng = np.random.default_rng(14)
    matrix = lattice(30, rng)
    analysed = Cholesky(matrix)
    first = analysed.fresh()
    first.factorise(matrix)
    address = first._values.__array_interface__["data"][0]
    del first
    gc.collect()

    def spare_addresses():
        return {b.__array_interface__["data"][0] for b in cholesky._spare.values()}

    assert address in spare_addresses()
    second = analysed.fresh()
    second.factorise(matrix)
    assert second._values.__array_interface__["data"][0] == address and address not in spare_addresses()
    rhs = rng.normal(size=matrix.shape[0])
    assert np.abs(matrix @ second.solve(rhs) - rhs).max() <= 1e-11 * np.abs(rhs).max() * 100
    monkeypatch.setattr(cholesky, "SPARE_MAX", 10)
    cholesky._spare.clear()
    del second
    gc.collect()
    assert cholesky._spare == {}


def test_fill_of_a_lattice_stays_near_nested_dissection():
    """A 100 x 100 lattice: a nested-dissection order with straight separators fills about
    31/4 log2(100) ~ 51 entries per row (every separator dense); level-set separators and dense
    leaves must not do worse (a poor order fills hundreds: the band of a row-by-row order, 100)."""
    assert Cholesky(lattice(100, np.random.default_rng(6))).fill < 45


def test_analysis_stops_at_the_fill_allowed():
    """An expander fills its factor: the order and analysis give up once past ``max_fill``
    entries per row (before any memory is taken for the values), and say so."""
    matrix = random_graph(3_000, 9_000, np.random.default_rng(9))
    assert Cholesky(matrix).fill > 100
    with pytest.raises(DenseFill, match="more than 20 entries per row"):
        Cholesky(matrix, max_fill=20)
    # The dissection counts the separators' fronts and stops before the order is done.
    assert not _dissect(matrix.indptr, matrix.indices, 20 * 3_000)[3]
    assert Cholesky(lattice(30, np.random.default_rng(9)), max_fill=64).fill < 64


def test_a_pivot_that_is_not_positive_is_named_on_several_threads(monkeypatch):
    """A small front factorised by loops on a thread (not by LAPACK) finds it too."""
    import resgraph.cholesky as cholesky
    monkeypatch.setattr(cholesky, "PARALLEL_MIN", 1)
    matrix = lattice(30, np.random.default_rng(12)).tolil()
    matrix[417, 417] = -1.0
    matrix = matrix.tocsr()
    factor = Cholesky(matrix)
    assert factor._group_ptr.size - 2 == cholesky.nb.get_num_threads()
    with pytest.raises(NotPositiveDefinite, match="pivot of row 417"):
        factor.factorise(matrix)


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_analysis_on_several_threads_gives_the_one_thread_analysis(threads):
    """Rows sorted and entries placed on threads (each its share of the supernodes), after the
    rows are gathered in one pass: the same patterns, places and offsets as on one thread; and
    an analysis that passes its limit stops the same way."""
    rng = np.random.default_rng(threads)
    for matrix in (lattice(37, rng), random_graph(500, 1500, rng, components=3), random_graph(5, 0, rng)):
        perm, first, parent, _ = _dissect(matrix.indptr, matrix.indices, 2**62)
        one = _analyse(matrix.indptr, matrix.indices, perm, first, parent, 2**62)
        several = _analyse(matrix.indptr, matrix.indices, perm, first, parent, 2**62, threads)
        assert all(np.array_equal(a, b) for a, b in zip(one, several))
        rows_ptr, rows = one[2], one[3]
        assert all(np.all(np.diff(rows[rows_ptr[s]:rows_ptr[s + 1]]) > 0) for s in range(parent.size))
        limit = one[-1][-1] // 2
        stopped = _analyse(matrix.indptr, matrix.indices, perm, first, parent, limit, threads)
        assert stopped[-1][-1] > limit


@pytest.mark.parametrize("m, width", [(1, 1), (5, 3), (9, 4), (9, 9), (13, 6), (30, 17), (SMALL_FRONT, 21)])
def test_small_fronts_by_loops_match_lapack(m, width):
    """The loops' panels of four columns, whole and partial: the factor's columns and the Schur
    complement left in the rest of the front, as a dense Cholesky gives them."""
    rng = np.random.default_rng(m * width)
    a = rng.normal(size=(m, m))
    a = a @ a.T + m * np.eye(m)
    work = a.ravel(order="F").copy()             # (symmetric: either layout)
    assert _factor_small_front(work, m, width) == 0
    front = work.reshape((m, m)).T               # front[i, j] = entry (i, j), lower triangle
    lower = np.linalg.cholesky(a[:width, :width])
    below = np.linalg.solve(lower, a[:width, width:]).T
    schur = a[width:, width:] - below @ below.T
    np.testing.assert_allclose(np.tril(front[:width, :width]), lower, rtol=1e-12, atol=1e-12 * m)
    np.testing.assert_allclose(front[width:, :width], below, rtol=1e-12, atol=1e-12 * m)
    np.testing.assert_allclose(np.tril(front[width:, width:]), np.tril(schur), rtol=1e-12, atol=1e-11 * m)
    # A pivot that is not positive is told by its column, from 1.
    bad = a.copy()
    bad[width - 1, width - 1] = -1.0
    assert _factor_small_front(bad.ravel(order="F").copy(), m, width) == width


def test_a_matrix_that_is_not_positive_definite_is_named():
    matrix = sp.csr_matrix(np.array([[2.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, -5.0]]))
    factor = Cholesky(matrix)
    with pytest.raises(NotPositiveDefinite, match="pivot of row 2"):
        factor.factorise(matrix)
    # In a front too large for the loops, LAPACK finds it.
    dense = np.random.default_rng(3).normal(size=(SMALL_FRONT + 12, SMALL_FRONT + 12))
    dense = dense @ dense.T + dense.shape[0] * np.eye(dense.shape[0])
    dense[37, 37] = -1.0
    big = sp.csr_matrix(dense)
    factor = Cholesky(big)
    assert np.diff(factor._first).max() > SMALL_FRONT          # (one dense front)
    with pytest.raises(NotPositiveDefinite, match="pivot of row 37"):
        factor.factorise(big)
    with pytest.raises(ResgraphError, match="no matrix has been factorised"):
        factor.solve(np.ones(3))
