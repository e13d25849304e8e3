"""CSR kernels: the resistors' pass, a symmetric matrix from its edges, renumbering it and adding
a diagonal (the compilation); contracting groups of variables (the polish's clusters of conducting
diodes, the aggregation multigrid's coarse levels), clamping rows and telling which rows
changed (the polish's systems); a few rows of ``A x`` (the currents of the conducting diodes)
and the current driven into clusters of variables (the polish's right-hand sides).

SciPy's ``A[perm][:, perm]`` plus ``sort_indices`` copies the matrix three times; here one
parallel pass writes every renumbered row already sorted (1e4-node lattice: 1.05 -> 0.23 ms;
1e6-node random graph, random renumbering: 299 -> 207 ms). Whole compile, best of many runs:
1e3-node benchmark lattice 0.67-0.70 -> 0.44-0.45 ms, 1e4-node 5.2 -> 4.7 ms, 1e6-node random
graph 855-937 -> 818-862 ms (measured).
"""
from __future__ import annotations

import numba as nb
import numpy as np

#: Rows with more entries than this are sorted with argsort instead of by insertion.
INSERTION_MAX = 32


@nb.njit(cache=True, inline="always")
def _sort_row(indices, data, start, count):
    """Sort ``indices[start:start+count]`` (and ``data`` alongside) in place."""
    if count > INSERTION_MAX:
        order = np.argsort(indices[start:start + count])
        columns, values = indices[start:start + count][order], data[start:start + count][order]
        indices[start:start + count] = columns
        data[start:start + count] = values
        return
    for t in range(start + 1, start + count):
        column, value, s = indices[t], data[t], t
        while s > start and indices[s - 1] > column:
            indices[s] = indices[s - 1]
            data[s] = data[s - 1]
            s -= 1
        indices[s] = column
        data[s] = value


@nb.njit(parallel=True, cache=True)
def _merge_rows(ptr, indices, data):
    """Rows of unsorted CSR arrays sorted by column, entries of one column summed (explicit
    zeros kept), compacted into new arrays. Returns ``(indptr, indices, data)``.

    Called from Python only, never from another jitted function: numba 0.68 caches a jitted
    caller of a parallel function broken when it compiles the caller against the callee's cached
    code, and the next process that loads it crashes (reproduced)."""
    n = ptr.size - 1
    kept = np.zeros(n + 1, np.int64)
    for i in nb.prange(n):
        start, stop = ptr[i], ptr[i + 1]
        _sort_row(indices, data, start, stop - start)
        last = start - 1
        for t in range(start, stop):
            if last >= start and indices[t] == indices[last]:
                data[last] += data[t]
            else:
                last += 1
                indices[last] = indices[t]
                data[last] = data[t]
        kept[i + 1] = last + 1 - start
    out_ptr = np.cumsum(kept)
    out_indices = np.empty(out_ptr[n], np.int64)
    out_data = np.empty(out_ptr[n], data.dtype)
    for i in nb.prange(n):
        k = out_ptr[i + 1] - out_ptr[i]
        out_indices[out_ptr[i]:out_ptr[i + 1]] = indices[ptr[i]:ptr[i] + k]
        out_data[out_ptr[i]:out_ptr[i + 1]] = data[ptr[i]:ptr[i] + k]
    return out_ptr, out_indices, out_data


def symmetric_from_edges(n, a, b, weight):
    """The symmetric ``n`` x ``n`` CSR matrix with ``weight[e]`` at ``(a[e], b[e])`` and at
    ``(b[e], a[e])``, parallel edges summed, columns sorted (what SciPy's COO -> CSR conversion
    with ``sum_duplicates`` gives, in one counting pass and one parallel pass over the rows:
    1e3 nodes and 2e3 random edges 0.13 -> 0.05 ms). ``a[e] != b[e]`` is assumed. Returns
    ``(indptr, indices, data)``."""
    return _merge_rows(*_edge_rows(n, a, b, weight))


