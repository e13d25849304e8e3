"""Compilation of a :class:`~resgraph.network.Network` to the arrays the solvers work on.

Voltage sources tie node potentials together: each connected component of voltage sources is one
unknown (``x[var]``) plus a fixed offset per node, ``v[node] = x[node_var[node]] +
node_offset[node]``; the component holding ground is fully fixed (``node_var == -1``,
``v = node_offset``). On the free variables the dissipation is

    E(x) = 1/2 x' Q x - source' x + const,   Q = diag(total_conductance) - coupling,

with ``coupling`` the symmetric, non-negative CSR matrix of conductances between distinct
variables, ``total_conductance`` (siemens) the sum of conductances at each variable, and
``source`` (amperes) the current injected into each variable by current sources and by resistors
to fixed potentials. Diodes become constraints ``x[a] - x[c] <= w`` (volts) where a fixed side is
the virtual variable ``num_free`` with ``x = 0``; those touching one free variable are folded into
``lower_bound``/``upper_bound``, those joining two free variables are *coupled*.

Free variables are numbered colour by colour, so colour ``c`` is the contiguous range
``colour_ptr[c]:colour_ptr[c+1]`` and no resistor or coupled diode joins two of them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba as nb
import numpy as np
import scipy.sparse as sp

from .csr import diagonal_minus, permute_symmetric, stamp_resistors, symmetric_from_edges
from .errors import ColouringError, FloatingNodeError, InfeasibleDiodeError, KirchhoffVoltageError
from .forest import Forest, arcs_at, bfs_depth, bfs_depths, greedy_colouring, potentials_along, spanning_forest

if TYPE_CHECKING:
    from .schur import SchurCholesky
    from .network import Network

#: Relative tolerance for exact-arithmetic checks on source voltages (KVL, diode contradictions).
CONSISTENCY_RTOL = 1e-12
#: A coupling graph whose breadth-first depth exceeds this many times log2(n) is mesh-like.
MESH_DEPTH_FACTOR = 3


@dataclass(frozen=True)
class SweepArrays:
    """Plain arrays for the colour-sweep kernels (all free variables numbered by colour)."""

    indptr: np.ndarray             # coupling CSR row pointers, int64
    indices: np.ndarray            # coupling CSR columns, int64
    coupling: np.ndarray           # conductances between variables, siemens
    total_conductance: np.ndarray  # siemens, > 0
    inverse_total: np.ndarray      # 1 / total_conductance, ohms (a product is cheaper than a division)
    source: np.ndarray             # injected current, amperes
    lower_bound: np.ndarray        # volts (-inf if none)
    upper_bound: np.ndarray        # volts (+inf if none)
    lower_ptr: np.ndarray          # coupled diodes raising a variable: x[k] >= x[lower_var] + lower_offset
    lower_var: np.ndarray
    lower_offset: np.ndarray
    upper_ptr: np.ndarray          # coupled diodes capping a variable: x[k] <= x[upper_var] + upper_offset
    upper_var: np.ndarray
    upper_offset: np.ndarray
    colour_ptr: np.ndarray         # variables of colour c: colour_ptr[c]:colour_ptr[c+1]

    def astype(self, dtype, to_device=np.asarray) -> "SweepArrays":
        """These arrays with the floating ones cast to ``dtype`` and every one moved by
        ``to_device`` (copied only where either changes them: copying them all cost 0.3 ms of a
        1e4-node solve)."""
        fields = {}
        for name, value in self.__dict__.items():
            if value.dtype.kind == "f":
                value = value.astype(dtype, copy=False)
            fields[name] = to_device(value)
        return SweepArrays(**fields)


@dataclass(frozen=True, eq=False)
class CompiledNetwork:
    """Immutable solver form of a network (see the module docstring)."""

    num_nodes: int
    num_free: int
    node_var: np.ndarray            # (num_nodes,) variable of each node, -1 if fixed
    node_offset: np.ndarray         # (num_nodes,) volts
    sweep: SweepArrays
    q_matrix: sp.csr_matrix         # Q = diag(total_conductance) - coupling
    # Every diode as a constraint x[anode_var] - x[cathode_var] <= diode_slack_offset, with
    # num_free for a fixed side; diode_is_constraint False for diodes inside one component.
    diode_anode_var: np.ndarray
    diode_cathode_var: np.ndarray
    diode_offset: np.ndarray
    diode_is_constraint: np.ndarray
    vs_forest: Forest               # spanning forest of voltage sources over nodes (rooted at ground)
    feasible_start: np.ndarray      # a point satisfying every diode constraint
    resistors: tuple[np.ndarray, np.ndarray, np.ndarray]
    diodes: tuple[np.ndarray, np.ndarray]
    voltage_sources: tuple[np.ndarray, np.ndarray, np.ndarray]
    current_sources: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def num_colours(self) -> int:
        return self.sweep.colour_ptr.size - 1

    @functools.cached_property
    def mesh_like(self) -> bool:
        """Whether the variables' coupling graph is mesh-like rather than an expander: a
        breadth-first search from its best-connected variable reaches depth about sqrt(n) on a
        2-D mesh, about log(n) on a random graph. Meshes are slow for coordinate descent and
        Jacobi-CG but factorise well; expanders the other way round."""
        n = self.num_free
        if n < 2:
            return False
        start = int(np.argmax(np.diff(self.sweep.indptr)))
        threshold = MESH_DEPTH_FACTOR * np.log2(n)
        return bfs_depth(self.sweep.indptr, self.sweep.indices, start, beyond=int(threshold)) > threshold

    @functools.cached_property
    def cholesky(self) -> "SchurCholesky | None":
        """The order and analysis of a sparse Cholesky factorisation of ``q_matrix``'s pattern
        (:mod:`resgraph.schur`, :mod:`resgraph.cholesky`), on a mesh-like network that factorises well: at most
        ``linalg.FACTOR_LIMIT`` variables, at most ``linalg.FILL_LIMIT`` factor entries per
        row. None otherwise: the polish then solves by multigrid-preconditioned CG. Computed
        once, on first use, and shared (each polish factorises with :meth:`SchurCholesky.fresh`)."""
        from . import linalg
        from .schur import DenseFill, SchurCholesky

        if not self.mesh_like or self.num_free > linalg.FACTOR_LIMIT:
            return None
        try:
            return SchurCholesky(self.q_matrix, linalg.FILL_LIMIT)
        except DenseFill:
            return None

    def potentials(self, x: np.ndarray) -> np.ndarray:
        """Node potentials (volts, ground 0) from free variables ``x``."""
        x = np.asarray(x, np.float64)
        return np.where(self.node_var >= 0, x[np.maximum(self.node_var, 0)] if x.size else 0.0, 0.0) + self.node_offset

    def variables(self, potentials: np.ndarray) -> np.ndarray:
        """Free variables from node potentials (first node of each variable wins)."""
        potentials = np.asarray(potentials, np.float64)
        x = np.zeros(self.num_free)
        free = np.flatnonzero(self.node_var >= 0)[::-1]
        x[self.node_var[free]] = potentials[free] - self.node_offset[free]
        return x


def _forest_path(forest: Forest, tail: np.ndarray, head: np.ndarray, a: int, b: int) -> list[int]:
    """Edges on the forest path between nodes ``a`` and ``b`` (same tree)."""
    def up(k: int) -> list[int]:
        edges = []
        while forest.parent_edge[k] >= 0:
            e = int(forest.parent_edge[k])
            edges.append(e)
            k = int(head[e] if tail[e] == k else tail[e])
        return edges
    pa, pb = up(a), up(b)
    common = set(pa) & set(pb)
    return [e for e in pa + pb if e not in common]


def _vs_elimination(net: "Network"):
    plus, minus, voltage = net.arrays("voltage_source")
    forest = spanning_forest(net.num_nodes, plus, minus, np.array([0]))
    terminals = np.unique(np.r_[plus, minus])
    if np.any(forest.root[terminals] != forest.root[0]):
        # A floating tree's variable is the potential of its root, the others' offsets from it:
        # rooted at its node of most conductance, the large terms of the variable's KCL carry no
        # offset (a tree of a 1e-4 S node and a 1e8 S one 2.3 V apart, rooted at the first: drive
        # and diagonal terms of 1.6e8 A cancelling to mA, rounding's 3e-8 A kept at the node).
        ra, rb, g = net.arrays("resistor")
        conductance = np.bincount(ra, g, net.num_nodes) + np.bincount(rb, g, net.num_nodes)
        heaviest = terminals[np.argsort(-conductance[terminals], kind="stable")]
        forest = spanning_forest(net.num_nodes, plus, minus, np.r_[0, heaviest])
    offset = potentials_along(forest, plus, minus, voltage, np.zeros(net.num_nodes))
    scale = max(1.0, float(np.max(np.abs(voltage), initial=0.0)))
    mismatch = offset[plus] - offset[minus] - voltage
    bad = np.flatnonzero(np.abs(mismatch) > CONSISTENCY_RTOL * scale * 10)
    if bad.size:
        i = int(bad[0])
        loop = ", ".join(f"#{e}" for e in sorted(_forest_path(forest, plus, minus, int(plus[i]), int(minus[i])) + [i]))
        raise KirchhoffVoltageError(
            f"voltage_source #{i} ({int(plus[i])} -> {int(minus[i])}, {voltage[i]:g} V) closes a loop of "
            f"voltage sources ({loop}) whose voltages do not sum to zero (off by {mismatch[i]:.6g} V): "
            "Kirchhoff's voltage law has no solution")
    # Each tree not rooted at ground is one free variable.
    roots = np.flatnonzero((forest.parent_edge < 0) & (forest.root != forest.root[0]))
    root_var = np.full(net.num_nodes, -1, np.int64)
    root_var[roots] = np.arange(roots.size)
    node_var = root_var[forest.root]
    return forest, offset, node_var, roots.size


def _check_floating(net, num_free, node_var, anchor, coupling):
    """Every free variable needs a resistive path to a fixed potential (``coupling``: the CSR
    arrays of the conductances between free variables)."""
    if num_free == 0:
        return
    floating_var = bfs_depths(coupling[0], coupling[1], np.flatnonzero(anchor > 0)) < 0
    if not floating_var.any():
        return
    node_floats = (node_var >= 0) & floating_var[np.maximum(node_var, 0)]
    a, b, current = net.arrays("current_source")
    driving = np.flatnonzero((node_floats[a] | node_floats[b]) & (current != 0) & (node_var[a] != node_var[b]))
    nodes = np.flatnonzero(node_floats)
    if driving.size:
        i = int(driving[0])
        raise FloatingNodeError(
            f"current_source #{i} ({int(a[i])} -> {int(b[i])}, {current[i]:g} A) drives node "
            f"{int(a[i] if node_floats[a[i]] else b[i])}, which has no resistive path to ground or a "
            "voltage source: the circuit has no steady state")
    raise FloatingNodeError(
        f"node {int(nodes[0])}" + (f" (and {nodes.size - 1} other nodes)" if nodes.size > 1 else "")
        + " has no resistive path to ground or a voltage source, so its potential is undetermined;"
        " connect it through a resistor or remove it")


def _diode_constraints(net, num_free, node_var, offset):
    anode, cathode = net.arrays("diode")[:2]
    a_var = np.where(node_var[anode] >= 0, node_var[anode], num_free)
    c_var = np.where(node_var[cathode] >= 0, node_var[cathode], num_free)
    # x[a] + offset[anode] <= x[c] + offset[cathode]  <=>  x[a] - x[c] <= offset[cathode] - offset[anode]
    w = offset[cathode] - offset[anode]
    internal = a_var == c_var
    vscale = max(1.0, float(np.max(np.abs(offset), initial=0.0)))
    bad = np.flatnonzero(internal & (w < -CONSISTENCY_RTOL * vscale * 10))
    if bad.size:
        i = int(bad[0])
        raise InfeasibleDiodeError(
            f"diode #{i} (anode {int(anode[i])}, cathode {int(cathode[i])}) contradicts the voltage "
            f"sources, which hold its anode {-w[i]:.6g} V above its cathode")
    return a_var, c_var, w, ~internal


def _bounds(num_free, a_var, c_var, w, is_con, anode, cathode):
    lower = np.full(num_free, -np.inf)
    upper = np.full(num_free, np.inf)
    up = is_con & (c_var == num_free)
    lo = is_con & (a_var == num_free)
    np.minimum.at(upper, a_var[up], w[up])
    np.maximum.at(lower, c_var[lo], -w[lo])
    clash = np.flatnonzero(lower > upper)
    if clash.size:
        k = int(clash[0])
        i_lo = int(np.flatnonzero(lo & (c_var == k) & (-w == lower[k]))[0])
        i_up = int(np.flatnonzero(up & (a_var == k) & (w == upper[k]))[0])
        raise InfeasibleDiodeError(
            f"diode #{i_lo} (anode {int(anode[i_lo])}, cathode {int(cathode[i_lo])}) and diode #{i_up} "
            f"(anode {int(anode[i_up])}, cathode {int(cathode[i_up])}) contradict each other: the first "
            f"holds the node at or above {lower[k]:.6g} V, the second at or below {upper[k]:.6g} V")
    return lower, upper


def _feasible_start(num_free, lower, upper, a_var, c_var, w, is_con, anode, cathode):
    """A point satisfying all diode constraints, via difference constraints when diodes are coupled."""
    x = np.clip(np.zeros(num_free), lower, upper)
    coupled = is_con & (a_var < num_free) & (c_var < num_free)
    if not coupled.any() or np.all(x[a_var[coupled]] - x[c_var[coupled]] <= w[coupled]):
        return x
    # x[a] <= x[c] + w is the edge c -> a of weight w; bounds are edges to/from the fixed node F;
    # a source reaching everything at weight 0 (every distance starts at 0): the least path
    # weights satisfy every constraint.
    nodes = np.unique(np.concatenate([a_var[coupled], c_var[coupled]]))
    local = np.full(num_free + 1, -1, np.int64)
    local[nodes] = np.arange(nodes.size)
    f = nodes.size
    tails = [local[c_var[coupled]]]
    heads = [local[a_var[coupled]]]
    weights = [w[coupled]]
    for bound, sign in ((upper, 1.0), (lower, -1.0)):
        finite = np.isfinite(bound[nodes])
        k = np.arange(nodes.size)[finite]
        tails.append(np.full(k.size, f) if sign > 0 else k)
        heads.append(k if sign > 0 else np.full(k.size, f))
        weights.append(sign * bound[nodes][finite])
    dist, bounded = _least_path_weights(f + 1, np.concatenate(tails), np.concatenate(heads), np.concatenate(weights))
    if not bounded:
        idx = np.flatnonzero(coupled)
        raise InfeasibleDiodeError(
            f"the diodes joining free nodes (e.g. diode #{int(idx[0])}, anode {int(anode[idx[0]])}, "
            f"cathode {int(cathode[idx[0]])}; {idx.size} such diodes) form a loop that contradicts the "
            "voltage sources: no potentials satisfy every diode")
    x[nodes] = dist[:-1] - dist[f]
    return x


@nb.njit(cache=True)
def _least_path_weights(num_nodes, tail, head, weight):
    """The least weight of a path into each node from a source joined to every node at weight 0
    (so at most 0), by Bellman-Ford with a queue of the nodes whose distance fell, which stops
    once none does (SciPy's ``bellman_ford`` always runs its V passes over every edge: 10 ms of
    a 1e3-node compile, 0.6 s at 1e4); and False where a loop of negative weight makes them
    unbounded (a node's least path so far has as many arcs as there are nodes: it repeats one)."""
    indptr, out = arcs_at(num_nodes, tail, np.ones(tail.size, np.bool_))
    dist = np.zeros(num_nodes)
    queue = np.arange(num_nodes)                  # (circular: each node in it at most once)
    queued = np.ones(num_nodes, np.bool_)
    arcs = np.zeros(num_nodes, np.int64)          # arcs of each node's least path so far
    front, size = 0, num_nodes
    while size:
        k = queue[front]
        front = (front + 1) % num_nodes
        size -= 1
        queued[k] = False
        for t in range(indptr[k], indptr[k + 1]):
            e = out[t]
            j = head[e]
            if dist[k] + weight[e] < dist[j]:
                dist[j] = dist[k] + weight[e]
                arcs[j] = arcs[k] + 1
                if arcs[j] >= num_nodes:
                    return dist, False
                if not queued[j]:
                    queued[j] = True
                    queue[(front + size) % num_nodes] = j
                    size += 1
    return dist, True


def _colours(num_free, coupling, diode_a, diode_c, net, node_var, roots, colouring):
    """A colour per free variable: first-fit over the graph of resistors (``coupling``, CSR
    arrays) and coupled diodes, or the user's ``colouring`` checked against every element."""
    if colouring is None:
        indptr, indices = coupling[:2]
        if diode_a.size:
            rows = np.repeat(np.arange(num_free), np.diff(indptr))
            once = rows < indices                          # each resistor edge once
            a, b = np.r_[rows[once], diode_a], np.r_[indices[once], diode_c]
            indptr, indices, _ = symmetric_from_edges(num_free, a, b, np.ones(a.size))
        return greedy_colouring(indptr, indices)
    colouring = np.asarray(colouring)
    if colouring.shape != (net.num_nodes,) or not np.issubdtype(colouring.dtype, np.integer) or (colouring < 0).any():
        raise ColouringError(f"colouring must be {net.num_nodes} non-negative integers (one per node), "
                             f"got shape {colouring.shape} and dtype {colouring.dtype}")
    colour = colouring[roots].astype(np.int64)
    for kind in ("resistor", "diode"):
        a, b = net.arrays(kind)[:2]
        va, vb = node_var[a], node_var[b]
        joined = np.flatnonzero((va >= 0) & (vb >= 0) & (va != vb))
        bad = joined[colour[va[joined]] == colour[vb[joined]]]
        if bad.size:
            i = int(bad[0])
            raise ColouringError(
                f"{kind} #{i} ({int(a[i])} -> {int(b[i])}) joins two free nodes of colour "
                f"{int(colour[va[i]])}; coupled nodes must have different colours")
    return colour


def _adjacency_csr(num_free, rows, nbr, value):
    order = np.lexsort((nbr, rows))
    ptr = np.zeros(num_free + 1, np.int64)
    ptr[1:] = np.bincount(rows, minlength=num_free)
    return np.cumsum(ptr), nbr[order].astype(np.int64), value[order].astype(np.float64)


def compile_network(net: "Network", colouring: np.ndarray | None = None) -> CompiledNetwork:
    """Compile ``net`` (see the module docstring); raises a :class:`~resgraph.NetworkError` subclass
    naming the element when the circuit has no unique steady state."""
    vs_forest, offset, node_var, num_free = _vs_elimination(net)
    roots = np.flatnonzero((vs_forest.parent_edge < 0) & (vs_forest.root != vs_forest.root[0]))
    ra, rb, g = net.arrays("resistor")
    # E = 1/2 g (x_a + o_a - x_b - o_b)^2: the drive into x_a is g (o_b - o_a) (+ g v_b if b fixed)
    total, source, anchor, coupling = stamp_resistors(node_var, offset, ra, rb, g, num_free)
    ca, cb, current = net.arrays("current_source")
    for node, sign in ((ca, -1.0), (cb, 1.0)):
        m = node_var[node] >= 0
        source += np.bincount(node_var[node[m]], sign * current[m], num_free)
    _check_floating(net, num_free, node_var, anchor, coupling)

    anode, cathode = net.arrays("diode")[:2]
    a_var, c_var, w, is_con = _diode_constraints(net, num_free, node_var, offset)
    lower, upper = _bounds(num_free, a_var, c_var, w, is_con, anode, cathode)
    start = _feasible_start(num_free, lower, upper, a_var, c_var, w, is_con, anode, cathode)

    coupled = is_con & (a_var < num_free) & (c_var < num_free)
    colour = _colours(num_free, coupling, a_var[coupled], c_var[coupled], net, node_var, roots, colouring)
    # Renumber variables colour by colour.
    perm = np.argsort(colour, kind="stable")               # new -> old
    new_of = np.empty(num_free + 1, np.int64)
    new_of[perm] = np.arange(num_free)
    new_of[num_free] = num_free
    colour_ptr = np.searchsorted(colour[perm], np.arange((colour.max() + 2) if num_free else 1))
    indptr, indices, conductance = permute_symmetric(*coupling, perm, new_of)
    node_var = np.where(node_var >= 0, new_of[np.maximum(node_var, 0)], -1)
    a_var, c_var = new_of[a_var], new_of[c_var]
    ua, uc, uw = a_var[coupled], c_var[coupled], w[coupled]
    upper_ptr, upper_var, upper_offset = _adjacency_csr(num_free, ua, uc, uw)
    lower_ptr, lower_var, lower_offset = _adjacency_csr(num_free, uc, ua, -uw)
    total, source, lower, upper, start = (arr[perm] for arr in (total, source, lower, upper, start))
    sweep = SweepArrays(
        indptr=indptr, indices=indices, coupling=conductance, total_conductance=total,
        inverse_total=1.0 / total, source=source,
        lower_bound=lower, upper_bound=upper, lower_ptr=lower_ptr, lower_var=lower_var,
        lower_offset=lower_offset, upper_ptr=upper_ptr, upper_var=upper_var,
        upper_offset=upper_offset, colour_ptr=colour_ptr.astype(np.int64))
    # Index arrays as SciPy would keep them: 32-bit where every index and count fits.
    index = np.empty(0, np.int32 if indptr[-1] + num_free < 2**31 else np.int64)
    q_indptr, q_indices, q_data = diagonal_minus(indptr, indices, conductance, total, index)
    q = sp.csr_matrix((q_data, q_indices, q_indptr), shape=(num_free, num_free))
    return CompiledNetwork(
        num_nodes=net.num_nodes, num_free=num_free, node_var=node_var, node_offset=offset,
        sweep=sweep, q_matrix=q, diode_anode_var=a_var, diode_cathode_var=c_var,
        diode_offset=w, diode_is_constraint=is_con, vs_forest=vs_forest, feasible_start=start,
        resistors=(ra, rb, g), diodes=(anode, cathode), voltage_sources=net.arrays("voltage_source"),
        current_sources=net.arrays("current_source"))
