"""The compilation's CSR kernels against SciPy: renumbering a symmetric matrix (rows short enough
for insertion sort, one long enough for argsort, empty rows) and adding a diagonal."""
import numpy as np
import scipy.sparse as sp

from resgraph.csr import INSERTION_MAX, diagonal_minus, permute_symmetric


def symmetric_graph(n: int, rng: np.random.Generator) -> sp.csr_matrix:
    a, b = rng.integers(0, n, 4 * n), rng.integers(0, n, 4 * n)
    hub = np.arange(1, 3 * INSERTION_MAX)                  # node 0 gets a long row
    a, b = np.r_[a, np.zeros(hub.size, int)], np.r_[b, hub]
    keep = (a != b) & (a < n - 5) & (b < n - 5)            # the last five nodes stay empty
    g = rng.uniform(0.1, 10.0, keep.sum())
    m = sp.csr_matrix((np.r_[g, g], (np.r_[a[keep], b[keep]], np.r_[b[keep], a[keep]])), shape=(n, n))
    m.sum_duplicates()
    return m


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
    indptr, indices, data = diagonal_minus(m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data, diagonal)
    expected = (sp.diags(diagonal) - m).tocsr()
    expected.sort_indices()
    assert np.array_equal(indptr, expected.indptr)
    assert np.array_equal(indices, expected.indices)
    assert np.array_equal(data, expected.data)