@nb.njit(cache=True)
def _edge_rows(n, a, b, weight):
    """Each edge in the rows of both its ends, unsorted: ``(ptr, indices, data)``."""
    count = np.zeros(n + 1, np.int64)
    for e in range(a.size):
        count[a[e] + 1] += 1
        count[b[e] + 1] += 1
    ptr = np.cumsum(count)
    fill = ptr[:n].copy()
    indices = np.empty(ptr[n], np.int64)
    data = np.empty(ptr[n], np.float64)
    # (Both ends written out: a loop over the pair ``((a, b), (b, a))`` cost four times as much,
    # 1e4-node lattice 0.32 -> 0.08 ms, measured.)
    for e in range(a.size):
        i, j, g = a[e], b[e], weight[e]
        s = fill[i]
        indices[s], data[s], fill[i] = j, g, s + 1
        s = fill[j]
        indices[s], data[s], fill[j] = i, g, s + 1
    return ptr, indices, data


def stamp_resistors(node_var, offset, a, b, conductance, num_free):
    """The compile's pass over the resistors, fused (at 1e6 random resistors NumPy's gathers and
    bincounts took 0.43 s). A resistor of ``conductance`` g siemens between nodes ``a`` and ``b``
    (variables ``node_var``, -1 where fixed; potentials ``x[var] + offset``) adds g to the total
    conductance of each free end, g (offset[b] - offset[a]) amperes to the drive into ``a``'s
    variable and the opposite into ``b``'s, g to the ``anchor`` (conductance to fixed potentials)
    of a free end whose other end is fixed, and g to the coupling between two distinct variables.
    Returns ``(total, source, anchor, (indptr, indices, data))``, the last the coupling as CSR."""
    total, source, anchor, pair_a, pair_b, pair_g = _stamp(node_var, offset, a, b, conductance, num_free)
    return total, source, anchor, symmetric_from_edges(num_free, pair_a, pair_b, pair_g)


@nb.njit(cache=True)
def _stamp(node_var, offset, a, b, conductance, num_free):
    """``stamp_resistors``' pass: ``(total, source, anchor)`` and the coupled pairs' ends and
    conductances."""
    total = np.zeros(num_free)
    source = np.zeros(num_free)
    anchor = np.zeros(num_free)
    pair_a = np.empty(a.size, np.int64)
    pair_b = np.empty(a.size, np.int64)
    pair_g = np.empty(a.size, np.float64)
    pairs = 0
    for e in range(a.size):
        va, vb, g = node_var[a[e]], node_var[b[e]], conductance[e]
        if va == vb:
            continue
        drive = g * (offset[b[e]] - offset[a[e]])
        if va >= 0:
            total[va] += g
            source[va] += drive
            if vb < 0:
                anchor[va] += g
        if vb >= 0:
            total[vb] += g
            source[vb] -= drive
            if va < 0:
                anchor[vb] += g
        if va >= 0 and vb >= 0:
            pair_a[pairs], pair_b[pairs], pair_g[pairs] = va, vb, g
            pairs += 1
    return total, source, anchor, pair_a[:pairs], pair_b[:pairs], pair_g[:pairs]


def contract(indptr, indices, data, group, size, identity):
    """``P' A P`` for a symmetric CSR matrix ``A`` whose variables are gathered into ``size``
    groups (``P`` of zeros and ones): row and column ``i`` go to ``group[i]`` (negative: dropped),
    entries of one pair of groups summed, and 1 is added on the diagonal of every group marked in
    ``identity`` (the polish's rows with no cluster, so that its matrix stays nonsingular).
    Returns ``(indptr, indices, data)``, ``size`` rows."""
    return _merge_rows(*_gather_groups(indptr, indices, data, group, size, identity))


