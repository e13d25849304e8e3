"""Benchmark circuits: random graphs and 2-D lattices with diode clamps and a few sources.

Every circuit has ``n`` free nodes (1..n), 8 voltage sources from ground to extra nodes wired into
the graph, 4 current sources, and diodes from 10 % of the nodes to ground. The kind ``diodes`` is
the random graph with as many diodes again between random pairs of its nodes, either way round
(loops and antiparallel pairs among them): coordinate descent stalls on them and the active-set
polish has many to decide. Two regimes:

* ``on``: sources at +-1 V and clamps enforcing ``v >= 0.5 V``: most clamps conduct (thousands
  of active diodes at 1e5 nodes, well conditioned);
* ``off``: sources at +1 V only and clamps enforcing ``v <= 2 V``: almost no clamp conducts, so the
  circuit is a Laplacian pinned at a few points (ill conditioned, slow for coordinate descent).
"""
from __future__ import annotations

import numpy as np

import resgraph as rg

NUM_VS = 8
NUM_CS = 4


def random_graph_edges(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Edges of a connected random graph on nodes 1..n with mean degree about 4."""
    perm = rng.permutation(n) + 1
    tree_a = perm[1:]
    tree_b = perm[rng.integers(0, np.arange(1, n))]      # random recursive tree: connected
    extra = n
    a = rng.integers(1, n + 1, extra)
    b = rng.integers(1, n + 1, extra)
    keep = a != b
    return np.r_[tree_a, a[keep]], np.r_[tree_b, b[keep]]


def lattice_edges(n: int) -> tuple[np.ndarray, np.ndarray]:
    side = int(round(np.sqrt(n)))
    idx = (np.arange(side * side) + 1).reshape(side, side)
    return (np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()],
            np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()])


def benchmark_network(kind: str, n: int, regime: str, seed: int = 0) -> rg.Network:
    """A benchmark circuit (see the module docstring); ``kind`` is "random", "lattice" or "diodes"."""
    rng = np.random.default_rng(seed)
    if kind in ("random", "diodes"):
        a, b = random_graph_edges(n, rng)
    elif kind == "lattice":
        a, b = lattice_edges(n)
        n = int(round(np.sqrt(n))) ** 2
    else:
        raise ValueError(f"unknown kind {kind!r}")
    g = rng.uniform(0.5, 2.0, a.size)
    src = np.arange(n + 1, n + 1 + NUM_VS)                   # source nodes, each wired to 4 nodes
    taps = rng.choice(np.arange(1, n + 1), (NUM_VS, 4))
    a = np.r_[a, np.repeat(src, 4)]
    b = np.r_[b, taps.ravel()]
    g = np.r_[g, np.full(taps.size, 5.0)]
    if regime not in ("on", "off"):
        raise ValueError(f"unknown regime {regime!r}")
    rail = n + 1 + NUM_VS                                    # the clamps' rail, fixed by a source
    clamped = rng.choice(np.arange(1, n + 1), n // 10, replace=False)
    if regime == "on":      # sources at +-1 V; diode from the 0.5 V rail to the node: v >= 0.5 V
        volts = np.where(np.arange(NUM_VS) % 2 == 0, 1.0, -1.0)
        rail_volts = 0.5
        diodes = (np.full(clamped.size, rail), clamped)
    else:                   # sources at +1 V; diode from the node to the 2 V rail: v <= 2 V
        volts = np.ones(NUM_VS)
        rail_volts = 2.0
        diodes = (clamped, np.full(clamped.size, rail))
    if kind == "diodes":
        pairs = rng.integers(1, n + 1, (n, 2))
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        diodes = (np.r_[diodes[0], pairs[:, 0]], np.r_[diodes[1], pairs[:, 1]])
    vs_plus = np.r_[src, [rail]]
    vs_volts = np.r_[volts, [rail_volts]]
    cs_nodes = rng.choice(np.arange(1, n + 1), (NUM_CS, 2))
    return rg.Network.from_arrays(
        n + 2 + NUM_VS,
        resistors=(a, b, g),
        diodes=diodes,
        voltage_sources=(vs_plus, np.zeros(vs_plus.size, np.int64), vs_volts),
        current_sources=(cs_nodes[:, 0], cs_nodes[:, 1], rng.uniform(-0.1, 0.1, NUM_CS)),
    )
