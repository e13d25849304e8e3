"""Sparse Cholesky factorisation of mesh-like systems: nested dissection, multifrontal.

The polish's systems on meshes (weighted graph Laplacians plus a positive diagonal) are solved
by factorising them. A fill-reducing order comes from nested dissection with level-set
separators: a breadth-first search splits a part at its thinnest level near the middle, the two
sides are dissected in turn, and every separator is numbered after both sides. The whole graph
is searched from a pseudo-peripheral vertex (the last one reached from any); each side, from
its vertex nearest the separator that the search reached first (1e5-node lattice: ordering
49 -> 32 ms, the factor 4 % larger, than with a pseudo-peripheral search per side). Each
separator (and each part of at most ``LEAF`` vertices, or with no level between two others) is
one supernode: its columns of the factor share one row pattern, stored as a dense block. The numeric factorisation is
multifrontal: a supernode's frontal matrix gathers its entries of the matrix and its children's
update matrices; LAPACK factorises the supernode's columns and BLAS subtracts their product
from the rest, the update matrix passed on to its parent (loops do that on fronts of up to
``SMALL_FRONT`` rows). Whole subtrees of the
elimination tree are factorised on numba's threads, the supernodes above them after
(:func:`_schedule`); the triangular solves are dealt out the same way.

The order and the fronts' row patterns depend only on the sparsity pattern: a matrix with the
same pattern (the polish's clamped variables are identity rows with explicit zeros, keeping it)
is refactorised numerically on the same analysis, and where the update matrices are kept
(``KEPT_UPDATES_EARLY``) only in the fronts its changed rows reach (the polish's later systems:
1e4-node benchmark lattice with conducting clamps, 20 changed rows, 41 of 1277 fronts).
"""
from __future__ import annotations

import copy
import threading
import weakref

import numba as nb
import numpy as np
import scipy.sparse as sp

from .errors import ResgraphError
from .lapack import address, dpotrf, dsyrk, dtrsm

#: Parts of the graph this small are not dissected further: one dense supernode each.
LEAF = 16
#: Matrices of at least this many rows are factorised on all of numba's threads (1e4-node
#: lattice, 2 threads: 3.2 -> 2.0 ms; 1e5: 46 -> 36 ms; BLAS itself gains little from threads
#: on fronts this size).
PARALLEL_MIN = 5_000
#: Fronts of at most this many rows are factorised by loops (:func:`_factor_small_front`)
#: instead of LAPACK and BLAS, whose small calls cost more than the work, and from two threads
#: at once 2-3x what they cost from one here (OpenBLAS). Benchmark lattice, numeric
#: factorisation, BLAS everywhere (one thread) or loops up to 48 rows (threads side by side):
#: 1e4 nodes 2.6 ms; loops up to 32 / 48 / 64 / 96 / 128 rows everywhere: 1e4 nodes 1.3-1.4 /
#: 1.2-1.4 / 1.3 / 1.9 / 1.9 ms, 1e5 24.7 / 23.5-25.8 / 24.7 / 31 / 32 ms (2 threads); one
#: thread, 1e4 nodes: BLAS for every front 3.5 ms, loops up to 48 rows 2.5 ms.
SMALL_FRONT = 48
#: Columns factorised together by :func:`_factor_small_front` (its rank-``PANEL`` update is
#: written out for four).
PANEL = 4
#: A factorisation keeps every supernode's update matrix (instead of a stack that reuses their
#: memory), so that a matrix differing from the last one in a few rows is refactorised only in
#: the fronts those rows reach (:meth:`Cholesky.factorise`): from the first factorisation where
#: they hold at most ``KEPT_UPDATES_EARLY`` entries in all, from the second (once a pattern is
#: seen refactorised) up to ``KEPT_UPDATES_MAX``; beyond, never. They hold 2.1-2.9 times the
#: factor's entries on benchmark lattices (1e4 nodes 0.7e6, 1e5 1.0e7, 1e6 1.4e8: 1.1 GB).
#: Benchmark lattices with conducting clamps, interleaved: 1e4 nodes (best of 25) polish
#: 7.1 -> 5.5 ms, whole solve 16.0 -> 14.3 ms; 1e5 (best of 8) polish 134 -> 99 ms, whole
#: 241-244 -> 205-215 ms; 1e6 (last 2 of 3, two rounds) polish 3.4-4.7 -> 2.6-2.7 s, whole
#: 5.1-6.9 -> 4.3-4.6 s. The first touch of the memory costs most in a fresh process: a single
#: 1e6 solve there gains nothing (5.2-7.1 s without, 5.3-7.5 s with), and kept from the first
#: factorisation (4.3-5.3 s) the memory would cost a lone factorisation (no clamp conducting)
#: 1.2-2 s: hence kept from the second factorisation there.
KEPT_UPDATES_EARLY = 2**25
KEPT_UPDATES_MAX = 2**28
#: Memory of factorisations no longer in use is kept for the next of the same size, up to this
#: many entries in all (256 MiB, held until then): a buffer of tens of MB freed goes back to
#: the system, and taken again it is faulted in anew. 1e5-node benchmark lattice with conducting
#: clamps (kept update matrices 83 MB), a fresh process's 2nd and 3rd solves: system time 0.14
#: and 0.08 s -> 0.02 and 0.00 s; best of 3 in a fresh process (as ``solve_vs_osqp.py``),
#: interleaved, two rounds: 0.238-0.253 -> 0.206-0.212 s (no clamp conducting: 0.113-0.129 ->
#: 0.118-0.150 s, the same within the noise).
SPARE_MAX = 2**25
#: The separator is the thinnest breadth-first level leaving at least this share of the part on
#: either side.
BALANCE = 0.3


@nb.njit(cache=True)
def _bfs(indptr, indices, start, label, mark, seen, stamp, level, queue):
    """Breadth-first search from ``start`` over vertices with ``mark == label``; fills ``level``
    and ``queue`` (the vertices in visiting order). Returns how many were reached, and how many
    numbered separator vertices (``mark == -1``) are next to them."""
    queue[0] = start
    seen[start] = stamp
    level[start] = 0
    head, tail = 0, 1
    boundary = 0
    while head < tail:
        v = queue[head]
        head += 1
        for t in range(np.uint64(indptr[v]), np.uint64(indptr[v + 1])):
            w = np.uint64(indices[t])      # (unsigned, as in _factor_small_front)
            if seen[w] == stamp:
                continue
            if mark[w] == label:
                seen[w] = stamp
                level[w] = level[v] + 1
                queue[tail] = w
                tail += 1
            elif mark[w] == -1:
                seen[w] = stamp
                boundary += 1
    return tail, boundary


