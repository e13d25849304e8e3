"""How the over-relaxation factor omega changes coordinate descent and the whole solve.

For each benchmark circuit and omega: the sweeps projected SOR alone (polish=False) needs to reach
a KKT residual of 1e-6 (capped), and the sweeps / active-set iterations / time of the default
solve (sweeps + polish) to 1e-9. Sweep counts do not depend on the machine.

    python benchmarks/omega_sweep.py [--size 10000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import resgraph as rg  # noqa: E402
from networks import benchmark_network  # noqa: E402

OMEGAS = (1.0, 1.2, 1.5, 1.7, 1.9)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--cap", type=int, default=5000, help="sweep cap for SOR alone")
    args = parser.parse_args(argv)
    rg.solve(benchmark_network("random", 1000, "on"))
    print("| graph | regime | omega | SOR alone: sweeps to 1e-6 | solve: sweeps | active-set iterations | solve s |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("random", "lattice"):
        for regime in ("on", "off"):
            c = benchmark_network(kind, args.size, regime).compile()
            for omega in OMEGAS:
                alone = rg.solve(c, tol=1e-6, omega=omega, polish=False, max_sweeps=args.cap)
                sweeps = f"{alone.sweeps}" if alone.converged else f">{args.cap}"
                t = time.perf_counter()
                sol = rg.solve(c, tol=1e-9, omega=omega)
                print(f"| {kind} | {regime} | {omega} | {sweeps} | {sol.sweeps} | {sol.polish_iterations} "
                      f"| {time.perf_counter() - t:.3f} |", flush=True)


if __name__ == "__main__":
    main()
