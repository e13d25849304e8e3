"""The plain-aggregation multigrid of expander-like systems: its coarse levels are the Galerkin
contractions of the finer ones, its V-cycle is a symmetric positive definite preconditioner (also
when coarsening stalls), and the polish's solver switches to it where Jacobi-CG is slow, and only
there."""
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

import resgraph.aggregation as aggregation
from resgraph.aggregation import AggregationHierarchy
from resgraph.linalg import SPDSolver


def random_graph_matrix(n: int, rng: np.random.Generator, decades: float, anchors: int = 20,
                        coupling: float = 1.0) -> sp.csr_matrix:
    """Weighted Laplacian of a random graph of mean degree about 4 (a random tree plus n random
    edges) with conductances log-uniform over ``decades`` decades (or uniform in 0.5-2 S), scaled
    by ``coupling``, plus 1 S to ground at ``anchors`` random nodes."""
    a = np.r_[np.arange(1, n), rng.integers(0, n, n)]
    b = np.r_[rng.integers(0, np.arange(1, n)), rng.integers(0, n, n)]
    keep = a != b
    a, b = a[keep], b[keep]
    g = 10.0 ** rng.uniform(-decades / 2, decades / 2, a.size) if decades else rng.uniform(0.5, 2.0, a.size)
    g *= coupling
    off = sp.csr_matrix((np.r_[g, g], (np.r_[a, b], np.r_[b, a])), shape=(n, n))
    diagonal = np.asarray(off.sum(axis=1)).ravel()
    diagonal[rng.choice(n, anchors, replace=False)] += 1.0
    matrix = (sp.diags(diagonal) - off).tocsr()
    matrix.sort_indices()
    return matrix


def cg_iterations(matrix, rhs, preconditioner, rtol=1e-10):
    count = [0]
    y, info = sla.cg(matrix, rhs, rtol=rtol, M=preconditioner, maxiter=20_000,
                     callback=lambda _: count.__setitem__(0, count[0] + 1))
    assert info == 0
    assert np.linalg.norm(matrix @ y - rhs) <= 1.01 * rtol * np.linalg.norm(rhs)
    return count[0]


def test_coarse_levels_are_the_galerkin_contractions():
    matrix = random_graph_matrix(6_000, np.random.default_rng(0), decades=4.0)
    hierarchy = AggregationHierarchy(matrix)
    assert len(hierarchy.levels) >= 2 and hierarchy.sizes[-1] <= aggregation.COARSEST
    fine = matrix
    for level, coarse_size in zip(hierarchy.levels, hierarchy.sizes[1:]):
        assert level.coarse_size == coarse_size
        assert np.array_equal(level.indptr, fine.indptr) and np.array_equal(level.data, fine.data)
        rows = np.flatnonzero(level.group >= 0)
        prolongation = sp.csr_matrix((np.ones(rows.size), (rows, level.group[rows])), shape=(fine.shape[0], coarse_size))
        assert np.array_equal(np.unique(level.group[rows]), np.arange(coarse_size))   # no empty aggregate
        galerkin = (prolongation.T @ fine @ prolongation).tocsr()
        galerkin.sort_indices()
        if level is hierarchy.levels[-1]:
            break
        following = hierarchy.levels[hierarchy.levels.index(level) + 1]
        coarse = sp.csr_matrix((following.data, following.indices, following.indptr), shape=galerkin.shape)
        assert np.allclose(coarse.toarray(), galerkin.toarray(), rtol=0, atol=1e-12 * np.abs(galerkin.data).max())
        fine = coarse


def test_v_cycle_is_symmetric_positive_definite():
    rng = np.random.default_rng(1)
    matrix = random_graph_matrix(3_000, rng, decades=4.0)
    hierarchy = AggregationHierarchy(matrix)
    u, v = rng.normal(size=(2, matrix.shape[0]))
    assert np.isclose(u @ hierarchy(v), v @ hierarchy(u), rtol=1e-10)
    assert all(w @ hierarchy(w) > 0 for w in rng.normal(size=(5, matrix.shape[0])))


def test_v_cycle_cuts_cg_iterations_where_conductances_spread():
    """Four decades of conductances: Jacobi-CG needs hundreds of iterations, the V-cycle tens."""
    rng = np.random.default_rng(2)
    matrix = random_graph_matrix(20_000, rng, decades=4.0)
    rhs = rng.normal(size=matrix.shape[0])
    jacobi = cg_iterations(matrix, rhs, sp.diags(1.0 / matrix.diagonal()))
    cycle = cg_iterations(matrix, rhs, sla.LinearOperator(matrix.shape, matvec=AggregationHierarchy(matrix)))
    assert jacobi > 200 and cycle * 5 < jacobi


