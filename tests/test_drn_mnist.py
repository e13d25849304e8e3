"""DRN training on real MNIST: a short run must learn (skipped when the data is absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from resgraph.drn import Trainer, preset

ROOT = Path(os.environ.get("RESGRAPH_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist")


@pytest.fixture(scope="module")
def data():
    from resgraph.datasets import mnist

    if not any(ROOT.glob("train-images-idx3-ubyte*")):
        pytest.skip(f"MNIST not found in {ROOT}")
    return mnist(ROOT, download=False, progress=False)


@pytest.mark.parametrize("algorithm, count, bound", [("ep", 12000, 0.16), ("bp", 3000, 0.30)])
def test_xs_learns_mnist(data, algorithm, count, bound):
    """One epoch on a subset; chance is 90 % error, the paper's 10-epoch figure 3.46 %."""
    model = preset("xs", backend="numba")
    trainer = Trainer(model, algorithm=algorithm, seed=0)
    train_error = trainer.train_epoch(data.train_images[:count], data.train_labels[:count])
    test_error = trainer.evaluate(data.test_images[:2000], data.test_labels[:2000])
    assert train_error < 0.5
    assert test_error < bound
    assert trainer.evaluate(data.test_images[:2000], data.test_labels[:2000]) == test_error
