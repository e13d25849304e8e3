"""The cupy backend against the numba backend, in one run on one machine (issue 4's targets).

Two parts, each printing its table row by row (a failure is printed and the rest goes on):

``networks``: random benchmark circuits (benchmarks/networks.py, regime "on") of 1e5 and 1e6 free
nodes, solved to a scaled KKT residual of 1e-6 with float32 sweeps, both with the exact polish
(default; the polish runs on the CPU in float64) and with sweeps alone (``polish=False``). Times
exclude compiling the network (shown once per size). Target: 1e6 nodes in under 1 s on the GPU.

``drn``: seconds per 60000-example training epoch (centred EP, batch 4, float32) of the presets
``1h`` (target <= 20 s on the GPU) and ``xl`` (<= 60 s). Each row first times a chunk of the epoch.
A GPU row then runs the full epoch when the predicted time fits its allowance; otherwise, on the CPU
(numba, whose epochs take minutes for ``xl``) and with ``--quick``, the epoch time is extrapolated
from the chunk and marked ``*``. MNIST is used
when found (see drn_epoch.py), random images otherwise (marked ``r``).

    python benchmarks/gpu_bench.py                 # both parts
    python benchmarks/gpu_bench.py drn --quick     # one part, extrapolated epochs only
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import resgraph as rg  # noqa: E402
from drn_epoch import EPOCH, load_data  # noqa: E402
from networks import benchmark_network  # noqa: E402
from resgraph.drn import Trainer, preset  # noqa: E402

BACKENDS = ("cupy", "numba")
#: Examples timed first (and extrapolated from, on the CPU), per backend and preset.
CHUNK = {"cupy": {"xs": 2000, "1h": 2000, "xl": 2000}, "numba": {"xs": 4000, "1h": 4000, "xl": 400}}
#: Longest predicted GPU epoch (s) that is run in full rather than extrapolated, per preset.
ALLOWANCE = {"xs": 30.0, "1h": 30.0, "xl": 65.0}
TARGET_EPOCH = {"xs": float("nan"), "1h": 20.0, "xl": 60.0}


def synchronise(backend: str) -> None:
    """Wait for queued GPU work, so that wall-clock times include it."""
    if backend == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()


def describe_machine() -> None:
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, CPUs {os.cpu_count()}")
    try:
        import numba

        print(f"numba {numba.__version__}, {numba.get_num_threads()} threads")
        cupy = rg.get_backend("cupy").xp
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        print(f"cupy {cupy.__version__} on {name} ({props['totalGlobalMem'] / 2**30:.0f} GiB)")
    except Exception as exc:  # printed, not fatal: the CPU rows still run
        print(f"GPU backend unavailable: {type(exc).__name__}: {exc}")
    print(flush=True)


# -- networks -------------------------------------------------------------------------------------

def solve_row(c, backend: str, polish: bool, tol: float, max_sweeps: int):
    start = time.perf_counter()
    sol = rg.solve(c, backend=backend, tol=tol, dtype=np.float32, polish=polish, max_sweeps=max_sweeps)
    synchronise(backend)
    return time.perf_counter() - start, sol


def networks(sizes, tol: float, max_sweeps: int) -> None:
    print(f"Random networks, regime 'on', float32 sweeps, tol {tol:g} (scaled KKT); seconds per solve")
    header = (f"{'free nodes':>10} {'mode':12} {'backend':7} {'seconds':>8} {'sweeps':>6} {'polish s':>8} "
              f"{'KKT':>9} {'converged':>9} {'numba/cupy':>10}")
    print(header + "\n" + "-" * len(header), flush=True)
    warm = benchmark_network("random", 1000, "on").compile()
    for backend in BACKENDS:  # compile kernels (numba, NVRTC) outside the timings
        try:
            rg.solve(warm, backend=backend, tol=tol, dtype=np.float32)
        except Exception as exc:
            print(f"warm-up on {backend} failed: {type(exc).__name__}: {exc}", flush=True)
    for n in sizes:
        try:
            start = time.perf_counter()
            c = benchmark_network("random", n, "on").compile()
            print(f"{n:>10} (build + compile {time.perf_counter() - start:.1f} s, {c.num_colours} colours)", flush=True)
        except Exception:
            traceback.print_exc()
            continue
        for polish in (True, False):
            mode = "polish" if polish else "sweeps only"
            times = {}
            for backend in BACKENDS:
                try:
                    seconds, sol = solve_row(c, backend, polish, tol, max_sweeps)
                except Exception as exc:
                    print(f"{n:>10} {mode:12} {backend:7} failed: {type(exc).__name__}: {exc}", flush=True)
                    continue
                times[backend] = seconds
                ratio = f"{times['numba'] / times['cupy']:10.1f}" if len(times) == 2 else ""
                print(f"{n:>10} {mode:12} {backend:7} {seconds:8.3f} {sol.sweeps:6d} "
                      f"{sol.timings.get('polish', 0.0):8.3f} {sol.kkt.scaled:9.2e} {str(sol.converged):>9} {ratio}",
                      flush=True)
    print("target: 1e6 free nodes to KKT 1e-6 in float32 in under 1 s on the GPU\n", flush=True)


# -- DRN epochs -----------------------------------------------------------------------------------

def epoch_row(name: str, backend: str, data, quick: bool) -> tuple[float, str]:
    """(seconds per epoch, mark): measured over a full epoch, or extrapolated from a chunk ('*')."""
    train_x, train_y = data
    model = preset(name, backend=backend, dtype="float32")
    trainer = Trainer(model)
    x = model.check_inputs(train_x)          # on the device once, as a training run would hold it
    warm = 8 * trainer.batch_size
    trainer.train_epoch(x[:warm], train_y[:warm])
    synchronise(backend)
    chunk = CHUNK[backend][name]
    start = time.perf_counter()
    trainer.train_epoch(x[:chunk], train_y[:chunk])
    synchronise(backend)
    predicted = (time.perf_counter() - start) * EPOCH / chunk
    if quick or backend != "cupy" or predicted > ALLOWANCE[name]:
        return predicted, "*"
    start = time.perf_counter()
    trainer.train_epoch(x, train_y)
    synchronise(backend)
    return time.perf_counter() - start, ""


def drn(presets, quick: bool) -> None:
    train_x, train_y, _, _, random_mark = load_data()
    train_x, train_y = train_x[:EPOCH], train_y[:EPOCH]
    print("DRN training epochs (60000 examples, centred EP, batch 4, float32); "
          "* = extrapolated from a timed chunk" + (", r = random images (no MNIST found)" if random_mark else ""))
    header = f"{'preset':6} {'backend':7} {'s/epoch':>9} {'examples/s':>10} {'target s':>8} {'numba/cupy':>10}"
    print(header + "\n" + "-" * len(header), flush=True)
    for name in presets:
        times = {}
        for backend in BACKENDS:
            try:
                seconds, mark = epoch_row(name, backend, (train_x, train_y), quick)
            except Exception as exc:
                print(f"{name:6} {backend:7} failed: {type(exc).__name__}: {exc}", flush=True)
                if not isinstance(exc, rg.ResgraphError):
                    traceback.print_exc()
                continue
            times[backend] = seconds
            ratio = f"{times['numba'] / times['cupy']:10.1f}" if len(times) == 2 else ""
            target = f"{TARGET_EPOCH[name]:8.0f}" if backend == "cupy" else " " * 8
            print(f"{name:6} {backend:7} {seconds:8.1f}{(mark + random_mark):2} {EPOCH / seconds:9.0f} "
                  f"{target} {ratio}", flush=True)
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", help="networks and/or drn (default: both)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--presets", nargs="+", default=["1h", "xl"])
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-sweeps", type=int, default=3000, help="sweep cap of the sweeps-only solves")
    parser.add_argument("--quick", action="store_true", help="extrapolate every epoch from a timed chunk")
    args = parser.parse_args()
    parts = args.parts or ["networks", "drn"]
    if set(parts) - {"networks", "drn"}:
        parser.error(f"unknown parts {sorted(set(parts) - {'networks', 'drn'})}; choose networks, drn")
    describe_machine()
    for part in parts:
        try:
            if part == "networks":
                networks(args.sizes, args.tol, args.max_sweeps)
            else:
                drn(args.presets, args.quick)
        except Exception:
            traceback.print_exc()
            sys.stdout.flush()


if __name__ == "__main__":
    main()