@nb.njit(cache=True)
def _gather_groups(indptr, indices, data, group, size, identity):
    """``contract``'s entries in the rows of their groups, unsorted: ``(ptr, indices, data)``."""
    n = indptr.size - 1
    count = np.zeros(size + 1, np.int64)
    for i in range(n):
        r = group[i]
        if r >= 0:
            for t in range(indptr[i], indptr[i + 1]):
                if group[indices[t]] >= 0:
                    count[r + 1] += 1
    for r in range(size):
        if identity[r]:
            count[r + 1] += 1
    ptr = np.cumsum(count)
    fill = ptr[:size].copy()
    out_indices = np.empty(ptr[size], np.int64)
    out_data = np.empty(ptr[size], data.dtype)
    for i in range(n):
        r = group[i]
        if r >= 0:
            for t in range(indptr[i], indptr[i + 1]):
                k = group[indices[t]]
                if k >= 0:
                    out_indices[fill[r]] = k
                    out_data[fill[r]] = data[t]
                    fill[r] += 1
    for r in range(size):
        if identity[r]:
            out_indices[fill[r]] = r
            out_data[fill[r]] = 1.0
            fill[r] += 1
    return ptr, out_indices, out_data


@nb.njit(parallel=True, cache=True)
def clamp_rows(indptr, indices, data, unknown):
    """A CSR matrix's values with every entry in a row or column that is not ``unknown`` set to
    zero, kept as explicit zeros (the pattern stays), and 1 on the diagonal of those rows."""
    out = np.empty_like(data)
    for i in nb.prange(indptr.size - 1):
        for t in range(indptr[i], indptr[i + 1]):
            j = indices[t]
            if unknown[i] and unknown[j]:
                out[t] = data[t]
            else:
                out[t] = 1.0 if i == j else 0.0
    return out


@nb.njit(cache=True)
def row_products(indptr, indices, data, rows, x):
    """``(A x)[rows]`` of a CSR matrix ``A``, each row summed in its stored order (as SciPy's
    product), without the other rows, and beside it ``(|A| |x|)[rows]``: the magnitudes of each
    row's terms, which its rounding scales with."""
    out = np.empty(rows.size)
    magnitude = np.empty(rows.size)
    for k in range(rows.size):
        i = rows[k]
        total = terms = 0.0
        for t in range(indptr[i], indptr[i + 1]):
            term = data[t] * x[indices[t]]
            total += term
            terms += abs(term)
        out[k] = total
        magnitude[k] = terms
    return out, magnitude


@nb.njit(parallel=True, cache=True)
def term_magnitudes(indptr, indices, data, rhs, x):
    """The 2-norm of ``|rhs| + |A| |x|`` for a CSR matrix ``A``: per row, the magnitudes of the
    terms of ``A x - rhs``, which its rounding scales with. Called from Python only (see
    :func:`_merge_rows`)."""
    squares = 0.0
    for i in nb.prange(indptr.size - 1):
        terms = abs(rhs[i])
        for t in range(indptr[i], indptr[i + 1]):
            terms += abs(data[t] * x[indices[t]])
        squares += terms * terms
    return np.sqrt(squares)


@nb.njit(parallel=True, cache=True)
def row_excess(indptr, indices, data, rhs, x, allowance):
    """Per row of a CSR matrix ``A``, the residual ``(A x - rhs)[i]`` and how far it exceeds
    ``allowance`` times the magnitudes of the row's own terms, ``|rhs[i]| + sum_j |A[i, j] x[j]|``
    (rounding's reach in that row). Returns ``(residual, excess)``. Called from Python only."""
    n = indptr.size - 1
    residual = np.empty(n)
    excess = np.empty(n)
    for i in nb.prange(n):
        r = -rhs[i]
        terms = abs(rhs[i])
        for t in range(indptr[i], indptr[i + 1]):
            term = data[t] * x[indices[t]]
            r += term
            terms += abs(term)
        residual[i] = r
        excess[i] = abs(r) - allowance * terms
    return residual, excess


