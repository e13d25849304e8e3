"""Shared test helpers: random circuits and an independent check of Kirchhoff's laws."""
from __future__ import annotations

import numpy as np

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
    # KCL at every node but ground: current leaving through every element sums to zero.
    out = np.zeros(net.num_nodes)
    np.add.at(out, ra, sol.resistor_currents); np.subtract.at(out, rb, sol.resistor_currents)
    np.add.at(out, da, sol.diode_currents); np.subtract.at(out, dc, sol.diode_currents)
    np.subtract.at(out, pa, sol.voltage_source_currents); np.add.at(out, pm, sol.voltage_source_currents)
    np.add.at(out, ca, amps); np.subtract.at(out, cb, amps)
    assert np.abs(out[1:]).max(initial=0) <= rtol * iscale, f"KCL violated by {np.abs(out[1:]).max()} A"
    # Voltage sources hold their voltage; diodes block reverse voltage and carry forward current only.
    np.testing.assert_allclose(v[pa] - v[pm], volts, atol=1e-9 * vscale)
    assert np.all(v[da] <= v[dc] + rtol * vscale), "a diode is reverse-violated"
    assert np.all(sol.diode_currents >= -rtol * iscale), "a diode carries negative current"
    comp = np.minimum(sol.diode_currents / iscale, (v[dc] - v[da]) / vscale)
    assert np.all(np.abs(comp) <= rtol), "a diode both conducts and blocks"
    # The power the resistors dissipate is what the sources deliver (ideal diodes take none).
    dissipated = float(np.sum(g * (v[ra] - v[rb]) ** 2))
    delivered = float(volts @ sol.voltage_source_currents + amps @ (v[cb] - v[ca]))
    np.testing.assert_allclose(sol.power, dissipated, rtol=1e-12, atol=1e-12 * iscale * vscale)
    assert abs(dissipated - delivered) <= rtol * iscale * vscale * max(1, ra.size), "power is not conserved"
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
