"""Plot a training run's train and test error (%) per epoch to a PNG file."""
from __future__ import annotations

import os
from pathlib import Path

from .runs import RunError, read_config, read_metrics

__all__ = ["plot_errors"]


def plot_errors(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Draw train/test error (%) vs epoch of the run in ``run_dir``; return the PNG path.

    ``out`` defaults to ``run_dir/errors.png``. Uses matplotlib's Agg canvas directly, so it never
    changes the pyplot backend of the calling program.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    records = read_metrics(run_dir)
    if not records:
        raise RunError(f"{run_dir} has no finished epoch to plot")
    try:
        epochs = [int(r["epoch"]) for r in records]
        train = [100.0 * float(r["train_error"]) for r in records]
        test = [100.0 * float(r["test_error"]) for r in records]
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{run_dir / 'metrics.jsonl'}: a record lacks a numeric epoch/train_error/test_error ({exc!r})") from exc
    out = Path(out) if out is not None else run_dir / "errors.png"

    fig = Figure(figsize=(6.4, 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(epochs, train, "o-", label="train")
    ax.plot(epochs, test, "s-", label="test")
    best = min(range(len(test)), key=test.__getitem__)
    ax.plot(epochs[best], test[best], "*", color="C1", markersize=14,
            label=f"best test {test[best]:.2f}% (epoch {epochs[best]})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_ylim(bottom=0, top=max(train + test) * 1.15 or 1.0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"{run_dir.name}: preset {config.get('preset', '?')}, {config.get('algorithm', '?')}", fontsize=10)
    try:
        fig.savefig(out)
    except OSError as exc:
        raise RunError(f"cannot write the plot to {out}: {exc}") from exc
    return out