@nb.njit(cache=True)
def cluster_drive(indptr, indices, data, source, root, touched, base):
    """The current driven into each cluster of variables, ``sum over the cluster's members i
    of (source - A base)[i]``, in the row of its root (``root[i]``; ``root.size`` for a cluster
    held at a fixed potential, which gets none): ``A`` a symmetric CSR matrix, ``base`` nonzero
    only at the variables ``touched`` (the polish's offsets along conducting diodes; cheaper than
    the whole product ``A base``)."""
    n = root.size
    out = np.zeros(n)
    for i in range(n):
        if root[i] != n:
            out[root[i]] += source[i]
    for k in range(touched.size):
        j = touched[k]
        if base[j] == 0.0:
            continue
        for t in range(indptr[j], indptr[j + 1]):
            r = root[indices[t]]
            if r != n:
                out[r] -= data[t] * base[j]
    return out


@nb.njit(cache=True)
def changed_lower_rows(indptr, indices, data, old_data):
    """How many rows of a symmetric CSR matrix hold an entry on or left of the diagonal that
    differs from ``old_data`` (a matrix of the same pattern): the columns of its upper triangle
    that changed."""
    count = 0
    for i in range(indptr.size - 1):
        for t in range(indptr[i], indptr[i + 1]):
            if indices[t] <= i and data[t] != old_data[t]:
                count += 1
                break
    return count


@nb.njit(cache=True)
def lower_row_fingerprints(indptr, indices, data):
    """Per row of a symmetric CSR matrix, the entries on or left of the diagonal: their count,
    the sum of their columns and the sum of their values (explicit zeros count). Returns
    ``(counts, column_sums, value_sums)``."""
    n = indptr.size - 1
    counts = np.zeros(n, np.int64)
    columns = np.zeros(n, np.int64)
    values = np.zeros(n)
    for i in range(n):
        for t in range(indptr[i], indptr[i + 1]):
            if indices[t] <= i:
                counts[i] += 1
                columns[i] += indices[t]
                values[i] += data[t]
    return counts, columns, values


@nb.njit(parallel=True, cache=True)
def permute_symmetric(indptr, indices, data, perm, new_of):
    """Rows and columns of a CSR matrix renumbered: row ``i`` of the result is row ``perm[i]``
    of the input, column ``k`` becomes ``new_of[k]`` (``new_of[perm[i]] == i``); columns sorted
    within each row. Returns ``(indptr, indices, data)``."""
    n = perm.size
    ptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        ptr[i + 1] = ptr[i] + indptr[perm[i] + 1] - indptr[perm[i]]
    out_indices = np.empty(ptr[n], np.int64)
    out_data = np.empty(ptr[n], data.dtype)
    for i in nb.prange(n):
        source, start, count = indptr[perm[i]], ptr[i], ptr[i + 1] - ptr[i]
        for t in range(count):
            out_indices[start + t] = new_of[indices[source + t]]
            out_data[start + t] = data[source + t]
        _sort_row(out_indices, out_data, start, count)
    return ptr, out_indices, out_data


@nb.njit(parallel=True, cache=True)
def diagonal_minus(indptr, indices, data, diagonal, index):
    """``diag(diagonal) - A`` for a CSR matrix ``A`` with sorted columns and no diagonal entries,
    as CSR with sorted columns, its ``indptr`` and ``indices`` of ``index``'s dtype (SciPy keeps
    int32 ones as they are, and copies int64 ones down to int32 where they fit: 5.4 ms against
    0.1 ms for the matrix of a 1e6-node random graph). Returns ``(indptr, indices, data)``."""
    n = indptr.size - 1
    ptr = np.empty(n + 1, index.dtype)
    for i in range(n + 1):
        ptr[i] = indptr[i] + i
    out_indices = np.empty(ptr[n], index.dtype)
    out_data = np.empty(ptr[n], data.dtype)
    for i in nb.prange(n):
        s = ptr[i]
        placed = False
        for t in range(indptr[i], indptr[i + 1]):
            if not placed and indices[t] > i:
                out_indices[s] = i
                out_data[s] = diagonal[i]
                s += 1
                placed = True
            out_indices[s] = indices[t]
            out_data[s] = -data[t]
            s += 1
        if not placed:
            out_indices[s] = i
            out_data[s] = diagonal[i]
    return ptr, out_indices, out_data
