"""Clusters of variables tied by edges held at fixed voltages, and their linear systems.

Conducting diodes (the polish's active set, or those the interior-point method finds conducting
strongly) hold their ends at fixed voltages, so the variables they join move together: each
cluster is one unknown. A spanning forest of the edges (rooted at the fixed potentials) sets
each member's offset from its root; clusters tied to a fixed potential are fixed. Each unknown is
stored in the row of its cluster's root variable; rows of fixed variables and of non-root
members are identity rows, so every system over a network has the same size and layout (a
solver can reuse its preconditioner). Edges off the forest close loops: their voltages follow
from the forest's.

Sign convention: edge ``e`` holds ``x[tail[e]] - x[head[e]] = drop[e]`` (volts); variable
number ``n`` (the number of variables) stands for the fixed potentials.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .csr import clamp_rows, cluster_drive, contract, row_products
from .forest import forest_of_touched, potentials_along, tree_flows


class Clusters:
    """The clusters of ``n`` variables joined by edges ``tail[e] -- head[e]``; the forest holds
    as many ``prefer``-red edges as a forest can."""

    def __init__(self, tail: np.ndarray, head: np.ndarray, n: int, prefer: np.ndarray | None = None) -> None:
        #: :func:`resgraph.forest.forest_of_touched`'s ``(nodes, tail, head, forest)``.
        self.touched_forest = forest_of_touched(tail, head, n, prefer)
        nodes, _, _, forest = self.touched_forest
        touched, touched_root = nodes[:-1], nodes[forest.root[:-1]]
        self.touched = touched
        #: Per variable, the variable whose row holds its cluster (``n``: a fixed cluster).
        self.root = np.arange(n)
        self.root[touched] = touched_root
        self.free = self.root != n
        #: Per variable, whether its row holds a cluster's unknown.
        self.unknown = np.zeros(n, bool)
        self.unknown[self.root[self.free]] = True
        self._merged = bool(np.any((touched_root != touched) & (touched_root != n)))

    def offsets(self, drop: np.ndarray) -> np.ndarray:
        """Each variable's potential relative to its cluster's root (a fixed cluster's: to the
        fixed potentials, 0 V) with every forest edge at its ``drop`` (volts)."""
        nodes, tail, head, forest = self.touched_forest
        base = np.zeros(self.root.size)
        base[self.touched] = potentials_along(forest, tail, head, drop, np.zeros(nodes.size))[:-1]
        return base

    def matrix(self, a: sp.csr_matrix) -> sp.csr_matrix:
        """``P' A P`` in the rows of the clusters' roots, identity in every other row; the object
        ``A`` itself where no variable is fixed or merged."""
        n = self.root.size
        if not self._merged and self.unknown.all():
            return a
        if not self._merged:
            # No two free variables merged: keep A's structure, zero what touches fixed variables.
            data = clamp_rows(a.indptr, a.indices, a.data, self.unknown)
            return sp.csr_matrix((data, a.indices, a.indptr), shape=(n, n))
        indptr, indices, data = contract(a.indptr, a.indices, a.data, np.where(self.root == n, -1, self.root), n,
                                         ~self.unknown)
        return sp.csr_matrix((data, indices, indptr), shape=(n, n))

    def drive(self, a: sp.csr_matrix, source: np.ndarray, base: np.ndarray) -> np.ndarray:
        """The right-hand side for :meth:`matrix`: ``P' (source - A base)`` (amperes)."""
        return cluster_drive(a.indptr, a.indices, a.data, source, self.root, self.touched, base)

    def start(self, x: np.ndarray, base: np.ndarray) -> np.ndarray:
        """The unknowns for potentials ``x`` (volts) near clusters offset by ``base``."""
        return np.where(self.unknown, x - base, 0.0)

    def potentials(self, y: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Every variable's potential (volts) from the clusters' unknowns ``y``."""
        n = self.root.size
        return np.where(self.free, y[np.minimum(self.root, n - 1)], 0.0) + base

    def flows(self, a: sp.csr_matrix, source: np.ndarray, x: np.ndarray, count: int) -> np.ndarray:
        """Currents (amperes, tail to head) on the forest's edges (of ``count``; zero off it)
        that balance KCL at potentials ``x``: each variable the edges touch pushes
        ``(source - A x)`` into them, carried to its cluster's root (only those rows of ``A x``
        are formed)."""
        nodes, tail, head, forest = self.touched_forest
        touched = self.touched
        excess = source[touched] - row_products(a.indptr, a.indices, a.data, touched, x)[0]
        return tree_flows(forest, tail, head, np.append(excess, 0.0), count)[0]
