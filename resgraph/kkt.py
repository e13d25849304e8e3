"""Diode currents and the KKT certificate of a steady state.

At the optimum of the QP (see :mod:`resgraph.compiled`) with diode currents ``lam >= 0``
(amperes, anode -> cathode) the Karush-Kuhn-Tucker conditions are Kirchhoff's laws:

* KCL at every free variable: the current leaving through resistors and current sources,
  ``r = Q x - source``, plus the diode currents leaving, is zero;
* feasibility: ``x[a] - x[c] <= w`` for every diode (volts);
* dual feasibility: ``lam >= 0``;
* complementarity: a diode carrying current has zero voltage across it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from .circulation import least_negative_flow
from .compiled import CompiledNetwork
from .csr import row_products
from .forest import _flows, arcs_at, components, forest_of_touched, tree_flows

#: Rounding allowance of a variable's KCL imbalance, in units of ``eps`` (float64) times the sum
#: of the magnitudes of its terms (see :class:`KKTReport`).
ROUNDING_ULPS = 64.0
EPS = float(np.finfo(np.float64).eps)
#: The same allowance as a fraction of those magnitudes.
ROUNDING_ALLOWANCE = ROUNDING_ULPS * EPS


@dataclass(frozen=True)
class KKTReport:
    """Violations of the optimality conditions, absolute (A or V) and scaled.

    ``current_scale`` (A) is the largest current through a resistor, current source or diode
    (:func:`current_scale`): it depends on potential differences only, so shifting every
    potential by one amount (a circuit floating at 1 kV) leaves it unchanged. ``voltage_scale``
    (V) is the largest potential. Both are at least 1, so for circuits driven by about 1 V / 1 A
    the scaled and absolute figures coincide.

    ``kcl`` is the largest imbalance as computed; ``kcl_excess`` is the largest part of one that
    rounding cannot explain: an imbalance computed from potentials stored to ``eps`` relative
    error can be off by ``eps`` times the sum of the magnitudes of its terms (injected current
    plus conductance times |potential| for the variable and each neighbour), which at large
    potentials or conductances spanning many decades exceeds any tolerance relative to the
    branch currents. ``ROUNDING_ULPS`` such units are allowed per variable; ``scaled`` counts
    the rest. A diode current balancing KCL carries the excess of the variables behind it (see
    :func:`diode_currents`), rounding included: in a cluster of free variables joined by diodes
    that carry current or are at zero voltage (:func:`carrying`), every variable and every such
    diode's sign are allowed ``ROUNDING_ULPS`` units of the terms of the whole cluster (where the
    cluster has no fixed potential, its whole imbalance lands on one of its variables).

    ``drift`` is that excess in volts: divided by the total conductance of the variable's
    cluster, it is how far the cluster's potential is from where its KCL would put it. Scaled by
    ``voltage_scale`` it counts too: a weakly tied node's imbalance is tiny against the circuit's
    largest current while its potential is far off (16 decades: 6.4 mA against 1.3e8 A, scaled
    5e-11, with 9.6 mS to it: 0.66 V of 679 V).
    """

    kcl: float               # amperes: worst Kirchhoff current-law violation at a free node
    kcl_excess: float        # amperes: the worst violation beyond its rounding allowance
    feasibility: float       # volts: worst reverse-bias violation of a diode
    dual: float              # amperes: most negative diode current, beyond its rounding allowance
    complementarity: float   # worst min(current, voltage) over diodes, in their own units
    current_scale: float
    voltage_scale: float
    scaled: float            # max of the above and of ``drift``, each divided by its scale
    drift: float             # volts: worst KCL excess over its cluster's conductance (see above)

    @property
    def residual(self) -> float:
        """Largest absolute violation (amperes or volts)."""
        return max(self.kcl, self.feasibility, self.dual, self.complementarity)


def constraint_slack(c: CompiledNetwork, x: np.ndarray) -> np.ndarray:
    """Per diode, ``w - (x[a] - x[c])`` in volts (>= 0 when the diode is not reverse-violated)."""
    xf = np.append(x, 0.0)
    return c.diode_offset - (xf[c.diode_anode_var] - xf[c.diode_cathode_var])


def diode_currents(c: CompiledNetwork, x: np.ndarray, active: np.ndarray, touched_forest: tuple | None = None,
                   rounding: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Diode currents that balance KCL, carried by the ``active`` (conducting) diodes only.

    The active diodes are spanned by a forest rooted at the fixed potentials; each tree's
    currents follow from the excess of its nodes. Where active diodes close loops the split is
    not unique: the current around each loop is chosen (a min-cost flow,
    :mod:`resgraph.circulation`) to make the total negative current as small as possible, so a
    valid split is found whenever one exists. Inactive diodes carry zero. ``touched_forest``:
    :func:`forest_of_touched`'s result for the active diodes, where the caller has it (the
    polish's solve). With ``rounding``, returns ``(currents, rounding)``, the second per diode as
    :func:`current_rounding` gives it.
    """
    lam = np.zeros(c.diode_offset.size)
    idx = np.flatnonzero(active & c.diode_is_constraint)
    if idx.size == 0:
        return (lam, np.zeros_like(lam)) if rounding else lam
    nodes, tail, head, forest = touched_forest = _touched(c, idx, touched_forest)
    products, magnitude = _row_terms(c, nodes, x)
    excess = np.append(c.sweep.source[nodes[:-1]] - products, 0.0)
    flow, _ = tree_flows(forest, tail, head, excess, idx.size)
    closes_loops = np.count_nonzero(forest.parent_edge >= 0) < idx.size
    if closes_loops and np.any(flow < 0):
        flow = _balance_loops(forest.order.size, tail, head, flow)
    lam[idx] = flow
    if not rounding:
        return lam
    return lam, _cluster_rounding(c, idx, touched_forest, magnitude)[0]


