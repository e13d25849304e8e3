"""Support-graph preconditioning (resgraph/support.py): the support keeps a maximum spanning
forest and the strong couplings, lies below the matrix (``A - M`` positive semidefinite), and
makes CG converge in few iterations where conductances span many decades."""
import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from resgraph.aggregation import AggregationHierarchy
from resgraph.support import STRENGTHS, SupportPreconditioner, SupportUnavailable, support_matrix
from test_linalg import clamp_rows, lattice_matrix, random_graph_matrix


def couplings(matrix: sp.csr_matrix) -> dict[tuple[int, int], float]:
    upper = sp.triu(matrix, 1).tocoo()
    return {(int(i), int(j)): -float(v) for i, j, v in zip(upper.row, upper.col, upper.data) if v < 0}


@pytest.mark.parametrize("strength", STRENGTHS + (np.inf,))
def test_the_support_keeps_a_maximum_spanning_forest_and_the_strong_couplings(strength):
    rng = np.random.default_rng(3)
    matrix = clamp_rows(random_graph_matrix(300, rng, decades=12.0), rng.choice(300, 20, replace=False))
    support = support_matrix(matrix, strength)
    assert support.has_sorted_indices and abs(support - support.T).max() == 0
    full, kept = couplings(matrix), couplings(support)
    assert set(kept) <= set(full) and all(kept[e] == full[e] for e in kept)   # kept exactly
    diagonal = matrix.diagonal()
    strong = {e for e, g in full.items() if g >= strength * min(diagonal[e[0]], diagonal[e[1]])}
    graph = nx.Graph()
    graph.add_nodes_from(range(300))
    graph.add_weighted_edges_from((i, j, g) for (i, j), g in full.items())
    forest = nx.maximum_spanning_tree(graph)
    weight = sum(g for _, _, g in forest.edges(data="weight"))
    # The kept couplings other than the strong ones form a forest as heavy as a maximum one,
    # spanning the same parts (with 12 decades of random conductances, no two weigh the same).
    rest = nx.Graph()
    rest.add_nodes_from(range(300))
    rest.add_weighted_edges_from((i, j, g) for (i, j), g in kept.items())
    assert nx.number_connected_components(rest) == nx.number_connected_components(graph)
    tree_edges = {tuple(sorted(e)) for e in forest.edges()}
    assert tree_edges <= set(kept) and set(kept) == tree_edges | strong
    assert sum(kept[e] for e in tree_edges) == pytest.approx(weight, rel=1e-12)
    # The dropped conductances left the diagonal too: A - M is a Laplacian, so M <= A.
    difference = (matrix - support).toarray()
    assert np.allclose(difference.sum(axis=1), 0.0, atol=1e-9 * np.abs(difference).max())
    assert np.linalg.eigvalsh(difference).min() >= -1e-9 * np.abs(difference).max()


def cg_iterations(matrix, rhs, preconditioner, maxiter=400):
    count = [0]
    n = rhs.size
    y, _ = sla.cg(matrix, rhs, rtol=1e-10, maxiter=maxiter, callback=lambda _: count.__setitem__(0, count[0] + 1),
                  M=sla.LinearOperator((n, n), matvec=preconditioner, dtype=np.float64))
    return count[0], np.linalg.norm(matrix @ y - rhs) / np.linalg.norm(rhs)


@pytest.mark.parametrize("kind", ["random", "lattice"])
def test_cg_with_the_support_converges_where_conductances_span_12_decades(kind):
    """Where the aggregation multigrid leaves CG short after 400 iterations, the support graph
    gets it to 1e-10 in under 100."""
    rng = np.random.default_rng(5)
    matrix = (random_graph_matrix(3000, rng, decades=12.0) if kind == "random"
              else lattice_matrix(55, rng, decades=12.0, anchors=4))
    rhs = matrix @ rng.normal(size=matrix.shape[0])
    iterations, residual = cg_iterations(matrix, rhs, SupportPreconditioner(matrix, max_fill=64))
    assert iterations < 100 and residual <= 1e-10
    iterations, residual = cg_iterations(matrix, rhs, AggregationHierarchy(matrix))
    assert iterations == 400 and residual > 1e-10


def test_a_support_that_would_fill_too_much_gives_way_to_the_forest():
    rng = np.random.default_rng(6)
    matrix = random_graph_matrix(2000, rng, decades=4.0)
    assert SupportPreconditioner(matrix, max_fill=64).strength < np.inf
    forest = SupportPreconditioner(matrix, max_fill=1.0)
    assert forest.strength == np.inf
    rhs = rng.normal(size=2000)
    iterations, residual = cg_iterations(matrix, rhs, forest, maxiter=2000)
    assert residual <= 1e-10


def test_a_singular_matrix_has_no_support():
    """Two nodes joined by 1 S and held by nothing: the support is the matrix, singular."""
    laplacian = sp.csr_matrix(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    with pytest.raises(SupportUnavailable, match="not positive definite"):
        SupportPreconditioner(laplacian, max_fill=64)
