"""Shared test helpers: random circuits and an independent check of Kirchhoff's laws."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

import resgraph as rg


def random_network(rng: np.random.Generator, num_nodes: int, extra_resistors: int = 0,
                   num_diodes: int = 0, num_vs: int = 0, num_cs: int = 0,
                   floating_vs: bool = True) -> rg.Network:
    """A random valid circuit: a resistive spanning tree keeps every node tied to ground."""
    net = rg.Network(num_nodes)
    order = rng.permutation(np.arange(1, num_nodes))
    attached = [0]
    for node in order:
        net.add_resistor(int(node), int(rng.choice(attached)), float(rng.uniform(0.1, 10)))
        attached.append(int(node))
    for _ in range(extra_resistors):
        a, b = rng.choice(num_nodes, 2, replace=False)
        net.add_resistor(int(a), int(b), float(rng.uniform(0.1, 10)))
    # voltage sources as a forest (no loops), some of them floating
    parent = list(range(num_nodes))

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k
    for _ in range(num_vs):
        a, b = (int(t) for t in rng.choice(num_nodes if floating_vs else num_nodes, 2, replace=False))
        if find(a) != find(b):
            parent[find(a)] = find(b)
            net.add_voltage_source(a, b, float(rng.uniform(-2, 2)))
    for _ in range(num_diodes):
        a, b = (int(t) for t in rng.choice(num_nodes, 2, replace=False))
        net.add_diode(a, b)
    for _ in range(num_cs):
        a, b = (int(t) for t in rng.choice(num_nodes, 2, replace=False))
        net.add_current_source(a, b, float(rng.uniform(-1, 1)))
    return net



def dense_diode_network(rng: np.random.Generator, num_nodes: int, decades: float) -> rg.Network:
    """A random circuit thick with diodes: a resistive spanning tree (conductances log-uniform over
    ``decades``) and up to ``num_nodes`` more resistors, up to four diodes per node between random
    pairs (antiparallel pairs, loops), up to three voltage sources (some at 0 V, some closing
    loops: possibly invalid) and up to three current sources of 1 mA to 1 kA."""
    net = rg.Network(num_nodes)
    attached = [0]
    for node in rng.permutation(np.arange(1, num_nodes)):
        net.add_resistor(int(node), int(rng.choice(attached)), float(10 ** rng.uniform(-decades / 2, decades / 2)))
        attached.append(int(node))
    for _ in range(int(rng.integers(0, num_nodes))):
        a, b = rng.choice(num_nodes, 2, replace=False)
        net.add_resistor(int(a), int(b), float(10 ** rng.uniform(-decades / 2, decades / 2)))
    for _ in range(int(rng.integers(0, 4 * num_nodes + 1))):
        a, b = rng.choice(num_nodes, 2, replace=False)
        net.add_diode(int(a), int(b))
    for _ in range(int(rng.integers(0, 4))):
        a, b = rng.choice(num_nodes, 2, replace=False)
        net.add_voltage_source(int(a), int(b), float(rng.choice([0.0, rng.uniform(-3, 3)])))
    for _ in range(int(rng.integers(0, 4))):
        a, b = rng.choice(num_nodes, 2, replace=False)
        net.add_current_source(int(a), int(b), float(rng.uniform(-1, 1) * 10 ** rng.uniform(-3, 3)))
    return net

#: Rounding allowance of a node's KCL imbalance (and of a diode's negative current), in ulps of
#: the magnitudes of the terms of its cluster (see :func:`check_kirchhoff`): as many as the
#: certificate allows (:data:`resgraph.kkt.ROUNDING_ULPS`), which counts only the terms a current
#: carries, not the whole cluster's.
KCL_ROUNDING_ULPS = 64.0


def check_kirchhoff(net: rg.Network, sol: rg.Solution, rtol: float = 1e-8) -> None:
    """Assert every steady-state condition from the reported per-element quantities alone."""
    v = sol.potentials
    vscale = max(1.0, float(np.abs(v).max()))
    assert v[0] == 0.0
    ra, rb, g = net.arrays("resistor")
    np.testing.assert_allclose(sol.resistor_currents, g * (v[ra] - v[rb]), rtol=1e-12, atol=1e-12 * vscale)
    da, dc, _ = net.arrays("diode")
    pa, pm, volts = net.arrays("voltage_source")
    ca, cb, amps = net.arrays("current_source")
    iscale = max(1.0, float(np.abs(np.r_[sol.resistor_currents, sol.diode_currents,
                                          sol.voltage_source_currents, amps]).max(initial=0)))
    # KCL at every node but ground: current leaving through every element sums to zero, to rtol
    # of the largest current, or to rounding where that reaches further. Conductances over many
    # decades make a node's terms huge (1e8 S at 1 kV: 1e11 A per volt; half an ulp of the
    # potentials alone leaves amperes, and no float64 potentials balance the node better); and
    # nodes joined by voltage sources or by diodes carrying current (or at zero voltage, where a
    # current computed as zero may be rounding's) move together, the currents between them
    # carrying their rounding along: there all the cluster's terms count.
    out = np.zeros(net.num_nodes)
    terms = np.zeros(net.num_nodes)
    reach = g * (np.abs(v[ra]) + np.abs(v[rb]))
    for (a, b), current, magnitude in (((ra, rb), sol.resistor_currents, reach), ((da, dc), sol.diode_currents, None),
                                       ((pm, pa), sol.voltage_source_currents, None), ((ca, cb), amps, None)):
        magnitude = np.abs(current) if magnitude is None else magnitude
        np.add.at(out, a, current); np.subtract.at(out, b, current)
        np.add.at(terms, a, magnitude); np.add.at(terms, b, magnitude)
    at_zero = v[da] - v[dc] >= -KCL_ROUNDING_ULPS * np.finfo(np.float64).eps * (np.abs(v[da]) + np.abs(v[dc]))
    joined = np.r_[np.flatnonzero((sol.diode_currents != 0) | at_zero), np.arange(pa.size) + da.size]
    links = sp.coo_matrix((np.ones(joined.size), (np.r_[da, pa][joined], np.r_[dc, pm][joined])),
                          shape=(net.num_nodes, net.num_nodes))
    _, cluster = connected_components(links, directed=False)
    rounding = KCL_ROUNDING_ULPS * np.finfo(np.float64).eps * np.bincount(cluster, terms)[cluster]
    excess = np.abs(out[1:]) - rounding[1:]
    worst = int(np.argmax(excess)) + 1 if excess.size else 0
    assert excess.max(initial=0) <= rtol * iscale, \
        f"KCL violated by {abs(out[worst])} A at node {worst} (rounding {rounding[worst]:.3g} A)"
    # Voltage sources hold their voltage; diodes block reverse voltage and carry forward current only.
    np.testing.assert_allclose(v[pa] - v[pm], volts, atol=1e-9 * vscale)
    assert np.all(v[da] <= v[dc] + rtol * vscale), "a diode is reverse-violated"
    assert np.all(sol.diode_currents >= -rtol * iscale - rounding[da]), "a diode carries negative current"
    comp = np.minimum(np.maximum(sol.diode_currents, 0.0) / iscale, (v[dc] - v[da]) / vscale)
    assert np.all(np.abs(comp) <= rtol), "a diode both conducts and blocks"
    # The power the resistors dissipate is what the sources deliver (ideal diodes take none), but
    # for what the nodes' imbalances let through: by Tellegen's theorem the difference is the sum
    # of each node's potential times its imbalance, here within its rounding (over 16 decades a
    # node at 1.9e5 V with a 1e8 S resistor has terms of 2e13 A: an ulp of its potential is 4 mA).
    dissipated = float(np.sum(g * (v[ra] - v[rb]) ** 2))
    delivered = float(volts @ sol.voltage_source_currents + amps @ (v[cb] - v[ca]))
    np.testing.assert_allclose(sol.power, dissipated, rtol=1e-12, atol=1e-12 * iscale * vscale)
    assert abs(dissipated - delivered) <= rtol * iscale * vscale * max(1, ra.size) + float(np.abs(v) @ rounding), \
        "power is not conserved"
    assert sol.converged
    assert sol.kkt.scaled <= rtol


def diode_lattice(rng: np.random.Generator, side: int) -> rg.Network:
    """A side x side resistor lattice (nodes 1..side^2) driven by two voltage sources through 20
    taps and by 10 current sources, with diode clamps from random nodes to ground (either way,
    on 2-20 % of the nodes) and diodes along up to 5 % of the lattice's edges."""
    n = side * side
    idx = (np.arange(n) + 1).reshape(side, side)
    a = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    b = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    g = rng.uniform(0.1, 10, a.size)
    sources = (np.array([n + 1, n + 2]), np.array([0, 0]), rng.uniform(-2, 2, 2))
    taps = rng.choice(np.arange(1, n + 1), 20)
    a = np.r_[a, np.full(10, n + 1), np.full(10, n + 2)]
    b = np.r_[b, taps]
    g = np.r_[g, np.full(20, 5.0)]
    k = n // int(rng.choice([5, 10, 50]))
    clamped = rng.choice(np.arange(1, n + 1), k, replace=False)
    up = rng.random(k) < 0.5
    anode, cathode = np.where(up, clamped, 0), np.where(up, 0, clamped)
    m = int(rng.integers(0, n // 20))
    pick = rng.choice(a.size - 20, m, replace=False)
    flip = rng.random(m) < 0.5
    anode = np.r_[anode, np.where(flip, a[pick], b[pick])]
    cathode = np.r_[cathode, np.where(flip, b[pick], a[pick])]
    cs = rng.choice(np.arange(1, n + 1), (10, 2))
    return rg.Network.from_arrays(n + 3, resistors=(a, b, g), diodes=(anode, cathode), voltage_sources=sources,
                                  current_sources=(cs[:, 0], cs[:, 1], rng.uniform(-1, 1, 10)))


def random_arcs(rng: np.random.Generator, num_nodes: int, most: int) -> tuple[np.ndarray, np.ndarray]:
    """Between 1 and ``most - 1`` random arcs ``tail -> head`` among ``num_nodes`` nodes, those
    that would join a node to itself left out (parallel and antiparallel arcs kept)."""
    arcs = int(rng.integers(1, most))
    tail, head = rng.integers(0, num_nodes, arcs), rng.integers(0, num_nodes, arcs)
    keep = tail != head
    return tail[keep], head[keep]


def least_negative_total(num_nodes: int, tail: np.ndarray, head: np.ndarray, flow: np.ndarray) -> float:
    """The least total negative current of any currents on the arcs ``tail -> head`` with
    ``flow``'s node balances: HiGHS on the arcs' positive and negative parts, written
    independently of the library's network simplex and strongly connected components."""
    from scipy.optimize import linprog
    arcs = tail.size
    incidence = sp.csr_matrix((np.r_[np.ones(arcs), -np.ones(arcs)],
                               (np.r_[tail, head], np.r_[np.arange(arcs), np.arange(arcs)])), shape=(num_nodes, arcs))
    result = linprog(np.r_[np.zeros(arcs), np.ones(arcs)], A_eq=sp.hstack([incidence, -incidence]).tocsr(),
                     b_eq=incidence @ flow, bounds=(0, None), method="highs",
                     options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    assert result.status == 0
    return float(result.fun)
