"""Spanning forests and the currents they carry.

Voltage sources and conducting diodes both tie potentials together along edges whose currents are
not set by Ohm's law. Given the net current each node must push into those edges (its *excess*),
the currents follow from Kirchhoff's current law on a spanning forest: the current on the edge
above a node equals the total excess of the subtree below it. Edges off the forest carry no
current (for voltage-source loops the split is physically indeterminate; this is the one resgraph
reports).

These are compiled with Numba: they run once per solve over every element.
"""
from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np


class Forest(NamedTuple):
    """A breadth-first spanning forest of an undirected multigraph given by edge lists.

    ``order`` lists the nodes root-first within each tree; ``parent_edge[k]`` is the index of the
    edge joining ``k`` to its parent (``-1`` at a root); ``root[k]`` is the root of ``k``'s tree.
    """

    order: np.ndarray
    parent_edge: np.ndarray
    root: np.ndarray


@nb.njit(cache=True)
def _adjacency(num_nodes, tail, head):
    degree = np.zeros(num_nodes + 1, np.int64)
    for e in range(tail.size):
        degree[tail[e] + 1] += 1
        degree[head[e] + 1] += 1
    indptr = np.cumsum(degree)
    fill = indptr[:-1].copy()
    edges = np.empty(2 * tail.size, np.int64)
    for e in range(tail.size):
        edges[fill[tail[e]]] = e
        fill[tail[e]] += 1
        edges[fill[head[e]]] = e
        fill[head[e]] += 1
    return indptr, edges


@nb.njit(cache=True)
def _bfs_forest(num_nodes, tail, head, first_roots):
    indptr, edges = _adjacency(num_nodes, tail, head)
    order = np.empty(num_nodes, np.int64)
    parent_edge = np.full(num_nodes, -1, np.int64)
    root = np.full(num_nodes, -1, np.int64)
    count = 0
    for phase in range(2):
        limit = first_roots.size if phase == 0 else num_nodes
        for s in range(limit):
            start = first_roots[s] if phase == 0 else s
            if root[start] >= 0:
                continue
            root[start] = start
            order[count] = start
            head_of_queue = count
            count += 1
            while head_of_queue < count:
                k = order[head_of_queue]
                head_of_queue += 1
                for t in range(indptr[k], indptr[k + 1]):
                    e = edges[t]
                    j = head[e] if tail[e] == k else tail[e]
                    if root[j] < 0:
                        root[j] = start
                        parent_edge[j] = e
                        order[count] = j
                        count += 1
    return order, parent_edge, root


@nb.njit(cache=True)
def arcs_at(num_nodes, ends, keep):
    """CSR lists of the arcs ``keep`` at each node, by their ``ends`` (tails: arcs out; heads: in)."""
    ptr = np.zeros(num_nodes + 1, np.int64)
    for e in range(ends.size):
        if keep[e]:
            ptr[ends[e] + 1] += 1
    ptr = np.cumsum(ptr)
    arcs = np.empty(ptr[-1], np.int64)
    fill = ptr[:-1].copy()
    for e in range(ends.size):
        if keep[e]:
            arcs[fill[ends[e]]] = e
            fill[ends[e]] += 1
    return ptr, arcs


@nb.njit(cache=True, inline="always")
def _root(parent, a):
    """Union-find: the root of ``a``, halving the path on the way."""
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@nb.njit(cache=True)
def _kruskal(num_nodes, tail, head, edge_order):
    """Edges of a spanning forest, taken greedily in ``edge_order`` (union-find)."""
    parent = np.arange(num_nodes)
    keep = np.zeros(tail.size, np.bool_)
    for e in edge_order:
        a, b = _root(parent, tail[e]), _root(parent, head[e])
        if a != b:
            parent[a] = b
            keep[e] = True
    return keep