def test_stalled_coarsening_smooths_its_last_level(monkeypatch):
    """With no strong couplings (a heavily anchored graph) nothing aggregates: the hierarchy is
    one smoothed level, still an SPD preconditioner under which CG converges."""
    rng = np.random.default_rng(3)
    matrix = random_graph_matrix(2_000, rng, decades=0.0, anchors=2_000, coupling=0.01)
    hierarchy = AggregationHierarchy(matrix)
    assert hierarchy.levels == [] and hierarchy.sizes == [2_000] and hierarchy._factor is None
    u, v = rng.normal(size=(2, 2_000))
    assert np.isclose(u @ hierarchy(v), v @ hierarchy(u), rtol=1e-10) and u @ hierarchy(u) > 0
    cg_iterations(matrix, rng.normal(size=2_000), sla.LinearOperator(matrix.shape, matvec=hierarchy))


def test_expander_solver_switches_to_aggregation_only_where_jacobi_is_slow():
    """The polish's solver on expander-like systems anchored at a tenth of their nodes (as by
    conducting clamps): uniform conductances stay with Jacobi-CG, four decades get the
    aggregation hierarchy (and keep it for the next system); every answer meets its tolerance."""
    rng = np.random.default_rng(4)
    for decades, switches in ((0.0, False), (4.0, True)):
        matrix = random_graph_matrix(20_000, rng, decades, anchors=2_000)
        solver = SPDSolver(mesh_like=False)
        n = matrix.shape[0]
        guess = np.zeros(n)
        for rtol in (1e-6, 1e-11):
            rhs = rng.normal(size=n)
            y = solver.solve(matrix, rhs, guess, rtol=rtol)
            scale = max(np.linalg.norm(rhs), np.linalg.norm(matrix.diagonal() * guess)) / np.sqrt(n)
            assert np.linalg.norm(matrix @ y - rhs) <= rtol * scale
            assert solver._aggregate == switches
            guess = y


def test_jacobi_out_of_budget_hands_its_iterate_to_the_multigrid(monkeypatch):
    """With the probe's forecast disabled, Jacobi-CG runs until its budget (the hierarchy's
    forecast cost) is spent, then the hierarchy goes on from its iterate to the tolerance."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "FORECAST_MARGIN", 0.0)
    rng = np.random.default_rng(5)
    matrix = random_graph_matrix(20_000, rng, 4.0, anchors=2_000)
    handed = []

    class Recorded(linalg._Handover):
        def __init__(self, x):
            super().__init__(x)
            handed.append(self.x)
    monkeypatch.setattr(linalg, "_Handover", Recorded)
    solver = SPDSolver(mesh_like=False)
    rhs = rng.normal(size=matrix.shape[0])
    y = solver.solve(matrix, rhs, np.zeros(matrix.shape[0]), rtol=1e-11)
    assert solver._aggregate and len(handed) == 1
    assert np.linalg.norm(matrix @ handed[0] - rhs) < np.linalg.norm(rhs)     # Jacobi's progress, kept
    assert np.linalg.norm(matrix @ y - rhs) <= 1e-11 * np.linalg.norm(rhs) / np.sqrt(rhs.size)


def test_random_circuit_with_spread_conductances_is_solved_through_the_multigrid(monkeypatch):
    """End to end: a 1e4-node random circuit with conductances over four decades and 681 diodes
    between free nodes (benchmarks/stress.py, seed 12) polishes with aggregation hierarchies and
    passes the independent KCL check."""
    import os
    import sys

    import resgraph as rg
    import resgraph.linalg as linalg
    from circuits import check_kirchhoff

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
    from stress import stress_circuit

    built = []

    class Counted(AggregationHierarchy):
        def __init__(self, matrix):
            super().__init__(matrix)
            built.append(self.sizes)
    monkeypatch.setattr(linalg, "AggregationHierarchy", Counted)
    net, description = stress_circuit(12, 10_000)
    assert description.startswith("random") and "0.01-100 S" in description
    solution = rg.solve(net, tol=1e-9)
    assert solution.converged and built
    check_kirchhoff(net, solution, rtol=1e-8)
