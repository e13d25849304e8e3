"""The compilation's CSR kernels against SciPy: a symmetric matrix from edges (parallel edges
summed), renumbering it (rows short enough for insertion sort, one long enough for argsort, empty
rows) and adding a diagonal; the polish's rows of products and cluster drives."""
import numpy as np
import scipy.sparse as sp

from resgraph.csr import (INSERTION_MAX, clamp_rows, cluster_drive, contract, diagonal_minus,
                          permute_symmetric, row_products, stamp_resistors,
                          symmetric_from_edges)


def graph_edges(n: int, rng: np.random.Generator):
    """Random edges (many parallel ones) with a hub whose row is long enough for argsort."""
    a, b = rng.integers(0, n // 4, 4 * n), rng.integers(0, n // 4, 4 * n)
    hub = np.arange(1, 3 * INSERTION_MAX)                  # node 0 gets a long row
    a, b = np.r_[a, np.zeros(hub.size, int), hub], np.r_[b, hub, np.zeros(hub.size, int)]
    keep = (a != b) & (a < n - 5) & (b < n - 5)            # the last five nodes stay empty
    return a[keep], b[keep], rng.uniform(0.1, 10.0, keep.sum())


def symmetric_graph(n: int, rng: np.random.Generator) -> sp.csr_matrix:
    a, b, g = graph_edges(n, rng)
    m = sp.csr_matrix((np.r_[g, g], (np.r_[a, b], np.r_[b, a])), shape=(n, n))
    m.sum_duplicates()
    return m


def test_symmetric_from_edges_matches_scipy():
    n = 300
    a, b, g = graph_edges(n, np.random.default_rng(2))
    expected = symmetric_graph(n, np.random.default_rng(2))
    assert expected.nnz < 2 * a.size                       # parallel edges were summed
    indptr, indices, data = symmetric_from_edges(n, a, b, g)
    assert np.array_equal(indptr, expected.indptr)
    assert np.array_equal(indices, expected.indices)
    np.testing.assert_allclose(data, expected.data, rtol=1e-14)   # (summation order may differ)
    empty = symmetric_from_edges(4, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    assert np.array_equal(empty[0], np.zeros(5)) and empty[1].size == 0


def test_permute_symmetric_matches_scipy():
    rng = np.random.default_rng(0)
    m = symmetric_graph(300, rng)
    assert np.diff(m.indptr).max() > INSERTION_MAX
    perm = rng.permutation(300)
    new_of = np.empty(301, np.int64)
    new_of[perm] = np.arange(300)
    new_of[300] = 300
    indptr, indices, data = permute_symmetric(m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data, perm, new_of)
    expected = m[perm][:, perm].tocsr()
    expected.sort_indices()
    assert np.array_equal(indptr, expected.indptr)
    assert np.array_equal(indices, expected.indices)
    assert np.array_equal(data, expected.data)


def test_diagonal_minus_matches_scipy():
    rng = np.random.default_rng(1)
    m = symmetric_graph(200, rng)
    diagonal = rng.uniform(1.0, 2.0, 200)
    expected = (sp.diags(diagonal) - m).tocsr()
    expected.sort_indices()
    for index in (np.int32, np.int64):
        indptr, indices, data = diagonal_minus(m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data, diagonal,
                                               np.empty(0, index))
        assert indptr.dtype == indices.dtype == index
        assert np.array_equal(indptr, expected.indptr)
        assert np.array_equal(indices, expected.indices)
        assert np.array_equal(data, expected.data)


def test_contract_matches_scipy():
    """Clusters (variables 3, 7 and 12 under root 3; 20 and 21 under root 21), a fixed cluster
    (root n: variables 5 and 40) and the identity rows of every non-root variable."""
    rng = np.random.default_rng(3)
    n = 200
    m = symmetric_graph(n, rng)
    root = np.arange(n)
    root[[7, 12]] = 3
    root[20] = 21
    root[[5, 40]] = n
    unknown = np.zeros(n, bool)
    unknown[root[root != n]] = True
    rows = np.repeat(np.arange(n), np.diff(m.indptr))
    r, k = root[rows], root[m.indices]
    keep = (r != n) & (k != n)
    fixed = np.flatnonzero(~unknown)
    expected = sp.csr_matrix((np.r_[m.data[keep], np.ones(fixed.size)],
                              (np.r_[r[keep], fixed], np.r_[k[keep], fixed])), shape=(n, n))
    expected.sort_indices()
    indptr, indices, data = contract(m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data,
                                     np.where(root == n, -1, root), n, ~unknown)
    assert np.array_equal(indptr, expected.indptr)
    assert np.array_equal(indices, expected.indices)
    np.testing.assert_allclose(data, expected.data, rtol=1e-14)
    assert indptr[8] - indptr[7] == 1 and data[indptr[7]] == 1.0      # a merged member: identity row


def test_clamp_rows_keeps_the_pattern():
    rng = np.random.default_rng(4)
    n = 100
    m = (sp.diags(rng.uniform(5, 6, n)) - symmetric_graph(n, rng)).tocsr()
    unknown = rng.random(n) < 0.7
    data = clamp_rows(m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data, unknown)
    rows = np.repeat(np.arange(n), np.diff(m.indptr))
    expected = np.where(unknown[rows] & unknown[m.indices], m.data, 0.0)
    expected[(rows == m.indices) & ~unknown[rows]] = 1.0
    assert np.array_equal(data, expected)


def test_stamp_resistors_matches_numpy():
    """Resistors between free variables (parallel ones too), to fixed nodes, between two fixed
    nodes and within one variable (a voltage-source component), with offsets."""
    rng = np.random.default_rng(5)
    nodes, num_free = 60, 40
    node_var = np.r_[rng.integers(0, num_free, nodes - 10), np.full(10, -1)]
    node_var[:num_free] = np.arange(num_free)                  # every variable has a node
    offset = rng.uniform(-1, 1, nodes)
    a, b = rng.integers(0, nodes, 400), rng.integers(0, nodes, 400)
    g = rng.uniform(0.1, 10.0, 400)
    total, source, anchor, (indptr, indices, data) = stamp_resistors(node_var, offset, a, b, g, num_free)
    va, vb = node_var[a], node_var[b]
    assert np.any(va == vb) and np.any((va < 0) & (vb < 0)) and np.any((va < 0) != (vb < 0))
    expected = np.zeros((3, num_free))
    for this, other, sign in ((va, vb, 1.0), (vb, va, -1.0)):
        m = (this >= 0) & (this != other)
        expected[0] += np.bincount(this[m], g[m], num_free)
        expected[1] += np.bincount(this[m], sign * g[m] * (offset[b[m]] - offset[a[m]]), num_free)
        fixed = m & (other < 0)
        expected[2] += np.bincount(this[fixed], g[fixed], num_free)
    np.testing.assert_allclose(np.array([total, source, anchor]), expected, rtol=1e-12, atol=1e-12)
    pair = (va >= 0) & (vb >= 0) & (va != vb)
    coupling = sp.csr_matrix((np.r_[g[pair], g[pair]], (np.r_[va[pair], vb[pair]], np.r_[vb[pair], va[pair]])),
                             shape=(num_free, num_free))
    coupling.sum_duplicates()
    assert np.array_equal(indptr, coupling.indptr) and np.array_equal(indices, coupling.indices)
    np.testing.assert_allclose(data, coupling.data, rtol=1e-14)


def test_row_products_match_scipy():
    rng = np.random.default_rng(8)
    matrix = symmetric_graph(200, rng)
    x = rng.normal(size=200)
    rows = np.array([0, 3, 3, 199, 57])                   # (a long row, a repeat, an empty one)
    products, magnitudes = row_products(matrix.indptr, matrix.indices, matrix.data, rows, x)
    np.testing.assert_allclose(products, (matrix @ x)[rows], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(magnitudes, (abs(matrix) @ np.abs(x))[rows], rtol=1e-13, atol=1e-13)
    assert row_products(matrix.indptr, matrix.indices, matrix.data, np.zeros(0, np.int64), x)[0].size == 0


def test_cluster_drive_sums_source_minus_product_over_clusters():
    rng = np.random.default_rng(9)
    n = 200
    matrix = symmetric_graph(n, rng) + sp.diags(rng.uniform(1, 2, n))
    matrix = matrix.tocsr()
    source = rng.normal(size=n)
    # Clusters: some variables fixed (root n), some merged into a root, the rest alone.
    root = np.arange(n)
    root[rng.choice(n, 30, replace=False)] = n
    merged = rng.choice(np.flatnonzero(root < n), 40, replace=False)
    root[merged[1:20]] = merged[0]
    root[merged[21:]] = merged[20]
    touched = np.flatnonzero(root != np.arange(n))
    base = np.zeros(n)
    base[touched] = rng.normal(size=touched.size)
    base[touched[::5]] = 0.0                               # (a touched variable may sit at 0 V)
    free = root != n
    expected = np.bincount(root[free], weights=(source - matrix @ base)[free], minlength=n)
    got = cluster_drive(matrix.indptr, matrix.indices, matrix.data, source, root, touched, base)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
