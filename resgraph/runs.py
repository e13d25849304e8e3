"""A training run's folder: ``config.json``, ``metrics.jsonl`` and an atomically replaced checkpoint.

The checkpoint (``checkpoint.npz``) is the source of truth: it holds the trainer's state and the
metrics of every completed epoch, and ``metrics.jsonl`` (one JSON object per epoch) is rewritten
from it after each epoch. Every file is written to a temporary file in the same folder, flushed to
disk and renamed over the old one, so an interruption leaves either the old or the new version.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ResgraphError
from .fileio import atomic_write

__all__ = [
    "RunError", "CONFIG", "METRICS", "CHECKPOINT", "write_config", "read_config",
    "write_metrics", "read_metrics", "save_checkpoint", "load_checkpoint",
]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.npz"
_METRICS_KEY = "__metrics__"  # checkpoint entry holding the metrics history as JSON


class RunError(ResgraphError):
    """A run folder is missing, inconsistent with the requested run, or holds a corrupt file."""


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write the run's arguments to ``run_dir/config.json``."""
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(Path(run_dir) / CONFIG, lambda f: f.write(text.encode()))


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's arguments from ``run_dir/config.json``."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir} is not a resgraph run folder: it has no {CONFIG}")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise RunError(f"{path} does not hold a JSON object")
    return config


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``run_dir/metrics.jsonl`` with one JSON line per record."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    atomic_write(Path(run_dir) / METRICS, lambda f: f.write(text.encode()))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``run_dir/metrics.jsonl``."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise RunError(f"{run_dir} has no {METRICS}: no epoch of this run has finished yet")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise RunError(f"{path}, line {number}: not JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise RunError(f"{path}, line {number}: not a JSON object")
        records.append(record)
    return records


def save_checkpoint(run_dir: Path, state: dict[str, np.ndarray], metrics: list[dict[str, Any]]) -> None:
    """Atomically replace ``run_dir/checkpoint.npz`` with ``state`` and the metrics history."""
    if _METRICS_KEY in state:
        raise RunError(f"trainer state may not use the reserved key {_METRICS_KEY!r}")
    arrays = {**state, _METRICS_KEY: np.array(json.dumps(metrics))}
    atomic_write(Path(run_dir) / CHECKPOINT, lambda f: np.savez(f, **arrays))


def load_checkpoint(run_dir: Path) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]] | None:
    """The trainer state and metrics history saved in ``run_dir``, or None when there is none yet."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        metrics = json.loads(str(arrays.pop(_METRICS_KEY)))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise RunError(f"checkpoint {path} is unreadable ({exc!r}); delete it to restart the run") from exc
    return arrays, metrics
