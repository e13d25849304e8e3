"""The ``resgraph`` command line: train/resume bit-for-bit, Ctrl-C, config clashes, plot, run files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from resgraph.cli import main
from resgraph.fileio import atomic_write
from resgraph.runs import (RunError, load_checkpoint, read_metrics, save_checkpoint,
                           write_config, write_metrics)

REAL = Path(os.environ.get("RESGRAPH_DATA") or Path(__file__).resolve().parents[1].parent / "shared/data/mnist")
needs_mnist = pytest.mark.skipif(not (REAL / "t10k-labels-idx1-ubyte.gz").is_file()
                                 and not (REAL / "t10k-labels-idx1-ubyte").is_file(),
                                 reason=f"real MNIST not found in {REAL}")
SMALL = ["--preset", "xs", "--train-limit", "40", "--test-limit", "20", "--data", str(REAL)]


def train(out: Path, *extra: str) -> int:
    return main(["train", *SMALL, "--out", str(out), *extra])


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def assert_same_run(a: Path, b: Path) -> None:
    (state_a, metrics_a), (state_b, metrics_b) = load_checkpoint(a), load_checkpoint(b)
    assert sorted(state_a) == sorted(state_b)
    for key in state_a:
        assert state_a[key].dtype == state_b[key].dtype, key
        assert np.array_equal(state_a[key], state_b[key]), key
    assert without_time(metrics_a) == without_time(metrics_b) == without_time(read_metrics(a))
    assert without_time(read_metrics(b)) == without_time(metrics_b)


@needs_mnist
def test_train_writes_config_metrics_checkpoint_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--epochs", "2", "--seed", "3") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "xs" and config["seed"] == 3 and config["epochs"] == 2
    assert config["train_limit"] == 40 and config["batch_size"] == 4 and config["algorithm"] == "ep"
    assert config["data"] == str(REAL.resolve())
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["lr_weights"] == pytest.approx([0.99 * lr for lr in records[0]["lr_weights"]])
    for r in records:
        assert 0.0 <= r["train_error"] <= 1.0 and 0.0 <= r["test_error"] <= 1.0 and r["seconds"] > 0
        assert r["test_error"] * 20 == pytest.approx(round(r["test_error"] * 20))  # a fraction of 20 examples
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "config.json", "metrics.jsonl"]
    assert "epoch 2: train error" in capsys.readouterr().out

    assert main(["plot", str(out)]) == 0
    png = (out / "errors.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


@needs_mnist
def test_resume_after_ctrl_c_is_bit_for_bit(tmp_path, capsys, monkeypatch):
    from resgraph.drn import Trainer

    straight, interrupted, stepped = tmp_path / "straight", tmp_path / "interrupted", tmp_path / "stepped"
    assert train(straight, "--epochs", "2") == 0

    original = Trainer.train_epoch

    def ctrl_c_in_epoch_2(self, *args, **kwargs):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", ctrl_c_in_epoch_2)
    capsys.readouterr()
    assert train(interrupted, "--epochs", "2") == 130
    err = capsys.readouterr().err
    assert "epoch 2 is lost" in err and f"resgraph train --out {interrupted} --resume" in err
    state, metrics = load_checkpoint(interrupted)
    assert [r["epoch"] for r in metrics] == [1] and len(read_metrics(interrupted)) == 1
    monkeypatch.setattr(Trainer, "train_epoch", original)

    assert main(["train", "--out", str(interrupted), "--resume"]) == 0  # flags come from config.json
    assert_same_run(straight, interrupted)

    assert train(stepped, "--epochs", "1") == 0
    assert main(["train", "--out", str(stepped), "--resume", "--epochs", "2", "--seed", "0"]) == 0
    assert_same_run(straight, stepped)
    assert json.loads((stepped / "config.json").read_text())["epochs"] == 2

    capsys.readouterr()
    assert main(["train", "--out", str(stepped), "--resume"]) == 0
    assert "already trained 2 epochs" in capsys.readouterr().out
    assert_same_run(straight, stepped)


@needs_mnist
def test_backprop_on_numpy_backend(tmp_path):
    out = tmp_path / "bp"
    assert train(out, "--algorithm", "bp", "--backend", "numpy", "--epochs", "1") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "bp" and config["backend"] == "numpy"
    state, metrics = load_checkpoint(out)
    assert str(state["algorithm"]) == "bp" and [r["epoch"] for r in metrics] == [1]


def test_resume_refuses_flags_that_disagree_with_the_run(tmp_path, capsys):
    config = {"preset": "xs", "algorithm": "ep", "backend": "numba", "dtype": "float32", "batch_size": 4,
              "seed": 0, "train_limit": 40, "test_limit": None, "epochs": 2, "data": None}
    write_config(tmp_path, config)
    assert main(["train", "--out", str(tmp_path), "--resume", "--algorithm", "bp", "--train-limit", "50"]) == 2
    err = capsys.readouterr().err
    assert "--algorithm bp (the run has ep)" in err and "--train-limit 50 (the run has 40)" in err
    assert err.count("\n") == 1


def test_errors_exit_2_with_one_line_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "resgraph", "train", "--resume"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "resgraph: error: --resume needs --out RUN_DIR, the folder of the run to continue\n"
    result = subprocess.run([sys.executable, "-m", "resgraph", "plot", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == f"resgraph: error: {tmp_path} is not a resgraph run folder: it has no config.json\n"


def test_new_run_refuses_an_existing_run_folder(tmp_path, capsys):
    write_config(tmp_path, {"preset": "xs"})
    assert main(["train", "--out", str(tmp_path)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    (tmp_path / "config.json").unlink()
    assert main(["train", "--out", str(tmp_path), "--preset", "nope"]) == 2
    assert "unknown preset 'nope'; choose one of xs" in capsys.readouterr().err


@needs_mnist
def test_subset_larger_than_data_is_refused(tmp_path, capsys):
    assert main(["train", *SMALL, "--out", str(tmp_path / "r"), "--test-limit", "10001"]) == 2
    assert "--test-limit 10001 exceeds the 10000 examples available" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--batch-size", "-4"), ("--train-limit", "x")])
def test_bad_numbers_are_usage_errors(flag, value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", flag, value])
    assert info.value.code == 2 and flag in capsys.readouterr().err


def test_plot_draws_a_png_where_asked(tmp_path, capsys):
    write_config(tmp_path, {"preset": "xs", "algorithm": "bp"})
    write_metrics(tmp_path, [{"epoch": e, "train_error": 0.1 / e, "test_error": 0.05 + 0.01 / e, "seconds": 1.0}
                             for e in (1, 2, 3)])
    target = tmp_path / "sub.png"
    assert main(["plot", str(tmp_path), "-o", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert target.read_bytes().startswith(b"\x89PNG") and not (tmp_path / "errors.png").exists()


def test_plot_rejects_records_without_errors(tmp_path, capsys):
    write_config(tmp_path, {"preset": "xs"})
    write_metrics(tmp_path, [{"epoch": 1, "train_error": 0.1}])
    assert main(["plot", str(tmp_path)]) == 2
    assert "lacks a numeric epoch/train_error/test_error" in capsys.readouterr().err


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]
    atomic_write(path, lambda f: f.write(b"new"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_checkpoint_round_trip_and_corruption(tmp_path):
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "rng": np.array([1, 2], dtype=np.uint64)}
    assert load_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path, state, [{"epoch": 1, "train_error": 0.5}])
    loaded, metrics = load_checkpoint(tmp_path)
    assert metrics == [{"epoch": 1, "train_error": 0.5}]
    assert all(np.array_equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype for k in state)
    with pytest.raises(RunError, match="reserved key"):
        save_checkpoint(tmp_path, {"__metrics__": np.zeros(1)}, [])
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(RunError, match="checkpoint .* is unreadable"):
        load_checkpoint(tmp_path)
