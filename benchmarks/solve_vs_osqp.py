"""resgraph against OSQP and PIQP on random graphs and 2-D lattices (see networks.py).

For each circuit: our time to a KKT residual of 1e-9 (compile + solve, numba backend), OSQP's
time (eps_abs = eps_rel = 1e-5, polishing on; setup + solve), PIQP's time (sparse interior point,
default tolerances; setup + solve), the ratios, and the KKT residual each answer reaches (our own
certificate, measured the same way for all three). All measured in this one run.

    python benchmarks/solve_vs_osqp.py                  # 1e3 .. 1e5 free nodes
    python benchmarks/solve_vs_osqp.py --sizes 1000000 --peer-timeout 600
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import resgraph as rg  # noqa: E402
from networks import benchmark_network  # noqa: E402
from resgraph.kkt import diode_currents, kkt_report  # noqa: E402
from resgraph.kkt import constraint_slack  # noqa: E402


def certify(c, x, duals=None, qp=None):
    """Our KKT residual of a peer's answer (duals from the peer when it gives them)."""
    if duals is not None:
        lam = np.zeros(c.diode_offset.size)
        lam[qp.diode_index] = duals
    else:
        lam = diode_currents(c, x, c.diode_is_constraint & (constraint_slack(c, x) <= 1e-6))
    return kkt_report(c, x, lam).scaled


def run_osqp(qp, timeout):
    import osqp
    t = time.perf_counter()
    solver = osqp.OSQP()
    solver.setup(qp.P, qp.q, qp.A, qp.l, qp.u, eps_abs=1e-5, eps_rel=1e-5, polishing=True,
                 verbose=False, time_limit=timeout, max_iter=10**7)
    result = solver.solve(raise_error=False)
    return time.perf_counter() - t, result.x, result.y, result.info.status


def run_piqp(qp, timeout):
    import piqp
    import scipy.sparse as sp
    t = time.perf_counter()
    solver = piqp.SparseSolver()
    solver.settings.verbose = False
    if hasattr(solver.settings, "max_iter"):
        solver.settings.max_iter = 200
    G = qp.A if qp.A.shape[0] else None
    P = (qp.P + sp.triu(qp.P, 1).T).tocsc()
    solver.setup(P, qp.q, None, None, G, None, qp.u if G is not None else None)
    status = solver.solve()
    return time.perf_counter() - t, np.asarray(solver.result.x), np.asarray(solver.result.z_u if hasattr(solver.result, "z_u") else solver.result.z), str(status)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--kinds", nargs="+", default=["random", "lattice"])
    parser.add_argument("--regimes", nargs="+", default=["on", "off"])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--peer-timeout", type=float, default=300.0,
                        help="seconds before a peer is given up on (reported as '>T')")
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args(argv)

    rg.solve(benchmark_network("random", 1000, "on"), backend=args.backend)   # JIT warm-up
    header = (f"| graph | free nodes | regime | diodes on | resgraph s | KKT | OSQP s | KKT | "
              f"PIQP s | KKT | OSQP / resgraph | PIQP / resgraph |")
    print(header)
    print("|" + "---|" * header.count("|")[:-1] if False else "|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        for kind in args.kinds:
            for regime in args.regimes:
                net = benchmark_network(kind, n, regime)
                t = time.perf_counter()
                c = net.compile()
                sol = rg.solve(c, backend=args.backend, tol=1e-9)
                ours = time.perf_counter() - t
                row = [kind, f"{c.num_free:,}", regime, f"{int(sol.diode_on.sum()):,}",
                       f"{ours:.3f}", f"{sol.kkt.scaled:.0e}"]
                ratios = []
                for name, runner in (("osqp", run_osqp), ("piqp", run_piqp)):
                    if args.no_peers:
                        row += ["-", "-"]
                        ratios.append("-")
                        continue
                    qp = net.to_qp()
                    try:
                        seconds, x, y, status = runner(qp, args.peer_timeout)
                    except Exception as exc:  # a peer failing is a result to report, not a crash
                        row += [f"failed ({type(exc).__name__})", "-"]
                        ratios.append("-")
                        continue
                    good = x is not None and np.all(np.isfinite(x))
                    kkt = certify(c, x, y if name == "osqp" else None, qp) if good else float("nan")
                    timed_out = seconds >= args.peer_timeout or "time" in status.lower()
                    row += [(">" if timed_out else "") + f"{seconds:.3f}", f"{kkt:.0e}"]
                    ratios.append(("> " if timed_out else "") + f"{seconds / ours:.1f}x")
                row += ratios
                print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
