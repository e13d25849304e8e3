"""Seconds per DRN training epoch (centred EP, published hyperparameters) on this machine.

Prints one row per (preset, backend): batch size, training examples/s, seconds per 60000-example
epoch, seconds to evaluate the 10000 test images, and the arithmetic throughput in GFLOP/s with its
share of this machine's float32 matmul peak, measured in the same run (a large np.matmul).

Arithmetic per example, as the algorithm does it but counted dense (skipped zero pixels still
count): the input drive once per batch (|W_0| flops: ``A x @ (W_0+ - W_0-)``), its gradient
``x^T dh`` (|W_0|), 3 phases x T sweeps with two products by every other matrix (4 |W_l| each),
their two gradient outer products (4 |W_l|), and the SGD pass over every conductance (~8 flops per
entry per batch). Training at batch 4 is bound by memory traffic over the conductances, not by
arithmetic, so the share of the matmul peak is small by nature.

    python benchmarks/drn_epoch.py                       # xs and 1h, numba, full epoch each
    python benchmarks/drn_epoch.py --presets xs 1h 2h --backends numba numpy --examples 8000

With ``--examples N`` below 60000, an epoch's time is extrapolated from N examples (marked ``*``).
MNIST is read with resgraph.datasets.mnist (RESGRAPH_DATA, or ../shared/data/mnist next to the
repository); without it, random images with MNIST's ~19 % non-zero pixels are used (marked ``r``).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from resgraph.drn import Trainer, preset

EPOCH = 60000


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 np.matmul throughput of ``repeats`` (n x n) products, GFLOP/s."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.copy()
    a @ b
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def load_data():
    root = os.environ.get("RESGRAPH_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
    try:
        from resgraph.datasets import mnist

        d = mnist(root, download=False, progress=False)
        return d.train_images, d.train_labels, d.test_images, d.test_labels, ""
    except Exception:
        rng = np.random.default_rng(0)
        x = (rng.random((70000, 784)) * (rng.random((70000, 784)) < 0.19)).astype(np.float32)
        y = rng.integers(0, 10, 70000)
        return x[:60000], y[:60000], x[60000:], y[60000:], "r"


def flops_per_example(model, batch: int) -> float:
    """Dense-counted arithmetic of one training example (see the module docstring)."""
    its = model.hyper.iterations
    first, rest = model.weights[0].size, sum(w.size for w in model.weights[1:])
    return 2.0 * first + (3 * its * 4 + 4) * rest + 8.0 * (first + rest) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["xs", "1h"])
    parser.add_argument("--backends", nargs="+", default=["numba"])
    parser.add_argument("--examples", type=int, default=EPOCH, help="training examples timed per row")
    parser.add_argument("--batch-size", type=int, default=None, help="override the preset's (4)")
    args = parser.parse_args()
    train_x, train_y, test_x, test_y, mark = load_data()
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak (2048^3 np.matmul, best of 5): {peak:.1f} GFLOP/s; CPUs: {os.cpu_count()}")
    header = f"{'preset':6} {'backend':7} {'batch':>5} {'examples/s':>11} {'s/epoch':>9} {'eval s':>7} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    for name in args.presets:
        for backend in args.backends:
            model = preset(name, backend=backend)
            trainer = Trainer(model, batch_size=args.batch_size)
            count = min(args.examples, EPOCH)
            warm = trainer.batch_size * 8  # compile (numba cache) and warm up outside the timing
            trainer.train_epoch(train_x[:warm], train_y[:warm])
            start = time.perf_counter()
            trainer.train_epoch(train_x[:count], train_y[:count])
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            trainer.evaluate(test_x, test_y)
            eval_seconds = time.perf_counter() - start
            rate = count / seconds
            gflops = rate * flops_per_example(model, trainer.batch_size) / 1e9
            flag = ("*" if count < EPOCH else "") + mark
            print(f"{name:6} {backend:7} {trainer.batch_size:5d} {rate:11.0f} {EPOCH / rate:8.1f}{flag:1} "
                  f"{eval_seconds:7.2f} {gflops:8.1f} {100 * gflops / peak:6.1f}%", flush=True)


if __name__ == "__main__":
    main()