@nb.njit(cache=True)
def components(num_nodes, tail, head, apart):
    """The connected component of each node of a graph given by edge lists, as the number of
    one of its nodes, where node ``apart`` and the edges that touch it are left out (it stays a
    component alone): e.g. the clusters of free variables that diodes join, the fixed potentials
    apart."""
    parent = np.arange(num_nodes)
    for e in range(tail.size):
        if tail[e] != apart and head[e] != apart:
            a, b = _root(parent, tail[e]), _root(parent, head[e])
            if a != b:
                parent[a] = b
    for k in range(num_nodes):
        parent[k] = _root(parent, k)
    return parent


def spanning_forest(num_nodes: int, tail: np.ndarray, head: np.ndarray,
                    first_roots: np.ndarray | None = None, prefer: np.ndarray | None = None) -> Forest:
    """Breadth-first spanning forest over edges ``tail[e] -- head[e]``.

    Trees containing a node of ``first_roots`` are rooted there (the first such node wins).
    Where ``prefer`` (bool per edge) is given, the forest holds as many preferred edges as a
    forest can (chosen before any other edge closes a loop with them).
    """
    roots = np.zeros(0, np.int64) if first_roots is None else np.asarray(first_roots, np.int64)
    tail, head = np.asarray(tail, np.int64), np.asarray(head, np.int64)
    if prefer is None or not np.any(prefer):
        return Forest(*_bfs_forest(num_nodes, tail, head, roots))
    chosen = np.flatnonzero(_kruskal(num_nodes, tail, head, np.argsort(~prefer, kind="stable")))
    order, parent_edge, root = _bfs_forest(num_nodes, tail[chosen], head[chosen], roots)
    return Forest(order, np.where(parent_edge >= 0, chosen[np.maximum(parent_edge, 0)], -1), root)


def forest_of_touched(tail: np.ndarray, head: np.ndarray, fixed: int, prefer: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Forest]:
    """:func:`spanning_forest` over only the nodes the edges touch and ``fixed`` (a node numbered
    above all of them, the first root), renumbered in order: ``(nodes, tail, head, forest)``, the
    nodes' numbers (``fixed`` last) and the edges and forest in their positions there. The same
    forest as over every node, where the others stand alone, at a cost set by the edges (a few
    hundred conducting diodes among 1e4 variables: 96 -> 41 us for their currents)."""
    if tail.size == 0:
        none = np.zeros(0, np.int64)
        alone = Forest(np.zeros(1, np.int64), np.full(1, -1, np.int64), np.zeros(1, np.int64))
        return np.array([fixed]), none, none, alone
    nodes, local = np.unique(np.r_[tail, head, fixed], return_inverse=True)
    local_tail, local_head = local[:tail.size], local[tail.size:2 * tail.size]
    return nodes, local_tail, local_head, spanning_forest(nodes.size, local_tail, local_head, local[-1:], prefer)


@nb.njit(cache=True)
def _offsets(order, parent_edge, tail, head, drop, offset):
    for t in range(order.size):
        k = order[t]
        e = parent_edge[k]
        if e < 0:
            continue
        if head[e] == k:
            offset[k] = offset[tail[e]] - drop[e]
        else:
            offset[k] = offset[head[e]] + drop[e]


def potentials_along(forest: Forest, tail: np.ndarray, head: np.ndarray, drop: np.ndarray,
                     root_potential: np.ndarray) -> np.ndarray:
    """Potentials implied by ``v[tail[e]] - v[head[e]] = drop[e]`` on every forest edge.

    ``root_potential`` gives the value at each root (entries at non-roots are ignored).
    """
    offset = np.where(forest.parent_edge < 0, root_potential, 0.0).astype(np.float64)
    _offsets(forest.order, forest.parent_edge, np.asarray(tail, np.int64),
             np.asarray(head, np.int64), np.asarray(drop, np.float64), offset)
    return offset


@nb.njit(cache=True)
def _flows(order, parent_edge, tail, head, excess, flow):
    subtotal = excess.copy()
    for t in range(order.size - 1, -1, -1):
        k = order[t]
        e = parent_edge[k]
        if e < 0:
            continue
        parent = head[e] if tail[e] == k else tail[e]
        flow[e] = subtotal[k] if tail[e] == k else -subtotal[k]
        subtotal[parent] += subtotal[k]
    return subtotal