@nb.njit(cache=True)
def _dissect_parts(indptr, indices, limit, stack, depth, stop, verts, mark, seen, level, queue, spare, perm,
                   created_first, created_parent, state):
    """Dissect the parts waiting on ``stack[:depth]`` (the top first) until none is left, or
    until ``stop`` (if positive) are waiting, or the factor's count passes ``limit``. Returns
    how many are left waiting.

    A part is ``(start in verts, length, parent supernode, label, a vertex to search from or
    -1)``. Supernodes are created parents first into ``created_first`` (their first position)
    and ``created_parent`` (the part's parent, as on the stack); ``state`` holds, and is left
    holding, ``(supernodes created, labels used, search stamp, next free position + 1, factor
    entries counted)``. ``queue`` and ``spare`` need room for the largest part only."""
    count, labels, stamp, next_pos, least = state[0], state[1], state[2], state[3], state[4]
    while depth > 0 and (stop <= 0 or depth < stop) and least <= limit:
        depth -= 1
        start, length, parent, label, hint = stack[depth]
        if length == 0:
            continue
        if length <= LEAF:
            least += length * length
            next_pos -= length
            perm[next_pos:next_pos + length] = verts[start:start + length]
            created_first[count] = next_pos
            created_parent[count] = parent
            count += 1
            continue
        stamp += 1
        reached, boundary = _bfs(indptr, indices, verts[start] if hint < 0 else hint, label, mark, seen, stamp, level,
                                 queue)
        if reached < length:
            # Disconnected: the component reached and the rest are dissected apart.
            rest = 0
            for t in range(start, start + length):
                v = verts[t]
                if seen[v] != stamp:
                    spare[rest] = v
                    rest += 1
            labels += 2
            for t in range(reached):
                verts[start + t] = queue[t]
                mark[queue[t]] = labels - 1
            for t in range(rest):
                verts[start + reached + t] = spare[t]
                mark[spare[t]] = labels
            stack[depth] = (start, reached, parent, labels - 1, -1)
            stack[depth + 1] = (start + reached, rest, parent, labels, -1)
            depth += 2
            continue
        if hint < 0:
            # Again from the last vertex reached: a pseudo-peripheral start, long thin levels.
            stamp += 1
            _bfs(indptr, indices, queue[length - 1], label, mark, seen, stamp, level, queue)
        levels = level[queue[length - 1]] + 1
        if levels < 3:
            # No level between two others: nearly a clique, one dense supernode.
            least += length * (length + boundary)
            next_pos -= length
            perm[next_pos:next_pos + length] = queue[:length]
            created_first[count] = next_pos
            created_parent[count] = parent
            count += 1
            continue
        sizes = np.zeros(levels, np.int64)
        for t in range(length):
            sizes[level[queue[t]]] += 1
        # The cut leaves a level on either side: both sides and the separator are non-empty.
        cut = -1
        below = sizes[0]
        for k in range(1, levels - 1):
            above = length - below - sizes[k]
            if below >= BALANCE * length and above >= BALANCE * length and (cut < 0 or sizes[k] < sizes[cut]):
                cut = k
            below += sizes[k]
        if cut < 0:
            below = sizes[0]
            cut = 1
            while cut < levels - 2 and below + sizes[cut] < length // 2:
                below += sizes[cut]
                cut += 1
        # Sides first, separator last; a separator vertex with no neighbour beyond the cut
        # joins the near side.
        labels += 2
        near, far, sep = 0, 0, 0
        near_hint, far_hint = -1, -1
        for t in range(length):
            v = queue[t]
            lv = level[v]
            if lv == cut:
                beyond = False
                for e in range(indptr[v], indptr[v + 1]):
                    w = indices[e]
                    if mark[w] == label and level[w] == cut + 1:
                        beyond = True
                        break
                if not beyond:
                    lv = cut - 1
            if lv < cut:
                verts[start + near] = v
                near += 1
                if near_hint < 0 and lv == cut - 1:
                    near_hint = v
            elif lv > cut:
                spare[far] = v
                far += 1
                if far_hint < 0:
                    far_hint = v
            else:
                queue[sep] = v      # (queue's visited part is no longer needed)
                sep += 1
        for t in range(near):
            mark[verts[start + t]] = labels - 1
        for t in range(far):
            verts[start + near + t] = spare[t]
            mark[spare[t]] = labels
        least += sep * (sep + boundary)
        next_pos -= sep
        perm[next_pos:next_pos + sep] = queue[:sep]
        for t in range(sep):
            mark[queue[t]] = -1
        created_first[count] = next_pos
        created_parent[count] = parent
        stack[depth] = (start, near, count, labels - 1, near_hint)
        stack[depth + 1] = (start + near, far, count, labels, far_hint)
        depth += 2
        count += 1
    state[0], state[1], state[2], state[3], state[4] = count, labels, stamp, next_pos, least
    return depth


@nb.njit(parallel=True, cache=True)
def _dissect_in_parallel(indptr, indices, limit, waiting, bucket_ptr, buckets, verts, mark, level, queue, spare, perm,
                         created_first, created_parent, created_ptr, states):
    """:func:`_dissect_parts` of the parts in ``waiting``, a bucket of them on each thread
    (``buckets[bucket_ptr[b]:bucket_ptr[b + 1]]``), each from the state given in ``states``
    and creating its supernodes at ``created_ptr``. The searches on each thread have their
    own stamps (the separator vertices around two parts are stamped by both). (Called from
    Python only.)"""
    n = indptr.size - 1
    for b in nb.prange(bucket_ptr.size - 1):
        seen = np.full(n, -1, np.int64)
        for i in range(bucket_ptr[b], bucket_ptr[b + 1]):
            k = buckets[i]
            start, length = waiting[k, 0], waiting[k, 1]
            stack = np.empty((length + 2, 5), np.int64)
            stack[0] = waiting[k]
            lo, hi = created_ptr[k], created_ptr[k + 1]
            _dissect_parts(indptr, indices, limit, stack, 1, 0, verts, mark, seen, level, queue[start:start + length],
                           spare[start:start + length], perm, created_first[lo:hi], created_parent[lo:hi], states[k])