def current_rounding(c: CompiledNetwork, x: np.ndarray, carrying: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How far rounding reaches into the currents of the ``carrying`` diodes (see
    :class:`KKTReport`): ``(per diode, per free variable)``, amperes, ``ROUNDING_ALLOWANCE`` times
    the magnitudes of the KCL terms of the cluster of free variables the carrying diodes join
    (zero for other diodes and for variables in no cluster); and third, per free variable, the
    total conductance (siemens) of its cluster (a variable in none: its own)."""
    idx = np.flatnonzero(carrying & c.diode_is_constraint)
    conductance = c.sweep.total_conductance
    if idx.size == 0:
        return np.zeros(c.diode_offset.size), np.zeros(c.num_free), conductance
    touched_forest = _touched(c, idx, None)
    nodes = touched_forest[0]
    per_diode, per_variable, cluster = _cluster_rounding(c, idx, touched_forest, _row_terms(c, nodes, x)[1])
    conductance = conductance.copy()
    conductance[nodes[:-1]] = np.bincount(cluster, np.append(conductance[nodes[:-1]], 0.0), nodes.size)[cluster[:-1]]
    return per_diode, per_variable, conductance


def _touched(c: CompiledNetwork, idx: np.ndarray, touched_forest: tuple | None) -> tuple:
    """The forest of the diodes ``idx`` over only the variables they touch and the fixed
    potentials (``num_free``, last), unless the caller has it."""
    if touched_forest is None:
        touched_forest = forest_of_touched(c.diode_anode_var[idx], c.diode_cathode_var[idx], c.num_free)
    return touched_forest


def _row_terms(c: CompiledNetwork, nodes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Q x)`` and the magnitudes of the KCL terms (injected current included) in the rows of
    the touched variables ``nodes[:-1]`` (the last is the fixed potentials)."""
    q, variables = c.q_matrix, nodes[:-1]
    products, magnitude = row_products(q.indptr, q.indices, q.data, variables, x)
    return products, magnitude + np.abs(c.sweep.source[variables])


def _cluster_rounding(c, idx, touched_forest, magnitude):
    """:func:`current_rounding`'s two allowances of the diodes ``idx`` from the variables they
    touch (numbered as in ``touched_forest``, the fixed potentials last) and those variables'
    terms, and the cluster of each touched variable (one of its members' numbers): clusters are
    the components of the diodes between free variables (any current between a cluster and the
    fixed potentials passes through its variables only)."""
    nodes, tail, head, _ = touched_forest
    fixed = nodes.size - 1
    cluster = components(nodes.size, tail, head, fixed)
    reach = ROUNDING_ALLOWANCE * np.bincount(cluster, np.append(magnitude, 0.0), nodes.size)[cluster]
    per_diode = np.zeros(c.diode_offset.size)
    per_diode[idx] = reach[np.where(tail != fixed, tail, head)]
    per_variable = np.zeros(c.num_free)
    per_variable[nodes[:-1]] = reach[:-1]
    return per_diode, per_variable, cluster


def _balance_loops(num_nodes, tail, head, flow):
    """Add circulation around loops of active diodes to minimise the total negative current.

    Every diode of a strongly connected component of the active diodes (anode -> cathode) lies
    on a directed loop of them, around which positive circulation raises its current and no
    other's: only the diodes between components can stay negative. So the least negative split
    (:mod:`resgraph.circulation`) is sought on the graph of the components alone, and the
    currents within each are then rerouted to balance its nodes and made non-negative
    (:func:`_within_components`). (Dense-diode circuits, 1e3-2.3e3 nodes: 520 loops on average,
    180 between components.)"""
    from scipy.sparse.csgraph import connected_components
    import scipy.sparse as sp

    arcs = sp.csr_matrix((np.ones(tail.size), (tail, head)), shape=(num_nodes, num_nodes))
    count, component = connected_components(arcs, directed=True, connection="strong")
    between = np.flatnonzero(component[tail] != component[head])
    balanced = flow.copy()
    if between.size and np.any(flow[between] < 0):
        split = least_negative_flow(count, component[tail[between]], component[head[between]], flow[between])
        # Where a current changed by no more than rounding's reach (the split recomputes every
        # current between components), it keeps its value: rerouting that noise through weakly
        # tied nodes drifted them (16 decades: 2e-9 A at a node tied by 5e-5 S, 4.6e-5 V).
        moved = np.abs(split - flow[between]) > ROUNDING_ALLOWANCE * float(np.max(np.abs(flow[between])))
        balanced[between[moved]] = split[moved]
    if between.size < tail.size:
        # The change of the currents between components unbalances the nodes where they enter
        # and leave one: the currents within it carry the difference.
        shift = balanced - flow
        unbalance = np.bincount(tail, shift, num_nodes) - np.bincount(head, shift, num_nodes)
        _within_components(num_nodes, tail, head, component, balanced, -unbalance)
    return balanced


@nb.njit(cache=True)
def _search(start, ptr, arcs, far, reached, parent, order, count):
    """Breadth-first from ``start`` along the arcs listed at each node (``ptr``, ``arcs``) to
    their ``far`` ends: each node reached gets the arc it was reached by (``parent``) and its
    place in ``order`` (after ``count`` places taken). Returns the places taken."""
    reached[start] = True
    order[count] = start
    front = count
    count += 1
    while front < count:
        k = order[front]
        front += 1
        for t in range(ptr[k], ptr[k + 1]):
            e = arcs[t]
            j = far[e]
            if not reached[j]:
                reached[j] = True
                parent[j] = e
                order[count] = j
                count += 1
    return count


@nb.njit(cache=True)
def _within_components(num_nodes, tail, head, component, flow, extra):
    """Reroute and raise, in place, the currents ``flow`` of the arcs ``tail -> head`` within
    each strongly connected ``component``: first each node's ``extra`` outflow (amperes; summing
    to zero over a component) is carried to a root of its component along a tree of arcs that
    reach it; then every arc still negative is raised to zero by circulation around a directed
    loop through it (that tree from its head to the root, and a tree of arcs from the root back
    to its tail), which raises every other arc it passes."""
    inside = np.empty(tail.size, np.bool_)
    for e in range(tail.size):
        inside[e] = component[tail[e]] == component[head[e]]
    out_ptr, out_arcs = arcs_at(num_nodes, tail, inside)
    in_ptr, in_arcs = arcs_at(num_nodes, head, inside)
    # Per component, from its first node: ``to_root[k]``, an arc from k one step nearer the root
    # (a search along arcs backwards); ``from_root[k]``, an arc into k from one step nearer.
    to_root = np.full(num_nodes, -1, np.int64)
    from_root = np.full(num_nodes, -1, np.int64)
    to_order = np.empty(num_nodes, np.int64)
    from_order = np.empty(num_nodes, np.int64)
    reached_to = np.zeros(num_nodes, np.bool_)
    reached_from = np.zeros(num_nodes, np.bool_)
    count_to = count_from = 0
    for start in range(num_nodes):
        if not reached_to[start]:
            count_to = _search(start, in_ptr, in_arcs, tail, reached_to, to_root, to_order, count_to)
            count_from = _search(start, out_ptr, out_arcs, head, reached_from, from_root, from_order, count_from)
    # Each node's extra outflow, carried to the root along the first tree (the arc above a node
    # takes its subtree's: the forest's tree flows).
    moved = np.zeros(tail.size)
    _flows(to_order, to_root, tail, head, extra, moved)
    flow += moved
    # Arcs still negative: their deficit goes round head -> root (the first tree) -> tail (the
    # second, whose arcs point away from the root: a demand there is a negative excess).
    up = np.zeros(num_nodes)
    down = np.zeros(num_nodes)
    for e in range(tail.size):
        if inside[e] and flow[e] < 0.0:
            up[head[e]] -= flow[e]
            down[tail[e]] += flow[e]
            flow[e] = 0.0
    moved[:] = 0.0
    _flows(to_order, to_root, tail, head, up, moved)
    flow += moved
    moved[:] = 0.0
    _flows(from_order, from_root, tail, head, down, moved)
    flow += moved


def current_scale(c: CompiledNetwork, x: np.ndarray, lam: np.ndarray | None = None) -> float:
    """The largest current (A) through a resistor or current source at potentials ``x`` (the
    free variables), or through a diode (``lam``, when given), at least 1 A: the scale of
    :class:`KKTReport`'s currents."""
    ra, rb, g = c.resistors
    largest = max(1.0, _largest_branch_current(ra, rb, g, c.node_var, c.node_offset, np.asarray(x, np.float64)),
                  float(np.max(np.abs(c.current_sources[2]), initial=0.0)))
    if lam is not None:
        largest = max(largest, float(np.max(np.abs(lam[c.diode_is_constraint]), initial=0.0)))
    return largest


@nb.njit(parallel=True, cache=True)
def _largest_branch_current(a, b, conductance, node_var, node_offset, x):
    largest = 0.0
    for e in nb.prange(a.size):
        va, vb = node_var[a[e]], node_var[b[e]]
        pa = (x[va] if va >= 0 else 0.0) + node_offset[a[e]]
        pb = (x[vb] if vb >= 0 else 0.0) + node_offset[b[e]]
        largest = max(largest, abs(conductance[e] * (pa - pb)))
    return largest


def kkt_report(c: CompiledNetwork, x: np.ndarray, lam: np.ndarray) -> KKTReport:
    """Measure how far ``(x, lam)`` is from satisfying the KKT conditions."""
    q = c.q_matrix
    x, lam = np.asarray(x, np.float64), np.asarray(lam, np.float64)
    return KKTReport(*_report_terms(q.indptr, q.indices, q.data, c.sweep.source, x, c.diode_anode_var,
                                    c.diode_cathode_var, c.diode_offset, c.diode_is_constraint, lam,
                                    *current_rounding(c, x, carrying(c, x, lam)), c.node_var, c.node_offset,
                                    current_scale(c, x, lam)))


def carrying(c: CompiledNetwork, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """The diodes that carry current or may: those with a current (``lam``, amperes) other than
    zero, and those at zero voltage to the rounding of their potentials (a current computed as
    exactly zero there can be rounding's too)."""
    xf = np.append(x, 0.0)
    a, k, w = xf[c.diode_anode_var], xf[c.diode_cathode_var], c.diode_offset
    at_zero = w - (a - k) <= ROUNDING_ALLOWANCE * (np.abs(a) + np.abs(k) + np.abs(w))
    return c.diode_is_constraint & ((lam != 0) | at_zero)


@nb.njit(parallel=True, cache=True)
def _report_terms(indptr, indices, data, source, x, anode_var, cathode_var, offset, is_constraint, lam,
                  rounding, reach, conductance, node_var, node_offset, current_scale):
    """:class:`KKTReport`'s fields in one pass over the diodes, one over the rows of ``Q`` and one
    over the nodes (NumPy's two dozen passes took 0.33 ms of a 1e4-node solve). ``x`` holds the
    free variables (the index ``x.size`` stands for a fixed potential), ``lam`` the diode
    currents; ``rounding`` and ``reach``: the allowances of :func:`current_rounding`; ``conductance``:
    the clusters' conductances, its third; ``source``: the
    current injected into each free variable; ``current_scale``: see :func:`current_scale`."""
    n = x.size
    leaving = np.zeros(n + 1)         # diode current leaving each variable (A)
    slack = np.zeros(lam.size)        # volts, as constraint_slack
    feasibility = dual = complementarity = 0.0
    for d in range(lam.size):
        if not is_constraint[d]:
            continue
        a, k = anode_var[d], cathode_var[d]
        leaving[a] += lam[d]
        leaving[k] -= lam[d]
        slack[d] = offset[d] - ((x[a] if a < n else 0.0) - (x[k] if k < n else 0.0))
        feasibility = max(feasibility, -slack[d])
        dual = max(dual, -lam[d] - rounding[d])
        complementarity = max(complementarity, min(max(lam[d], 0.0), max(slack[d], 0.0)))
    kcl = excess = drift = 0.0
    for i in nb.prange(n):
        imbalance = leaving[i] - source[i]           # Q x - source + diode currents leaving
        magnitude = abs(source[i])                   # the terms' magnitudes: rounding's reach
        for t in range(np.uint64(indptr[i]), np.uint64(indptr[i + 1])):
            term = data[t] * x[np.uint64(indices[t])]
            imbalance += term
            magnitude += abs(term)
        kcl = max(kcl, abs(imbalance))
        beyond = abs(imbalance) - max(ROUNDING_ALLOWANCE * magnitude, reach[i])
        excess = max(excess, beyond)
        drift = max(drift, beyond / conductance[i])
    voltage_scale = 1.0
    for node in nb.prange(node_var.size):
        var = node_var[node]
        voltage_scale = max(voltage_scale, abs((x[var] if var >= 0 else 0.0) + node_offset[node]))
    scaled = max(excess / current_scale, drift / voltage_scale, feasibility / voltage_scale, dual / current_scale)
    for d in range(lam.size):
        if is_constraint[d]:
            scaled = max(scaled, min(max(lam[d], 0.0) / current_scale, max(slack[d], 0.0) / voltage_scale))
    return kcl, excess, feasibility, dual, complementarity, current_scale, voltage_scale, scaled, drift