def tree_flows(forest: Forest, tail: np.ndarray, head: np.ndarray, excess: np.ndarray,
               num_edges: int) -> tuple[np.ndarray, np.ndarray]:
    """Currents on forest edges that carry each node's ``excess`` towards its root.

    ``excess[k]`` (amperes) is the current node ``k`` must push into the forest's edges. Returns
    ``(flow, leftover)``: ``flow[e]`` is the current through edge ``e`` from ``tail[e]`` to
    ``head[e]`` (zero off the forest); ``leftover[root]`` is the total excess of that root's tree
    (what the root must absorb; its KCL residual when the root is not a fixed potential).
    """
    flow = np.zeros(num_edges, np.float64)
    subtotal = _flows(forest.order, forest.parent_edge, np.asarray(tail, np.int64),
                      np.asarray(head, np.int64), np.asarray(excess, np.float64), flow)
    leftover = np.where(forest.parent_edge < 0, subtotal, 0.0)
    return flow, leftover


@nb.njit(cache=True)
def _greedy_colouring(indptr, indices):
    n = indptr.size - 1
    colour = np.full(n, -1, np.int64)
    mark = np.full(n + 1, -1, np.int64)
    for k in range(n):
        for t in range(indptr[k], indptr[k + 1]):
            c = colour[indices[t]]
            if c >= 0:
                mark[c] = k
        c = 0
        while mark[c] == k:
            c += 1
        colour[k] = c
    return colour


def greedy_colouring(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """First-fit colouring of a symmetric CSR graph in node order (2 colours on a lattice).

    networkx's ``greedy_color`` does the same in pure Python, far too slowly for 1e6 nodes.
    """
    return _greedy_colouring(np.asarray(indptr, np.int64), np.asarray(indices, np.int64))


@nb.njit(cache=True)
def _bfs_depths(indptr, indices, starts, beyond):
    """Hops from the nearest of ``starts`` (-1 where unreachable); stops as soon as a node is
    more than ``beyond`` hops away (the rest then -1). Unsigned indices, as in the Cholesky's
    loops."""
    n = indptr.size - 1
    depth = np.full(n, -1, np.int64)
    queue = np.empty(n, np.int64)
    tail = 0
    for s in starts:
        if depth[s] < 0:
            depth[s] = 0
            queue[tail] = s
            tail += 1
    head = 0
    while head < tail:
        k = queue[head]
        head += 1
        for t in range(np.uint64(indptr[k]), np.uint64(indptr[k + 1])):
            j = np.uint64(indices[t])
            if depth[j] < 0:
                depth[j] = depth[k] + 1
                if depth[j] > beyond:
                    return depth
                queue[tail] = j
                tail += 1
    return depth


def bfs_depths(indptr: np.ndarray, indices: np.ndarray, starts: np.ndarray, beyond: int | None = None) -> np.ndarray:
    """Hops from the nearest of ``starts`` to every node of a CSR graph (-1 where unreachable);
    with ``beyond``, the search stops at the first node more than that many hops away."""
    limit = np.iinfo(np.int64).max if beyond is None else int(beyond)
    return _bfs_depths(np.asarray(indptr, np.int64), np.asarray(indices, np.int64),
                       np.asarray(starts, np.int64), limit)


def bfs_depth(indptr: np.ndarray, indices: np.ndarray, start: int = 0, beyond: int | None = None) -> int:
    """Depth of a breadth-first search of a CSR graph from ``start`` (within its component):
    about sqrt(n) on a 2-D mesh, about log(n) on a random (expander) graph. With ``beyond``,
    the search stops at the first node deeper than that, whose depth it returns (a 1e4-node
    lattice is known to be deeper than 40 after a tenth of it)."""
    return int(bfs_depths(indptr, indices, np.array([start]), beyond).max())
