"""Stress test: large random circuits solved and checked element by element.

Each seed draws a circuit of 5e3-1.2e5 free nodes (lattice, random graph, or lattice with
long-range wires), conductances uniform or spread over four decades, voltage sources (some
floating), diode clamps to ground either way on 0-30 % of the nodes, diodes between free nodes
(along wires or between random pairs) and current sources, then solves it to KKT 1e-9 in one of
several ways (cold, warm-started from a perturbed answer, float32 sweeps, the NumPy backend,
polished after sweeps alone) and checks the answer with the test suite's independent KCL check
(``tests/circuits.py``: every node balanced to 1e-8 of the largest current, diode and
complementarity conditions). Circuits the drawn elements make infeasible are reported and skipped.
With ``--decades D`` every conductance is redrawn log-uniform over D decades around 1 S (from a
generator of its own, so the rest of each circuit stays the same): the ill-conditioned systems
that take the polish past its multigrid preconditioners.

    python benchmarks/stress.py --seeds 0 40           # prints one line per circuit
    python benchmarks/stress.py --seeds 0 16 --size 20000 --decades 12
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import resgraph as rg  # noqa: E402
from circuits import check_kirchhoff  # noqa: E402
from networks import lattice_edges, random_graph_edges  # noqa: E402

SIZES = (5_000, 20_000, 30_000, 65_000, 120_000)
MODES = ("cold", "warm", "float32", "numpy", "after sweeps")


def stress_circuit(seed: int, size: int | None = None, decades: float | None = None) -> tuple[rg.Network, str]:
    """A random circuit (see the module docstring) and a short description of it; with
    ``decades``, its conductances (siemens) log-uniform over that many decades around 1 S."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice(SIZES)) if size is None else size
    kind = str(rng.choice(["lattice", "random", "mixed"]))
    if kind == "random":
        a, b = random_graph_edges(n, rng)
    else:
        a, b = lattice_edges(n)
        if kind == "mixed":      # a few long-range wires across the lattice
            extra = int(rng.integers(10, 500))
            a = np.r_[a, rng.integers(1, int(a.max()) + 1, extra)]
            b = np.r_[b, rng.integers(1, int(a.max()) + 1, extra)]
            keep = a != b
            a, b = a[keep], b[keep]
    n = int(max(a.max(), b.max()))
    wide = rng.random() < 0.5
    g = np.exp(rng.uniform(np.log(0.01), np.log(100), a.size)) if wide else rng.uniform(0.5, 2, a.size)
    spread = "g 0.01-100 S" if wide else "g 0.5-2 S"
    if decades is not None:
        g = 10.0 ** np.random.default_rng(seed + 777).uniform(-decades / 2, decades / 2, a.size)
        spread = f"g over {decades:g} decades"
    # Voltage sources, grounded or floating, no two sharing a node (so they form a forest).
    count = int(rng.integers(1, 10))
    plus = rng.choice(np.arange(1, n + 1), count, replace=False)
    minus = np.where(rng.random(count) < 0.5, 0, rng.choice(np.arange(1, n + 1), count))
    used: set[int] = set()
    keep = []
    for p, m in zip(plus.tolist(), minus.tolist()):
        ok = p != m and p not in used and (m == 0 or m not in used)
        keep.append(ok)
        if ok:
            used.update({p, m} - {0})
    keep = np.array(keep)
    plus, minus = plus[keep], minus[keep]
    volts = rng.uniform(-3, 3, plus.size)
    clamps = int(n * rng.choice([0.0, 0.02, 0.1, 0.3]))
    clamped = rng.choice(np.arange(1, n + 1), clamps, replace=False)
    up = rng.random(clamps) < rng.random()
    anode, cathode = np.where(up, clamped, 0), np.where(up, 0, clamped)
    coupled = int(rng.integers(0, n // 10))
    if rng.random() < 0.5:       # along wires
        pick = rng.choice(a.size, coupled, replace=False)
        x, y = a[pick], b[pick]
    else:                        # between random pairs
        x, y = rng.integers(1, n + 1, coupled), rng.integers(1, n + 1, coupled)
        keep = x != y
        x, y = x[keep], y[keep]
    flip = rng.random(x.size) < 0.5
    anode = np.r_[anode, np.where(flip, x, y)]
    cathode = np.r_[cathode, np.where(flip, y, x)]
    sources = int(rng.integers(0, 30))
    cs = rng.integers(1, n + 1, (sources, 2))
    net = rg.Network.from_arrays(n + 1, resistors=(a, b, g), diodes=(anode, cathode),
                                 voltage_sources=(plus, minus, volts),
                                 current_sources=(cs[:, 0], cs[:, 1], rng.uniform(-1, 1, sources)))
    return net, f"{kind} {n} nodes, {spread}, {clamps} clamps, {x.size} coupled diodes"


def solve_as(net: rg.Network, mode: str, rng: np.random.Generator) -> rg.Solution:
    if mode == "warm":
        rough = rg.solve(net, tol=1e-6, polish=False, max_sweeps=200).potentials
        return rg.solve(net, tol=1e-9, warm_start=rough + rng.normal(0, 0.05, rough.size))
    if mode == "float32":
        return rg.solve(net, tol=1e-9, dtype=np.float32)
    if mode == "numpy":
        return rg.solve(net, tol=1e-9, backend="numpy")
    if mode == "after sweeps":
        return rg.solve(net, tol=1e-9, warm_start=rg.solve(net, tol=1e-9, polish=False, max_sweeps=500))
    return rg.solve(net, tol=1e-9)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs=2, default=[0, 40], metavar=("FIRST", "STOP"))
    parser.add_argument("--size", type=int, help="free nodes of every circuit (default: drawn)")
    parser.add_argument("--decades", type=float, help="conductances log-uniform over this many decades")
    args = parser.parse_args(argv)
    failures = checked = 0
    for seed in range(*args.seeds):
        net, description = stress_circuit(seed, args.size, args.decades)
        try:
            net.compile()
        except rg.NetworkError as exc:
            print(f"{seed}: {description}: skipped ({type(exc).__name__})", flush=True)
            continue
        rng = np.random.default_rng(10_000 + seed)
        mode = MODES[seed % len(MODES)]
        if mode == "numpy" and net.num_nodes > 30_001:
            mode = "cold"          # the NumPy reference is for checking, not for size
        began = time.perf_counter()
        sol = solve_as(net, mode, rng)
        seconds = time.perf_counter() - began
        verdict = "ok"
        try:
            assert sol.converged, f"not converged (KKT {sol.kkt.scaled:.1e})"
            check_kirchhoff(net, sol, rtol=1e-8)
        except AssertionError as exc:
            verdict = f"FAILED: {str(exc).splitlines()[0][:120]}"
            failures += 1
        checked += 1
        print(f"{seed}: {description}: {mode}, {seconds:.2f} s, {sol.sweeps} sweeps, "
              f"{sol.polish_iterations} polish iterations, KKT {sol.kkt.scaled:.0e}: {verdict}", flush=True)
    print(f"{checked} circuits solved and checked, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
