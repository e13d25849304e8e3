"""How resgraph tells meshes from expanders: the depth of a breadth-first search."""
import networkx as nx
import numpy as np
import scipy.sparse as sp

from circuits import diode_lattice, random_network
from resgraph.forest import bfs_depth, bfs_depths


def csr_of(graph: nx.Graph) -> sp.csr_matrix:
    return sp.csr_matrix(nx.to_scipy_sparse_array(graph, nodelist=range(graph.number_of_nodes())))


def test_depth_matches_networkx_and_stops_beyond():
    path = csr_of(nx.path_graph(100))
    assert bfs_depth(path.indptr, path.indices, 0) == 99
    assert bfs_depth(path.indptr, path.indices, 0, beyond=10) == 11       # stopped at the 11th hop
    assert bfs_depth(path.indptr, path.indices, 0, beyond=99) == 99
    graph = nx.gnm_random_graph(300, 700, seed=3)
    matrix = csr_of(graph)
    depths = bfs_depths(matrix.indptr, matrix.indices, np.array([5]))
    reference = nx.single_source_shortest_path_length(graph, 5)
    assert all(depths[k] == reference.get(k, -1) for k in range(300))
    assert bfs_depth(matrix.indptr, matrix.indices, 5) == max(reference.values())


def test_lattices_are_meshes_and_random_graphs_are_not():
    rng = np.random.default_rng(0)
    assert diode_lattice(rng, 40).compile().mesh_like
    assert not random_network(rng, 1600, extra_resistors=1600).compile().mesh_like
