"""Training a DRN: centred equilibrium propagation (or truncated backpropagation) with plain SGD.

One :class:`Trainer` holds everything that evolves during training besides the model's arrays:
the persistent free-phase state (the potentials the previous mini-batch ended in, as in the
published code: the end of its ``+beta`` phase), the learning rates (decayed by ``lr_decay`` after
every epoch), the shuffling RNG and the epoch count. ``state_dict``/``load_state_dict`` capture all
of it, so a resumed run continues bit for bit.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import numpy as np

from .errors import ConvergenceError, DRNError, NudgingError
from .model import DRN, _check_iterations, _to_host, relax_phase

ALGORITHMS = ("ep", "bp")
#: Batches trained between two calls of the progress callback (and two compiled-kernel calls).
PROGRESS_BATCHES = 250


def check_labels(labels, count: int, num_classes: int, name: str = "y") -> np.ndarray:
    """Integer class labels (count,) in ``0 .. num_classes - 1`` as int64; DRNError otherwise."""
    y = np.asarray(_to_host(labels))
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DRNError(f"{name} has shape {y.shape} and dtype {y.dtype}; expected integer labels ({count},)")
    if y.shape[0] != count:
        raise DRNError(f"{name} has {y.shape[0]} labels for {count} examples")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DRNError(f"{name} has labels outside 0..{num_classes - 1}")
    return y.astype(np.int64)


class Trainer:
    """Trains ``model`` on mini-batches with ``algorithm`` ``"ep"`` (centred EP) or ``"bp"``.

    ``"bp"`` is the published baseline: from the free state, ``iterations`` further sweeps are
    differentiated by truncated backpropagation (see :mod:`resgraph.drn.backprop`).
    Hyperparameters come from ``model.hyper``; ``batch_size`` overrides its batch size.
    """

    def __init__(self, model: DRN, algorithm: str = "ep", batch_size: int | None = None, seed: int = 0):
        if not isinstance(model, DRN):
            raise DRNError(f"model must be a resgraph.drn.DRN, not {type(model).__name__}")
        if algorithm not in ALGORITHMS:
            raise DRNError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
        hyper = model.hyper
        self.batch_size = _check_iterations(hyper.batch_size if batch_size is None else batch_size, "batch_size")
        if not hyper.beta > 0:
            raise DRNError(f"hyper.beta = {hyper.beta!r} must be positive")
        self.model = model
        self.algorithm = algorithm
        self.lr_weights = np.array(hyper.lr_weights, dtype=np.float64)
        self.lr_biases = np.array(hyper.lr_biases, dtype=np.float64)
        self.rng = np.random.default_rng(seed)
        self.state = model.zero_state(self.batch_size)
        self.epoch = 0
        #: Mean sweeps per relaxation phase in the last epoch (``hyper.iterations`` unless ``hyper.tol``).
        self.mean_sweeps = float("nan")
        self._sweeps = self._phases = 0

    # -- training -------------------------------------------------------------------------------
    def train_epoch(self, train_x, train_y, progress: Callable[[int, float], None] | None = None) -> float:
        """One shuffled pass over the data; returns the free-phase error fraction over the epoch.

        ``progress(examples_done, running_error)`` is called every ``PROGRESS_BATCHES`` batches.
        The learning rates decay by ``hyper.lr_decay`` at the end. A trailing partial batch is
        trained too, on the first rows of the persistent state.
        """
        model, batch = self.model, self.batch_size
        x = model.check_inputs(train_x, "train_x")
        count = x.shape[0]
        y = check_labels(train_y, count, model.sizes[-1], "train_y")
        order = self.rng.permutation(count)
        fast = self.algorithm == "ep" and hasattr(model.kernels, "train_batches")
        full = count // batch
        errors = 0
        self._sweeps = self._phases = 0
        for start in range(0, full, PROGRESS_BATCHES):
            num = min(PROGRESS_BATCHES, full - start)
            if fast:
                errors += self._compiled_batches(x, y, order, start * batch, num)
            else:
                for i in range(start, start + num):
                    idx = order[i * batch:(i + 1) * batch]
                    errors += self.train_batch(x[model.xp.asarray(idx)], y[idx], self.state)
            if progress is not None:
                progress((start + num) * batch, errors / ((start + num) * batch))
        if count % batch:
            idx = order[full * batch:]
            part = [s[:idx.size].copy() for s in self.state]
            errors += self.train_batch(x[model.xp.asarray(idx)], y[idx], part)
            for s, p in zip(self.state, part):
                s[:idx.size] = p
            if progress is not None:
                progress(count, errors / count)
        self.lr_weights *= model.hyper.lr_decay
        self.lr_biases *= model.hyper.lr_decay
        self.epoch += 1
        self.mean_sweeps = self._sweeps / max(self._phases, 1)
        return errors / count

    def _iterations(self) -> tuple[int, float | None]:
        hyper = self.model.hyper
        return (hyper.iterations, None) if hyper.tol is None else (hyper.max_iterations, hyper.tol)

    def _compiled_batches(self, x, y, order, first: int, num: int) -> int:
        model, hyper = self.model, self.model.hyper
        iterations, tol = self._iterations()
        errors, sweeps, failure = model.kernels.train_batches(
            model.weights, model.biases, self.state, x, y, order, first, num, model.gain, hyper.beta,
            iterations, self.lr_weights, self.lr_biases, tol=tol or 0.0)
        self._sweeps += sweeps
        self._phases += 3 * (num if failure is None else failure[3])
        if failure is not None:
            kind, layer, unit, i = failure
            where = f"epoch {self.epoch}, batch {first // self.batch_size + i}"
            if kind == "convergence":
                phase = ("free", "nudged (-beta, +beta)")[layer]
                raise ConvergenceError(f"the {phase} phase did not reach KKT residual {tol:g} A within "
                                       f"{iterations} sweeps ({where})")
            totals = model.kernels.total_conductances(model.weights)
            raise NudgingError(
                f"unit {unit} of layer {layer + 1} has total conductance {float(totals[layer][unit]):.4g} S"
                f"{f' and nudging -{hyper.beta:g} S' if layer == model.num_layers - 1 else ''}: the "
                f"-beta phase has no steady state ({where}); lower beta or the learning rates")
        return errors

    def train_batch(self, x, y, state: list) -> int:
        """One SGD step on the batch ``(x, y)`` (device array, int64 labels) from ``state``, in place.

        Returns the number of free-phase misclassifications. Generic over the backend kernels.
        """
        model, hyper, k = self.model, self.model.hyper, self.model.kernels
        beta = hyper.beta
        iterations, tol = self._iterations()
        onehot = model.check_targets(y, x.shape[0])
        drive = k.input_drive(model.weights[0], x, model.gain)
        totals = model.conductances(-beta if self.algorithm == "ep" else 0.0)

        def phase(potentials, nudging):
            args = (model.weights, model.biases, drive, totals, potentials, nudging, onehot)
            self._sweeps += relax_phase(k, args, iterations, tol)
            self._phases += 1

        phase(state, 0.0)
        errors = int((_to_host(model.xp.argmax(state[-1], axis=1)) != _to_host(y)).sum())
        if self.algorithm == "ep":
            minus = [s.copy() for s in state]
            plus = [s.copy() for s in state]
            phase(minus, -beta)
            phase(plus, beta)
            grads = k.ep_gradients(x, model.gain, minus, plus, beta)
            for s, p in zip(state, plus):
                s[...] = p
        else:
            from .backprop import truncated_bp_gradients

            grads = truncated_bp_gradients(model, x, onehot, state, hyper.iterations)
        k.sgd_step(model.weights, model.biases, *grads, self.lr_weights, self.lr_biases)
        return errors

    def evaluate(self, test_x, test_y) -> float:
        """Error fraction of inference from the zero state (``hyper.inference_iterations`` sweeps)."""
        x = self.model.check_inputs(test_x, "test_x")
        y = check_labels(test_y, x.shape[0], self.model.sizes[-1], "test_y")
        return float((self.model.predict(x) != y).mean())

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume bit for bit, as NumPy arrays (``np.savez``-friendly)."""
        model = self.model
        out = {
            "sizes": np.array(model.sizes, dtype=np.int64),
            "gain": np.array(model.gain),
            "algorithm": np.array(self.algorithm),
            "batch_size": np.array(self.batch_size, dtype=np.int64),
            "epoch": np.array(self.epoch, dtype=np.int64),
            "lr_weights": self.lr_weights.copy(),
            "lr_biases": self.lr_biases.copy(),
            "rng": np.array(json.dumps(self.rng.bit_generator.state)),
        }
        for l in range(model.num_layers):
            out[f"weights.{l}"] = np.array(_to_host(model.weights[l]))
            out[f"biases.{l}"] = np.array(_to_host(model.biases[l]))
            out[f"state.{l}"] = np.array(_to_host(self.state[l]))
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (also one read back by ``np.load``) into this trainer and model."""
        model = self.model
        missing = [key for key in self.state_dict() if key not in state]
        if "sizes" in state and tuple(np.asarray(state["sizes"]).tolist()) != model.sizes:
            raise DRNError(f"state dict is for sizes {tuple(np.asarray(state['sizes']).tolist())}, "
                           f"the model has {model.sizes}")
        if missing:
            raise DRNError(f"state dict lacks {', '.join(missing)}")
        if int(state["batch_size"]) != self.batch_size or str(state["algorithm"]) != self.algorithm:
            raise DRNError(f"state dict is for batch size {int(state['batch_size'])} and algorithm "
                           f"{str(state['algorithm'])!r}; this trainer has {self.batch_size}, {self.algorithm!r}")
        for l in range(model.num_layers):
            for key, current in ((f"weights.{l}", model.weights[l]), (f"biases.{l}", model.biases[l]),
                                 (f"state.{l}", self.state[l])):
                if tuple(np.shape(state[key])) != tuple(current.shape):
                    raise DRNError(f"{key} has shape {np.shape(state[key])}; expected {tuple(current.shape)}")
            model.weights[l] = model.to_device(state[f"weights.{l}"])
            model.biases[l] = model.to_device(state[f"biases.{l}"])
            self.state[l] = model.to_device(state[f"state.{l}"])
        model.gain = float(state["gain"])
        self.epoch = int(state["epoch"])
        self.lr_weights = np.array(state["lr_weights"], dtype=np.float64)
        self.lr_biases = np.array(state["lr_biases"], dtype=np.float64)
        self.rng.bit_generator.state = json.loads(str(state["rng"]))


def train(model: DRN, train_x, train_y, test_x=None, test_y=None, epochs: int | None = None,
          algorithm: str = "ep", seed: int = 0, log: Callable[[dict], None] | None = print) -> list[dict]:
    """Train ``model`` for ``epochs`` (default ``hyper.epochs``); one record per epoch.

    Each record holds ``epoch``, ``train_error``, ``test_error`` (None without test data) and
    ``seconds`` (training time of the epoch); ``log`` is called with it after every epoch.
    """
    trainer = Trainer(model, algorithm=algorithm, seed=seed)
    history = []
    for _ in range(_check_iterations(model.hyper.epochs if epochs is None else epochs, "epochs")):
        start = time.perf_counter()
        train_error = trainer.train_epoch(train_x, train_y)
        seconds = time.perf_counter() - start
        test_error = None if test_x is None else trainer.evaluate(test_x, test_y)
        record = dict(epoch=trainer.epoch, train_error=train_error, test_error=test_error, seconds=seconds)
        history.append(record)
        if log is not None:
            log(record)
    return history