@nb.njit(cache=True)
def _postorder(created_first, created_parent, created_ptr, counts, n):
    """``(first, parent)`` of the supernodes created in runs ``created_first[created_ptr[r]:]
    [:counts[r]]``, numbered in the order a single run would have created them, reversed (every
    child then comes before its parent). A parent ``p >= 0`` in a run is the run's ``p``-th
    supernode, one below it is ``-2 - p``, the ``p``-th of all (or none: -1)."""
    total = counts.sum()
    first = np.empty(total + 1, np.int64)
    parent = np.empty(total, np.int64)
    k = 0
    for r in range(counts.size):
        for i in range(counts[r]):
            code = created_parent[created_ptr[r] + i]
            s = total - 1 - k                   # reversed
            first[s] = created_first[created_ptr[r] + i]
            made = k - i + code if code >= 0 else -2 - code
            parent[s] = -1 if made < 0 else total - 1 - made
            k += 1
    first[total] = n
    return first, parent


def _dissect(indptr: np.ndarray, indices: np.ndarray, limit: int,
             threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Nested-dissection order of the symmetric pattern ``(indptr, indices)``.

    Returns ``(perm, first, parent, complete)``: ``perm[p]`` is the vertex eliminated
    ``p``-th; supernode ``s`` holds positions ``first[s]:first[s + 1]`` and its parent is
    ``parent[s]`` (-1 for a root). Supernodes are numbered in postorder: every child before its
    parent. With several ``threads``, once the first cuts leave twice as many parts, they are
    dissected on the threads (the same order as on one).

    The factor's size is counted on the way: a connected part's separator of ``w`` vertices is
    a supernode whose front also has a row for every numbered separator vertex next to the part
    (all are reached through the part), ``w * (w + boundary)`` entries; a leaf part counts
    ``w * w``, at least its own. Once they pass ``limit`` the dissection stops and ``complete``
    is False (the rest is not filled in): 5e5-node meshes with long wires are refused in 0.06-0.16
    s, where the whole order and the analysis took 0.37-0.45 s."""
    n = indptr.size - 1
    perm = np.empty(n, np.int64)
    verts = np.arange(n)
    mark = np.zeros(n, np.int64)
    level = np.empty(n, np.int64)
    queue = np.empty(n, np.int64)
    spare = np.empty(n, np.int64)
    stack = np.empty((n + 1, 5), np.int64)
    stack[0] = (0, n, -1, 0, -1)
    created_first = np.empty(n + 1, np.int64)
    created_parent = np.empty(n + 1, np.int64)
    state = np.array([0, 0, 0, n, 0], np.int64)
    # On several threads, the first cuts (each of the part on top: one thread's order) go on
    # until twice as many parts wait, so that they can be shared out evenly (cuts leave 30-70 %
    # on either side).
    depth = _dissect_parts(indptr, indices, limit, stack, 1, 2 * threads if threads > 1 else 0, verts, mark,
                           np.full(n, -1, np.int64), level, queue, spare, perm, created_first, created_parent, state)
    created_ptr, counts = np.array([0, n + 1]), state[:1].copy()
    if depth > 0 and state[4] <= limit:
        # The parts waiting, top of the stack first (as one thread would take them): each gets
        # the positions, labels and room for supernodes it would use, and refers to its parent
        # as one created below it.
        waiting = stack[:depth][::-1].copy()
        lengths = waiting[:, 1]
        waiting[:, 2] = -2 - waiting[:, 2]
        created_ptr = np.r_[0, n + 1, n + 1 + np.cumsum(lengths + 1)]
        states = np.zeros((depth, 5), np.int64)
        states[:, 1] = state[1] + 2 * (n + 1) * np.arange(1, depth + 1)
        states[:, 2] = 2 * (n + 1) * np.arange(depth)
        states[:, 3] = state[3] - np.r_[0, np.cumsum(lengths)[:-1]]
        states[:, 4] = state[4]
        created_first = np.r_[created_first, np.empty(created_ptr[-1] - n - 1, np.int64)]
        created_parent = np.r_[created_parent, np.empty(created_ptr[-1] - n - 1, np.int64)]
        # Largest first, each to the least loaded thread.
        load = np.zeros(threads)
        bucket_of = np.empty(depth, np.int64)
        for k in np.argsort(-lengths, kind="stable"):
            bucket_of[k] = np.argmin(load)
            load[bucket_of[k]] += lengths[k]
        buckets = np.argsort(bucket_of, kind="stable")
        bucket_ptr = np.searchsorted(bucket_of[buckets], np.arange(threads + 1))
        _dissect_in_parallel(indptr, indices, limit, waiting, bucket_ptr, buckets, verts, mark, level, queue, spare,
                             perm, created_first, created_parent, created_ptr[1:], states)
        counts = np.r_[counts, states[:, 0]]
        state[4] += (states[:, 4] - state[4]).sum()
    if state[4] > limit:
        return perm, np.zeros(1, np.int64), np.zeros(0, np.int64), False
    first, parent = _postorder(created_first, created_parent, created_ptr, counts, n)
    return perm, first, parent, True


@nb.njit(cache=True)
def _sort(values, begin, end):
    """Sort ``values[begin:end]`` in place: by insertion when short (most fronts' rows), else
    by NumPy."""
    if end - begin > 32:
        values[begin:end] = np.sort(values[begin:end])
        return
    for t in range(begin + 1, end):
        value, s = values[t], t
        while s > begin and values[s - 1] > value:
            values[s] = values[s - 1]
            s -= 1
        values[s] = value


@nb.njit(cache=True)
def _front_rows(indptr, indices, perm, inverse, first, parent, limit):
    """The first, serial pass of :func:`_analyse`: each supernode's update rows, unsorted.
    Returns ``(child_ptr, children, rows_ptr, rows, factor_ptr)``; stops as soon as the factor
    holds more than ``limit`` entries (``factor_ptr[-1]`` then exceeds it)."""
    n = perm.size
    count = parent.size
    child_ptr = np.zeros(count + 1, np.int64)
    for s in range(count):
        if parent[s] >= 0:
            child_ptr[parent[s] + 1] += 1
    child_ptr = np.cumsum(child_ptr)
    children = np.zeros(max(child_ptr[count], 1), np.int64)
    fill = child_ptr[:-1].copy()
    for s in range(count):
        if parent[s] >= 0:
            children[fill[parent[s]]] = s
            fill[parent[s]] += 1
    marker = np.full(n, -1, np.int64)
    rows_ptr = np.zeros(count + 1, np.int64)
    rows = np.empty(max(n, 16), np.int64)
    factor_ptr = np.zeros(count + 1, np.int64)
    for s in range(count):
        lo, hi = first[s], first[s + 1]
        begin = rows_ptr[s]
        # Room for every candidate row, made before the loops below: an array replaced inside
        # them costs numba a reference count on every pass (1e4-node lattice: 1.47 -> 0.80 ms).
        most = 0
        for p in range(lo, hi):
            most += indptr[perm[p] + 1] - indptr[perm[p]]
        for t in range(child_ptr[s], child_ptr[s + 1]):
            most += rows_ptr[children[t] + 1] - rows_ptr[children[t]]
        if begin + most > rows.size:
            rows = np.concatenate((rows, np.empty(max(rows.size, begin + most - rows.size), np.int64)))
        end = begin
        # (Unsigned indices in the loops over entries, as in _factor_small_front.)
        for p in range(lo, hi):
            v = perm[p]
            for t in range(np.uint64(indptr[v]), np.uint64(indptr[v + 1])):
                q = inverse[np.uint64(indices[t])]
                if q >= hi and marker[np.uint64(q)] != s:
                    marker[np.uint64(q)] = s
                    rows[np.uint64(end)] = q
                    end += 1
        for t in range(child_ptr[s], child_ptr[s + 1]):
            c = children[t]
            for r in range(np.uint64(rows_ptr[c]), np.uint64(rows_ptr[c + 1])):
                q = rows[r]
                if q >= hi and marker[np.uint64(q)] != s:
                    marker[np.uint64(q)] = s
                    rows[np.uint64(end)] = q
                    end += 1
        rows_ptr[s + 1] = end
        factor_ptr[s + 1] = factor_ptr[s] + (hi - lo) * (hi - lo + end - begin)
        if factor_ptr[s + 1] > limit:
            factor_ptr[count] = factor_ptr[s + 1]
            break
    return child_ptr, children, rows_ptr, rows[:rows_ptr[count]].copy(), factor_ptr


@nb.njit(parallel=True, cache=True)
def _front_layout(indptr, indices, perm, inverse, first, child_ptr, children, rows_ptr, rows, chunk_ptr):
    """The second pass of :func:`_analyse`, on threads: every supernode's rows sorted, then where
    its matrix entries go in its front and where its children's update rows go in it (the
    sorting done for all before the placing starts). Supernodes ``chunk_ptr[k]:chunk_ptr[k + 1]``
    are one thread's in both. Returns ``(relative, destination)``. (Called from Python only: see
    :mod:`resgraph.csr` on numba's cache.)"""
    n = perm.size
    chunks = chunk_ptr.size - 1
    relative = np.empty(rows.size, np.int64)
    destination = np.full(indices.size, -1, np.int64)
    for k in nb.prange(chunks):
        for s in range(chunk_ptr[k], chunk_ptr[k + 1]):
            _sort(rows, rows_ptr[s], rows_ptr[s + 1])
    # (A second loop: a parent reads its children's rows in their sorted order.)
    for k in nb.prange(chunks):
        local = np.empty(n, np.int64)
        for s in range(chunk_ptr[k], chunk_ptr[k + 1]):
            lo, hi = first[s], first[s + 1]
            begin, end = rows_ptr[s], rows_ptr[s + 1]
            width = hi - lo
            m = width + end - begin
            for p in range(lo, hi):
                local[p] = p - lo
            for r in range(begin, end):
                local[rows[r]] = width + r - begin
            for p in range(lo, hi):
                v = perm[p]
                for t in range(np.uint64(indptr[v]), np.uint64(indptr[v + 1])):
                    q = inverse[np.uint64(indices[t])]
                    if q >= p:
                        destination[t] = local[p] * m + local[np.uint64(q)]
            for t in range(child_ptr[s], child_ptr[s + 1]):
                c = children[t]
                for r in range(np.uint64(rows_ptr[c]), np.uint64(rows_ptr[c + 1])):
                    relative[r] = local[np.uint64(rows[r])]
    return relative, destination


def _analyse(indptr: np.ndarray, indices: np.ndarray, perm: np.ndarray, first: np.ndarray, parent: np.ndarray,
             limit: int, threads: int = 1) -> tuple[np.ndarray, ...]:
    """Row patterns of the fronts and where every entry goes. Returns ``(child_ptr, children,
    rows_ptr, rows, relative, destination, factor_ptr)``:

    - the update rows of supernode ``s`` (positions beyond its own, ascending) are
      ``rows[rows_ptr[s]:rows_ptr[s + 1]]``, and ``relative`` holds, alongside, each one's index
      in the parent's front;
    - its front is ``m x m`` (column-major, ``m`` its columns and update rows); its first
      columns, its block of the factor, are kept at ``factor_ptr[s]:factor_ptr[s + 1]``;
    - ``destination[t]`` is the offset in its front of the matrix entry ``t`` (``-1`` for one
      above the diagonal).

    The rows are gathered in one pass, children first (:func:`_front_rows`); sorting them and
    placing the entries runs on ``threads`` (:func:`_front_layout`; 1e4-node lattice, 2 threads:
    1.10 -> 0.66 ms, 1e5 8.6 -> 7.9 ms, 1e6 116 -> 88 ms, same process). Stops as soon as the
    factor holds more than ``limit`` entries (``factor_ptr[-1]`` then exceeds it, and nothing
    else is filled in)."""
    inverse = np.empty(perm.size, np.int64)
    inverse[perm] = np.arange(perm.size)
    child_ptr, children, rows_ptr, rows, factor_ptr = _front_rows(indptr, indices, perm, inverse, first, parent,
                                                                  limit)
    if factor_ptr[-1] > limit:
        return child_ptr, children, rows_ptr, rows, np.zeros(0, np.int64), np.zeros(0, np.int64), factor_ptr
    # Threads' shares of the supernodes, by their rows and columns.
    chunk_ptr = np.array([0, parent.size])
    if threads > 1 and parent.size:
        work = np.cumsum(np.diff(rows_ptr) + np.diff(first))
        chunk_ptr = np.concatenate(([0], np.searchsorted(work, work[-1] * np.arange(1, threads) / threads,
                                                         side="right"), [parent.size]))
    relative, destination = _front_layout(indptr, indices, perm, inverse, first, child_ptr, children, rows_ptr,
                                          rows, chunk_ptr)
    return child_ptr, children, rows_ptr, rows, relative, destination, factor_ptr


@nb.njit(cache=True)
def _schedule(first, parent, child_ptr, children, rows_ptr, groups):
    """Which thread factorises which fronts, and where their update matrices wait.

    The elimination tree is cut into whole subtrees (the heaviest split into its children's
    until none carries more than a ``2 * groups``-th of the work), dealt to ``groups`` threads
    heaviest first, each to the least loaded; the supernodes above them are done after, on one.
    Returns ``(order, group_ptr, stack_offset, stack_ptr, work_ptr)``: group ``g`` (the last,
    ``groups``, being the supernodes above) does ``order[group_ptr[g]:group_ptr[g + 1]]`` in
    turn, its update matrices on a stack of its own at ``stack_ptr[g]`` (supernode ``s``'s at
    ``stack_offset[s]``), its fronts in a work area at ``work_ptr[g]`` (the supernodes above in
    the threads' areas, from 0: ``work_ptr[-1]`` is the length of them all)."""
    count = parent.size
    cost = np.empty(count)
    members = np.ones(count, np.int64)
    for s in range(count):
        m = first[s + 1] - first[s] + rows_ptr[s + 1] - rows_ptr[s]
        cost[s] = (first[s + 1] - first[s]) * float(m) * m
        for t in range(child_ptr[s], child_ptr[s + 1]):
            cost[s] += cost[children[t]]
            members[s] += members[children[t]]
    is_task = parent < 0
    above = np.zeros(count, np.bool_)
    total = 0.0
    for s in range(count):
        if is_task[s]:
            total += cost[s]
    while groups > 1:
        heaviest = -1
        for s in range(count):
            if is_task[s] and (heaviest < 0 or cost[s] > cost[heaviest]):
                heaviest = s
        if heaviest < 0 or cost[heaviest] <= total / (2 * groups) or child_ptr[heaviest + 1] == child_ptr[heaviest]:
            break
        is_task[heaviest] = False
        above[heaviest] = True
        for t in range(child_ptr[heaviest], child_ptr[heaviest + 1]):
            is_task[children[t]] = True
    tasks = np.flatnonzero(is_task)
    tasks = tasks[np.argsort(-cost[tasks])]
    group_of_task = np.empty(tasks.size, np.int64)
    load = np.zeros(groups)
    for i in range(tasks.size):
        g = np.argmin(load)
        group_of_task[i] = g
        load[g] += cost[tasks[i]]
    region = np.full(count, groups, np.int64)
    order = np.empty(count, np.int64)
    group_ptr = np.zeros(groups + 2, np.int64)
    at = 0
    for g in range(groups):
        for i in range(tasks.size):
            if group_of_task[i] == g:
                root = tasks[i]
                for s in range(root - members[root] + 1, root + 1):
                    order[at] = s
                    region[s] = g
                    at += 1
        group_ptr[g + 1] = at
    for s in range(count):
        if above[s]:
            order[at] = s
            at += 1
    group_ptr[groups + 1] = at
    # Each group's stack: a supernode's update goes where its first child's was (the children's
    # of its own group are on top of it, all consumed), or on top.
    stack_offset = np.zeros(count, np.int64)
    stack_ptr = np.zeros(groups + 2, np.int64)
    work_ptr = np.zeros(groups + 2, np.int64)
    for g in range(groups + 1):
        top = 0
        peak = 0
        widest = 0
        for i in range(group_ptr[g], group_ptr[g + 1]):
            s = order[i]
            for t in range(child_ptr[s], child_ptr[s + 1]):
                if region[children[t]] == g:
                    top = stack_offset[children[t]]
                    break
            size = rows_ptr[s + 1] - rows_ptr[s]
            stack_offset[s] = top
            top += size * size
            peak = max(peak, top)
            widest = max(widest, first[s + 1] - first[s] + size)
        for i in range(group_ptr[g], group_ptr[g + 1]):
            stack_offset[order[i]] += stack_ptr[g]
        stack_ptr[g + 1] = stack_ptr[g] + peak
        # (The supernodes above start once every thread is done: their work area is the
        # threads', from 0.)
        work_ptr[g + 1] = work_ptr[g] + widest * widest if g < groups else max(work_ptr[g], widest * widest)
    return order, group_ptr, stack_offset, stack_ptr, work_ptr


@nb.njit(cache=True)
def _blas_arguments():
    """The character flags "L", "R", "T", "N", room for four integers, and the scalars 1, -1."""
    return (np.array([ord("L"), ord("R"), ord("T"), ord("N")], np.uint8), np.zeros(4, np.int32),
            np.array([1.0, -1.0]))


@nb.njit(fastmath={"contract"}, cache=True)
def _factor_small_front(work, m, width):
    """:func:`_factor_front` by loops (right-looking), ``PANEL`` columns at a time: each panel is
    factorised, then its product subtracted from the columns right of it in one pass (a last,
    partial panel column by column, each over the whole front). Returns the column (from 1) whose
    pivot is not positive, or 0.

    The indices are unsigned: numba checks a signed index for wraparound, which keeps LLVM from
    vectorising the loops (fronts of 24-64 rows: 2.3-2.7 GFlop/s with signed indices, 6-9 with
    unsigned ones column by column, 7.5-15 by panels of 4)."""
    um = np.uint64(m)
    k = 0
    while k < width:
        end = min(k + PANEL, width)
        whole = end - k == PANEL
        # A whole panel updates only its own columns here; a partial one updates every column.
        reach = np.uint64(end) if whole else um
        for c in range(np.uint64(k), np.uint64(end)):
            column = c * um
            pivot = work[column + c]
            if not pivot > 0.0:
                return int(c) + 1
            root = np.sqrt(pivot)
            work[column + c] = root
            inverse = 1.0 / root
            for i in range(c + np.uint64(1), um):
                work[column + i] *= inverse
            for j in range(c + np.uint64(1), reach):
                factor = work[column + j]
                target = j * um
                for i in range(j, um):
                    work[target + i] -= work[column + i] * factor
        if whole:
            c0 = np.uint64(k) * um
            c1 = c0 + um
            c2 = c1 + um
            c3 = c2 + um
            for j in range(np.uint64(end), um):
                f0, f1, f2, f3 = work[c0 + j], work[c1 + j], work[c2 + j], work[c3 + j]
                target = j * um
                for i in range(j, um):
                    work[target + i] -= work[c0 + i] * f0 + work[c1 + i] * f1 + work[c2 + i] * f2 + work[c3 + i] * f3
        k = end
    return 0


@nb.njit(cache=True)
def _factor_front(work, m, width, flags, numbers, signs):
    """Factorise the first ``width`` columns of the ``m x m`` front in ``work`` (column-major,
    lower triangle) and subtract their product from the rest (its Schur complement): LAPACK and
    BLAS, or loops for fronts of at most ``SMALL_FRONT`` rows. Returns LAPACK's ``info`` (0, or the
    column whose pivot is not positive), also left in ``numbers[3]``."""
    numbers[0], numbers[1], numbers[2], numbers[3] = width, m, m - width, 0
    if m <= SMALL_FRONT:
        numbers[3] = _factor_small_front(work, m, width)
        return numbers[3]
    lower, right, transpose, plain = address(flags[0:]), address(flags[1:]), address(flags[2:]), address(flags[3:])
    dpotrf(lower, address(numbers[0:]), address(work), address(numbers[1:]), address(numbers[3:]))
    if numbers[3] != 0 or m == width:
        return numbers[3]
    # L21 = F21 L11^-T, then F22 -= L21 L21'.
    dtrsm(right, lower, transpose, plain, address(numbers[2:]), address(numbers[0:]), address(signs[0:]),
          address(work), address(numbers[1:]), address(work[width:]), address(numbers[1:]))
    dsyrk(lower, plain, address(numbers[2:]), address(numbers[0:]), address(signs[1:]), address(work[width:]),
          address(numbers[1:]), address(signs[0:]), address(work[width * m + width:]), address(numbers[1:]))
    return 0


@nb.njit(cache=True)
def _fronts(order, begin, end, indptr, data, perm, first, child_ptr, children, rows_ptr, relative, destination,
            factor_ptr, stack_offset, values, stack, work):
    """Factorise the fronts of supernodes ``order[begin:end]`` (see :func:`_analyse` and
    :func:`_schedule`) into ``values``, in ``work``. Returns -1, or the position of a pivot that
    is not positive."""
    flags, numbers, signs = _blas_arguments()
    for i in range(begin, end):
        s = order[i]
        lo, hi = first[s], first[s + 1]
        width = hi - lo
        size = rows_ptr[s + 1] - rows_ptr[s]
        m = width + size
        front = work[:m * m]
        # front[i * m + j], j >= i, holds entry (j, i) of the front's lower triangle.
        for r in range(m):
            front[r * m + r:(r + 1) * m] = 0.0
        for p in range(lo, hi):
            v = perm[p]
            for t in range(indptr[v], indptr[v + 1]):
                if destination[t] >= 0:
                    front[destination[t]] += data[t]
        for t in range(child_ptr[s], child_ptr[s + 1]):
            # (Unsigned indices, as in _factor_small_front.)
            c = children[t]
            at = np.uint64(rows_ptr[c])
            cs = np.uint64(rows_ptr[c + 1]) - at
            base = np.uint64(stack_offset[c])
            for r in range(cs):
                row = np.uint64(relative[at + r]) * np.uint64(m)
                update = base + r * cs
                for j in range(r, cs):
                    front[row + np.uint64(relative[at + j])] += stack[update + j]
        if _factor_front(front, m, width, flags, numbers, signs) != 0:
            return lo + numbers[3] - 1
        values[factor_ptr[s]:factor_ptr[s + 1]] = front[:width * m]
        base = stack_offset[s]
        for r in range(size):
            stack[base + r * size + r:base + (r + 1) * size] = front[(width + r) * m + width + r:(width + r + 1) * m]
    return -1


@nb.njit(parallel=True, cache=True)
def _fronts_in_parallel(order, group_ptr, indptr, data, perm, first, child_ptr, children, rows_ptr, relative,
                        destination, factor_ptr, stack_offset, values, stack, work, work_ptr):
    """:func:`_fronts` of every group but the last (the supernodes above), one thread each.
    (Called from Python only: see :mod:`resgraph.csr` on numba's cache.)"""
    groups = group_ptr.size - 2
    failed = np.full(groups, -1, np.int64)
    for g in nb.prange(groups):
        failed[g] = _fronts(order, group_ptr[g], group_ptr[g + 1], indptr, data, perm, first, child_ptr, children,
                            rows_ptr, relative, destination, factor_ptr, stack_offset, values, stack,
                            work[work_ptr[g]:work_ptr[g + 1]])
    return failed.max()


@nb.njit(cache=True)
def _forward(order, begin, end, first, rows_ptr, rows, factor_ptr, values, y, slot, spill, collect):
    """Forward substitution ``L y = b`` over the supernodes ``order[begin:end]`` (children
    first), in place in ``y`` (positions in the elimination order); with ``collect``, an update
    to a position with ``slot >= 0`` (one above this thread's subtrees) is collected in
    ``spill[slot]`` instead. (Unsigned indices, as in :func:`_factor_small_front`.)"""
    for i in range(begin, end):
        s = order[i]
        lo, width = np.uint64(first[s]), np.uint64(first[s + 1] - first[s])
        at, size = np.uint64(rows_ptr[s]), np.uint64(rows_ptr[s + 1] - rows_ptr[s])
        m = width + size
        block = np.uint64(factor_ptr[s])
        for j in range(width):
            column = block + j * m
            yj = y[lo + j] / values[column + j]
            y[lo + j] = yj
            for r in range(j + np.uint64(1), width):
                y[lo + r] -= values[column + r] * yj
            for r in range(size):
                q = np.uint64(rows[at + r])
                if not collect or slot[q] < 0:
                    y[q] -= values[column + width + r] * yj
                else:
                    spill[slot[q]] -= values[column + width + r] * yj


@nb.njit(cache=True)
def _backward(order, begin, end, first, rows_ptr, rows, factor_ptr, values, y):
    """Backward substitution ``L' x = y`` over the supernodes ``order[begin:end]``, parents
    first (``order`` read backwards), in place in ``y``."""
    for i in range(end - 1, begin - 1, -1):
        s = order[i]
        lo, width = np.uint64(first[s]), np.uint64(first[s + 1] - first[s])
        at, size = np.uint64(rows_ptr[s]), np.uint64(rows_ptr[s + 1] - rows_ptr[s])
        m = width + size
        block = np.uint64(factor_ptr[s])
        for k in range(width):
            j = width - np.uint64(1) - k
            column = block + j * m
            total = y[lo + j]
            for r in range(j + np.uint64(1), width):
                total -= values[column + r] * y[lo + r]
            for r in range(size):
                total -= values[column + width + r] * y[np.uint64(rows[at + r])]
            y[lo + j] = total / values[column + j]


@nb.njit(parallel=True, cache=True)
def _forward_in_parallel(order, group_ptr, first, rows_ptr, rows, factor_ptr, values, y, slot, spill):
    """:func:`_forward` of every group but the last, one thread each, each collecting its
    updates of the supernodes above in its row of ``spill``. (Called from Python only.)"""
    groups = group_ptr.size - 2
    spill[:] = 0.0
    for g in nb.prange(groups):
        _forward(order, group_ptr[g], group_ptr[g + 1], first, rows_ptr, rows, factor_ptr, values, y, slot, spill[g],
                 True)


@nb.njit(parallel=True, cache=True)
def _backward_in_parallel(order, group_ptr, first, rows_ptr, rows, factor_ptr, values, y):
    """:func:`_backward` of every group but the last, one thread each. (Called from Python only.)"""
    for g in nb.prange(group_ptr.size - 2):
        _backward(order, group_ptr[g], group_ptr[g + 1], first, rows_ptr, rows, factor_ptr, values, y)


@nb.njit(cache=True)
def _reached(indptr, data, old_data, supernode_of, parent, marked):
    """Mark every supernode whose front a changed entry reaches: the supernode of each row with
    an entry differing from ``old_data`` (a matrix of the same pattern), and its ancestors. (An
    entry joining two rows is gathered into the front of the one eliminated first, whose
    ancestors hold the other.) Returns how many are marked."""
    marked[:] = False
    count = 0
    for i in range(indptr.size - 1):
        for t in range(indptr[i], indptr[i + 1]):
            if data[t] != old_data[t]:
                s = supernode_of[i]
                while s >= 0 and not marked[s]:
                    marked[s] = True
                    count += 1
                    s = parent[s]
                break
    return count


_spare: dict[int, np.ndarray] = {}
_spare_lock = threading.Lock()


def _take(length: int) -> np.ndarray:
    """A float64 buffer of ``length`` entries, reusing a spare one (see ``SPARE_MAX``)."""
    with _spare_lock:
        spare = _spare.pop(length, None)
    return np.empty(length) if spare is None else spare


def _keep_spare(buffer: np.ndarray) -> None:
    """Take ``buffer`` back for a later factorisation (the newest first, within ``SPARE_MAX``)."""
    if buffer.size > SPARE_MAX:
        return
    with _spare_lock:
        if sum(b.size for b in _spare.values()) + buffer.size > SPARE_MAX:
            _spare.clear()
        _spare[buffer.size] = buffer


class NotPositiveDefinite(ResgraphError):
    """A pivot of the Cholesky factorisation was not positive (``row``: its row of the matrix)."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row


class DenseFill(ResgraphError):
    """The factor would hold more entries than allowed."""


class Cholesky:
    """``L L'`` factorisation of symmetric positive definite CSR matrices of one sparsity pattern
    (both triangles stored, explicit zeros count as entries). Construction orders and analyses
    the pattern (and tells the factor's size, :attr:`fill`, before any memory is taken for it);
    :meth:`factorise` computes the factor of a matrix with it, :meth:`solve` uses the last one."""

    def __init__(self, matrix: sp.csr_matrix, max_fill: float = np.inf) -> None:
        """Raises :class:`DenseFill` as soon as the analysis finds more than ``max_fill`` factor
        entries per row."""
        self._indptr, self._indices = matrix.indptr, matrix.indices
        n = matrix.shape[0]
        limit = int(min(max_fill * max(n, 1), 2.0**62))
        threads = nb.get_num_threads() if n >= PARALLEL_MIN else 1
        self._perm, self._first, parent, complete = _dissect(matrix.indptr, matrix.indices, limit, threads)
        if complete:
            (self._child_ptr, self._children, self._rows_ptr, self._rows, self._relative, self._destination,
             self._factor_ptr) = _analyse(matrix.indptr, matrix.indices, self._perm, self._first, parent, limit,
                                          threads)
        if not complete or self._factor_ptr[-1] > limit:
            raise DenseFill(f"the factor would hold more than {max_fill:g} entries per row")
        (self._order, self._group_ptr, self._stack_offset, self._stack_ptr,
         self._work_ptr) = _schedule(self._first, parent, self._child_ptr, self._children, self._rows_ptr, threads)
        # Where each supernode's update matrix is kept, when they are (see KEPT_UPDATES_EARLY).
        sizes = np.diff(self._rows_ptr)
        kept_ptr = np.concatenate(([0], np.cumsum(sizes * sizes)))
        self._kept_offset = kept_ptr[:-1] if kept_ptr[-1] <= KEPT_UPDATES_MAX else None
        self._kept_early = kept_ptr[-1] <= KEPT_UPDATES_EARLY
        self._kept_total = kept_ptr[-1]
        if self._kept_offset is not None:
            self._parent = parent
            self._supernode_of = np.empty(n, np.int64)
            self._supernode_of[self._perm] = np.repeat(np.arange(parent.size), np.diff(self._first))
        # The positions of the supernodes above the threads' subtrees, and each one's slot in the
        # threads' rows of ``spill`` (where their forward updates to those wait).
        above = self._order[self._group_ptr[threads]:]
        lengths = self._first[above + 1] - self._first[above]
        self._above = np.repeat(self._first[above] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        self._slot = np.full(n, -1, np.int64)
        self._slot[self._above] = np.arange(self._above.size)
        self._spill = np.empty((threads, self._above.size))
        self._values = self._stack = self._kept = self._work = None      # allocated by factorise()
        self._factorised = False
        self._last_data: np.ndarray | None = None    # the values last factorised, with kept updates
        self._last_valid = False

    def fresh(self) -> "Cholesky":
        """A factorisation of this pattern with memory of its own, sharing this one's (read-only)
        order and analysis."""
        other = copy.copy(self)
        other._values = other._stack = other._kept = other._work = None
        other._spill = np.empty_like(self._spill)
        other._factorised = False
        other._last_data, other._last_valid = None, False
        return other

    @property
    def fill(self) -> float:
        """Entries of the factor (its supernodes' dense blocks) per row."""
        return float(self._factor_ptr[-1]) / max(self._perm.size, 1)

    @property
    def flops(self) -> float:
        """Floating-point operations of a factorisation, from the analysis: per supernode of
        ``w`` columns and ``u`` update rows, ``w^3/3 + w^2 u + w u^2``."""
        w = np.diff(self._first).astype(np.float64)
        u = np.diff(self._rows_ptr).astype(np.float64)
        return float(np.sum(w**3 / 3.0 + w**2 * u + w * u**2))

    @property
    def footprint(self) -> int:
        """Bytes a factorisation takes at most: the factor, the dense work space of the fronts,
        and the update matrices (kept, with the values they were computed from, where they are;
        else their stack). Known before any of it is taken."""
        kept = self._kept_total + self._indices.size if self._kept_offset is not None else 0
        return 8 * int(self._factor_ptr[-1] + self._work_ptr[-1] + max(self._stack_ptr[-1], kept))

    def same_pattern(self, matrix: sp.csr_matrix) -> bool:
        return (matrix.shape[0] == self._perm.size and np.array_equal(matrix.indptr, self._indptr)
                and np.array_equal(matrix.indices, self._indices))

    def factorise(self, matrix: sp.csr_matrix) -> None:
        """Factorise ``matrix``, which has the analysed pattern; raises
        :class:`NotPositiveDefinite` naming the row whose pivot is not positive.

        Where update matrices are kept (``KEPT_UPDATES_EARLY``), only the fronts that the entries
        changed since the last factorisation reach are factorised again (the supernodes of their
        rows and the ancestors of those): the rest of the factor, and the kept update matrices
        their parents gather, still hold. (The polish's second system on the 1e4-node benchmark
        lattice with conducting clamps differs in 20 rows, which reach 41 of 1277 supernodes.)"""
        self._factorised = False
        keep = self._kept_offset is not None and (self._kept_early or self._values is not None)
        if self._values is None:
            self._values = self._own(self._factor_ptr[-1])
            self._work = self._own(self._work_ptr[-1])
        if keep and self._kept is None:
            self._kept, self._stack = self._own(self._kept_total), None
        elif not keep and self._stack is None:
            self._stack = self._own(self._stack_ptr[-1])
        order, group_ptr = self._order, self._group_ptr
        if keep and self._last_valid:
            marked = np.empty(self._parent.size, np.bool_)
            _reached(matrix.indptr, matrix.data, self._last_data, self._supernode_of, self._parent, marked)
            redo = marked[order]
            order, group_ptr = order[redo], np.r_[0, np.cumsum(redo)][group_ptr]
        stack, stack_offset = (self._kept, self._kept_offset) if keep else (self._stack, self._stack_offset)
        common = (matrix.indptr, matrix.data, self._perm, self._first, self._child_ptr, self._children, self._rows_ptr,
                  self._relative, self._destination, self._factor_ptr, stack_offset, self._values, stack)
        self._last_valid = False
        groups = group_ptr.size - 2
        if groups == 1:
            # One thread: every front in turn (the last group, of supernodes above, is empty).
            failed = _fronts(order, 0, group_ptr[-1], *common, self._work)
        else:
            failed = _fronts_in_parallel(order, group_ptr, *common, self._work, self._work_ptr)
            if failed < 0:
                failed = _fronts(order, group_ptr[groups], group_ptr[-1], *common, self._work)
        if failed >= 0:
            row = int(self._perm[failed])
            raise NotPositiveDefinite(f"the matrix is not positive definite: pivot of row {row}", row)
        if keep:
            if self._last_data is None:
                self._last_data = np.empty_like(matrix.data)
            np.copyto(self._last_data, matrix.data)
            self._last_valid = True
        self._factorised = True

    def _own(self, length: int) -> np.ndarray:
        """A buffer for this factorisation, taken back as a spare once it is gone."""
        buffer = _take(length)
        weakref.finalize(self, _keep_spare, buffer)
        return buffer

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``x`` with ``A x = rhs`` for the matrix last factorised. On several threads as the
        factorisation: each thread's subtrees, forward, then the supernodes above, forward and
        backward, then the subtrees again, backward (benchmark lattices, 2 threads, against one:
        1e4 nodes 0.52 -> 0.40 ms, 1e5 11.4 -> 7.2 ms, 1e6 149 -> 94 ms)."""
        if not self._factorised:
            raise ResgraphError("no matrix has been factorised")
        y = np.ascontiguousarray(rhs, np.float64)[self._perm]
        common = (self._first, self._rows_ptr, self._rows, self._factor_ptr, self._values)
        groups = self._group_ptr.size - 2
        begin = self._group_ptr[groups] if groups > 1 else 0       # (one thread: every supernode)
        if groups > 1:
            _forward_in_parallel(self._order, self._group_ptr, *common, y, self._slot, self._spill)
            y[self._above] += self._spill.sum(axis=0)
        _forward(self._order, begin, self._group_ptr[-1], *common, y, self._slot, self._spill[0], False)
        _backward(self._order, begin, self._group_ptr[-1], *common, y)
        if groups > 1:
            _backward_in_parallel(self._order, self._group_ptr, *common, y)
        x = np.empty_like(y)
        x[self._perm] = y
        return x
