"""The ``resgraph`` command line: ``train`` a deep resistive network on MNIST, ``plot`` a run, list ``presets``.

Errors raised by resgraph are printed as one line on stderr and exit with status 2; an interrupted
``train`` (Ctrl-C) exits with status 130 after saying how to resume.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .backends import BACKEND_NAMES
from .errors import ResgraphError
from .runs import (CHECKPOINT, CONFIG, RunError, load_checkpoint, read_config, save_checkpoint,
                   write_config, write_metrics)

__all__ = ["main", "build_parser"]

#: Arguments that define a run: ``--resume`` refuses values that differ from the run's config.
#: None means "the default", resolved in :func:`_resolve_config`.
IDENTITY_DEFAULTS: dict[str, Any] = {
    "preset": "xs",
    "algorithm": "ep",
    "backend": "numba",
    "dtype": "float32",
    "batch_size": None,  # the preset's (recorded resolved in config.json)
    "seed": 0,
    "train_limit": None,  # all 60000
    "test_limit": None,  # all 10000
}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``resgraph`` command."""
    parser = argparse.ArgumentParser(
        prog="resgraph", description="Exact steady states of resistive networks; EP training of DRNs on MNIST.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a DRN preset on MNIST (equilibrium propagation or backprop)",
        description="Train a DRN preset on MNIST. A run folder receives config.json, metrics.jsonl "
        "(one JSON object per epoch) and checkpoint.npz (replaced atomically after every epoch).",
    )
    train.add_argument("--preset", help=f"network preset (default {IDENTITY_DEFAULTS['preset']}; see `resgraph presets`)")
    train.add_argument("--algorithm", choices=("ep", "bp"), help="equilibrium propagation (default) or backprop")
    train.add_argument("--backend", choices=BACKEND_NAMES, help="compute backend (default numba)")
    train.add_argument("--dtype", choices=("float32", "float64"), help="floating-point type (default float32)")
    train.add_argument("--batch-size", type=_positive_int, help="mini-batch size (default: the preset's)")
    train.add_argument("--seed", type=_non_negative_int, help="seed of weights and data order (default 0)")
    train.add_argument("--epochs", type=_positive_int,
                       help="total number of epochs to reach (default: the preset's); may be raised on --resume")
    train.add_argument("--train-limit", type=_positive_int, metavar="N",
                       help="train on the first N training examples only (quick checks)")
    train.add_argument("--test-limit", type=_positive_int, metavar="M",
                       help="evaluate on the first M test examples only (quick checks)")
    train.add_argument("--data", metavar="DIR", help="MNIST folder (default: $RESGRAPH_DATA, else the user cache, "
                       "downloading the files there when missing)")
    train.add_argument("--out", metavar="RUN_DIR", type=Path,
                       help="run folder (default runs/<preset>-<algorithm>-<UTC timestamp>)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint (bit-for-bit)")
    train.set_defaults(run=_train)

    plot = commands.add_parser("plot", help="plot a run's train/test error per epoch to a PNG")
    plot.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    plot.add_argument("-o", "--output", metavar="FILE.png", type=Path, help="default RUN_DIR/errors.png")
    plot.set_defaults(run=_plot)

    presets = commands.add_parser("presets", help="list the DRN presets")
    presets.set_defaults(run=_presets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``resgraph`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ResgraphError as exc:
        print(f"resgraph: error: {exc}", file=sys.stderr)
        return 2


def _resolve_config(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The run folder and its config: fresh from the flags, or from the folder when resuming."""
    given = {key: getattr(args, key) for key in IDENTITY_DEFAULTS if getattr(args, key) is not None}
    if args.resume:
        if args.out is None:
            raise RunError("--resume needs --out RUN_DIR, the folder of the run to continue")
        config = read_config(args.out)
        missing = [key for key in (*IDENTITY_DEFAULTS, "epochs", "data") if key not in config]
        if missing:
            raise RunError(f"{args.out}/{CONFIG} lacks {', '.join(missing)}; it was not written by `resgraph train`")
        clashes = [f"--{key.replace('_', '-')} {value} (the run has {config.get(key)})"
                   for key, value in given.items() if config.get(key) != value]
        if clashes:
            raise RunError(f"--resume: {args.out}/{CONFIG} disagrees with " + ", ".join(clashes)
                           + "; drop these flags or start a new run with another --out")
        if args.epochs is not None:
            config["epochs"] = args.epochs
        if args.data is not None:
            config["data"] = _absolute(args.data)
        return args.out, config

    config = {**IDENTITY_DEFAULTS, **given}
    from .drn import PRESETS

    if config["preset"] not in PRESETS:
        raise RunError(f"unknown preset {config['preset']!r}; choose one of {', '.join(PRESETS)}")
    hyper = PRESETS[config["preset"]].hyper
    config["batch_size"] = config["batch_size"] or hyper.batch_size
    config["epochs"] = args.epochs or hyper.epochs
    config["data"] = None if args.data is None else _absolute(args.data)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = args.out or Path("runs") / f"{config['preset']}-{config['algorithm']}-{stamp}"
    if (out / CONFIG).exists():
        raise RunError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"--out {out} exists and is not an empty folder")
    return out, config


def _absolute(folder: str) -> str:
    """``folder`` as an absolute path, so that a resumed run finds it from any working directory."""
    return str(Path(folder).expanduser().resolve())


def _subset(array, limit: int | None, flag: str):
    if limit is not None and limit > len(array):
        raise RunError(f"{flag} {limit} exceeds the {len(array)} examples available")
    return array[:limit]


def _train(args: argparse.Namespace) -> int:
    out, config = _resolve_config(args)  # first, so that flag errors come before slow imports
    from .datasets import mnist
    from .drn import Trainer, preset

    data = mnist(config["data"])
    train_x = _subset(data.train_images, config["train_limit"], "--train-limit")
    train_y = data.train_labels[: len(train_x)]
    test_x = _subset(data.test_images, config["test_limit"], "--test-limit")
    test_y = data.test_labels[: len(test_x)]

    model = preset(config["preset"], backend=config["backend"], dtype=config["dtype"], seed=config["seed"])
    trainer = Trainer(model, algorithm=config["algorithm"], batch_size=config["batch_size"], seed=config["seed"])
    history: list[dict[str, Any]] = []
    saved = load_checkpoint(out) if args.resume else None
    if saved is not None:
        state, history = saved
        trainer.load_state_dict(state)
        if trainer.epoch != len(history):
            raise RunError(f"{out}/{CHECKPOINT} is inconsistent: trainer at epoch {trainer.epoch}, "
                           f"but metrics for {len(history)} epochs")
        write_metrics(out, history)  # in case the last run stopped between checkpoint and metrics
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, config)
    if trainer.epoch >= config["epochs"]:
        print(f"{out} has already trained {trainer.epoch} epochs; pass --epochs above {trainer.epoch} to continue")
        return 0
    print(f"run folder {out}: preset {config['preset']}, {config['algorithm']}, backend {config['backend']}, "
          f"{len(train_x)} train / {len(test_x)} test examples, epochs {trainer.epoch + 1}..{config['epochs']}")

    try:
        while trainer.epoch < config["epochs"]:
            record = _run_epoch(trainer, (train_x, train_y), (test_x, test_y), config["epochs"])
            history.append(record)
            save_checkpoint(out, trainer.state_dict(), history)
            write_metrics(out, history)
            print(f"epoch {record['epoch']}: train error {100 * record['train_error']:.2f}%, "
                  f"test error {100 * record['test_error']:.2f}%, {record['seconds']:.1f} s", flush=True)
    except KeyboardInterrupt:
        saved = load_checkpoint(out)  # an interrupted save leaves the previous checkpoint
        done_epochs = len(saved[1]) if saved is not None else 0
        print(f"\nInterrupted: epoch {done_epochs + 1} is lost; {out}/{CHECKPOINT} holds "
              f"{done_epochs} finished epoch(s). Resume with:\n  resgraph train --out {out} --resume",
              file=sys.stderr)
        return 130
    print(f"trained to epoch {config['epochs']} in {out}; plot with: resgraph plot {out}")
    return 0


def _run_epoch(trainer, train: tuple, test: tuple, epochs: int) -> dict[str, Any]:
    """Train one epoch with a progress bar, then evaluate; return the epoch's metrics record."""
    from tqdm.auto import tqdm

    epoch = trainer.epoch + 1
    lr_weights = trainer.lr_weights.tolist()  # this epoch's rates; they decay at its end
    start = time.perf_counter()
    with tqdm(total=len(train[0]), unit="ex", desc=f"epoch {epoch}/{epochs}") as bar:

        def progress(done: int, running_error: float) -> None:
            bar.update(done - bar.n)
            bar.set_postfix_str(f"error {100 * running_error:.2f}%", refresh=False)

        train_error = trainer.train_epoch(*train, progress=progress)
        bar.update(len(train[0]) - bar.n)
        bar.set_postfix_str(f"error {100 * train_error:.2f}%; testing")
        test_error = trainer.evaluate(*test)
    return {"epoch": epoch, "train_error": float(train_error), "test_error": float(test_error),
            "seconds": round(time.perf_counter() - start, 3), "train_examples": len(train[0]),
            "test_examples": len(test[0]), "lr_weights": lr_weights}


def _plot(args: argparse.Namespace) -> int:
    from .plot import plot_errors

    print(plot_errors(args.run_dir, args.output))
    return 0


def _presets(args: argparse.Namespace) -> int:
    from .drn import PRESETS

    print(f"{'name':6s} {'layer sizes':24s} {'gain':>6s} {'batch':>5s} {'epochs':>6s} {'paper EP test error':>19s}")
    for name, p in PRESETS.items():
        sizes = "-".join(map(str, p.sizes))
        print(f"{name:6s} {sizes:24s} {p.gain:6g} {p.hyper.batch_size:5d} {p.hyper.epochs:6d} {p.paper_test_error:18.2f}%")
    return 0
