"""Beyond the paper, on the xs DRN: inference sweeps vs the exact steady state, relaxing every training
phase to a KKT tolerance instead of a fixed sweep count, and mini-batches larger than 4.

    python benchmarks/drn_beyond.py --epochs 2

Prints three tables (MNIST test error, seconds per training epoch, mean sweeps per phase). Every
row trains from the same initialisation (seed 0) with the published xs hyperparameters except the
one changed. MNIST as in drn_epoch.py.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from drn_epoch import load_data
from resgraph.drn import Trainer, preset


def run(hyper_changes: dict, epochs: int, data, batch_size=None):
    train_x, train_y, test_x, test_y, _ = data
    model = preset("xs")
    model.hyper = replace(model.hyper, **hyper_changes)
    trainer = Trainer(model, batch_size=batch_size)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        trainer.train_epoch(train_x, train_y)
        seconds.append(time.perf_counter() - start)
    return model, trainer, trainer.evaluate(test_x, test_y), float(np.mean(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    data = load_data()
    test_x, test_y = data[2], data[3]

    model, trainer, error, seconds = run({}, args.epochs, data)
    print(f"A. Inference of the published xs after {args.epochs} epochs (trained with 4 sweeps/phase)")
    print(f"{'inference':>26} {'test error':>10} {'s (10k)':>8}")
    for its in (1, 2, 3, 4, 6, 8, 16):
        start = time.perf_counter()
        err = float((model.predict(test_x, iterations=its) != test_y).mean())
        print(f"{f'{its} sweeps from 0 V':>26} {100 * err:9.2f}% {time.perf_counter() - start:8.2f}")
    for tol in (1e-2, 1e-4):
        start = time.perf_counter()
        pred = np.concatenate([np.argmax(model.relax(test_x[i:i + 1000], tol=tol)[-1], axis=1)
                               for i in range(0, len(test_x), 1000)])
        print(f"{f'KKT residual <= {tol:g} A':>26} {100 * float((pred != test_y).mean()):9.2f}% "
              f"{time.perf_counter() - start:8.2f}")

    print(f"\nB. Training phases relaxed to a KKT tolerance ({args.epochs} epochs; inference 4 sweeps)")
    print(f"{'phases':>26} {'test error':>10} {'s/epoch':>8} {'sweeps/phase':>12}")
    print(f"{'4 sweeps (published)':>26} {100 * error:9.2f}% {seconds:8.1f} {trainer.mean_sweeps:12.1f}")
    for tol in (1e-1, 1e-2, 1e-3):
        _, tr, err, sec = run({"tol": tol, "max_iterations": 10000}, args.epochs, data)
        print(f"{f'residual <= {tol:g} A':>26} {100 * err:9.2f}% {sec:8.1f} {tr.mean_sweeps:12.1f}", flush=True)

    print(f"\nC. Mini-batch size ({args.epochs} epochs, published learning rates, 4 sweeps)")
    print(f"{'batch':>26} {'test error':>10} {'s/epoch':>8}")
    for batch in (4, 16, 64):
        _, _, err, sec = run({}, args.epochs, data, batch_size=batch)
        print(f"{batch:22d} {100 * err:9.2f}% {sec:8.1f}", flush=True)
    for batch, scale in ((16, 4), (64, 16)):
        rates = {k: tuple(scale * r for r in getattr(preset("xs").hyper, k)) for k in ("lr_weights", "lr_biases")}
        _, _, err, sec = run(rates, args.epochs, data, batch_size=batch)
        print(f"{f'{batch} (lr x {scale})':>26} {100 * err:9.2f}% {sec:8.1f}", flush=True)


if __name__ == "__main__":
    main()
