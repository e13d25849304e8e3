"""The deep resistive network: conductances, bias currents, relaxation to the steady state.

Sign conventions: potentials in volts relative to ground; ``weights[l][j, k]`` is the conductance
(siemens, >= 0) of the resistor between unit ``j`` of layer ``l`` and unit ``k`` of layer ``l + 1``
(layer 0 = the ``2 * num_pixels`` input sources: ``+gain x`` then ``-gain x``); ``biases[l][k]`` is the
current (amperes, any sign) a current source injects from ground into unit ``k`` of layer ``l + 1``.
In hidden layers the first ``n // 2`` units are excitatory (``v >= 0``), the rest inhibitory
(``v <= 0``); the output layer is linear.
"""
from __future__ import annotations

import importlib
from typing import Sequence

import numpy as np

from .errors import ConvergenceError, DRNError, NudgingError
from .kernels import drn_kernels
from .presets import PRESETS, Hyper

#: Cap on block-coordinate-descent sweeps when relaxing to a tolerance.
MAX_TOL_ITERATIONS = 100_000
_DTYPES = {"float32": np.float32, "float64": np.float64}


def _as_dtype(dtype) -> np.dtype:
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise DRNError(f"dtype {dtype!r} is not a NumPy dtype; use 'float32' or 'float64'") from exc
    if name not in _DTYPES:
        raise DRNError(f"dtype {dtype!r} is not supported; use 'float32' or 'float64'")
    return np.dtype(name)


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if len(sizes) < 2:
        raise DRNError(f"sizes {sizes} needs at least an input and an output layer")
    for i, n in enumerate(sizes):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
            raise DRNError(f"sizes[{i}] = {n!r} is not a positive integer")
    return tuple(int(n) for n in sizes)


class DRN:
    """A deep resistive network with trainable conductances and bias currents.

    Parameters
    ----------
    sizes
        ``(num_pixels, hidden_1, ..., num_outputs)``; the input layer holds ``2 * num_pixels`` sources.
    gain
        Input amplification ``A`` (the sources are ``+A x`` and ``-A x``, volts for ``x`` in [0, 1]).
    backend
        ``"numba"``, ``"numpy"`` or ``"cupy"``: where the arrays live and which kernels run.
    dtype
        ``"float32"`` or ``"float64"``.
    seed
        Seed of the initialisation: conductances uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) clipped at 0
        (weight gain 1), biases 0.
    hyper
        Training hyperparameters (defaults: batch 4, 4 iterations, beta 1, learning rates 0.006).
    """

    def __init__(self, sizes: Sequence[int] = (784, 100, 10), gain: float = 100.0,
                 backend: str = "numba", dtype="float32", seed: int = 0, hyper: Hyper | None = None):
        self.sizes = _check_sizes(sizes)
        if not np.isfinite(gain) or gain <= 0:
            raise DRNError(f"input gain {gain!r} must be a positive finite number")
        self.gain = float(gain)
        self.dtype = _as_dtype(dtype)
        self.backend = backend
        self.kernels = drn_kernels(backend)
        self.xp = importlib.import_module("cupy") if backend == "cupy" else np
        num_layers = len(self.sizes) - 1
        self.hyper = (hyper or Hyper()).with_layers(num_layers)
        rng = np.random.default_rng(seed)
        weights, biases = [], []
        for l in range(num_layers):
            fan_in = 2 * self.sizes[0] if l == 0 else self.sizes[l]
            bound = 1.0 / np.sqrt(fan_in)
            w = np.maximum(rng.uniform(-bound, bound, size=(fan_in, self.sizes[l + 1])), 0.0)
            weights.append(self.to_device(w))
            biases.append(self.to_device(np.zeros(self.sizes[l + 1])))
        self.weights: list = weights
        self.biases: list = biases

    # -- arrays ---------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Number of conductance matrices (= number of non-input layers)."""
        return len(self.sizes) - 1

    def to_device(self, a) -> "np.ndarray":
        """``a`` as a C-contiguous array of the model's dtype on the backend's device."""
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=self.dtype))

    def zero_state(self, batch: int) -> list:
        """Potentials 0 V for every non-input layer, ``batch`` rows."""
        return [self.xp.zeros((batch, n), dtype=self.dtype) for n in self.sizes[1:]]

    def check_inputs(self, x, name: str = "x"):
        """``x`` (batch, num_pixels) or (num_pixels,) as a device array; DRNError naming what is wrong."""
        x = self.xp.asarray(x)
        if x.dtype.kind != "f":
            raise DRNError(f"{name} has dtype {x.dtype}; expected floats (pixels scaled to [0, 1])")
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise DRNError(f"{name} has shape {tuple(x.shape)}; expected (batch, {self.sizes[0]})")
        if x.shape[0] == 0:
            raise DRNError(f"{name} is empty")
        x = self.to_device(x)
        if not bool(self.xp.isfinite(x).all()):
            raise DRNError(f"{name} contains NaN or infinite values")
        return x

    def check_targets(self, target, batch: int):
        """One-hot targets (batch, num_outputs) from integer labels (batch,) or a real array."""
        n_out = self.sizes[-1]
        t = self.xp.asarray(target)
        if t.ndim == 1 and t.dtype.kind in "iu":
            if t.shape[0] != batch:
                raise DRNError(f"target has {t.shape[0]} labels for {batch} examples")
            if t.size and (int(t.min()) < 0 or int(t.max()) >= n_out):
                raise DRNError(f"target labels must lie in 0..{n_out - 1}")
            onehot = self.xp.zeros((batch, n_out), dtype=self.dtype)
            onehot[self.xp.arange(batch), t] = 1
            return onehot
        if t.shape != (batch, n_out) or t.dtype.kind not in "fiu":
            raise DRNError(f"target has shape {tuple(t.shape)} and dtype {t.dtype}; expected integer "
                           f"labels ({batch},) or voltages ({batch}, {n_out})")
        return self.to_device(t)

    def conductances(self, beta: float = 0.0) -> list:
        """Total conductance of every unit (the kernels' ``conductances``), checked positive.

        Raises :class:`NudgingError` naming the layer and unit whose total conductance (with the
        nudging conductance ``beta`` on the output layer) is not positive.
        """
        totals = self.kernels.total_conductances(self.weights)
        check_positive_conductances(totals, beta, self.xp)
        return totals

    # -- relaxation -----------------------------------------------------------------------------
    def relax(self, x, beta: float = 0.0, target=None, iterations: int | None = None,
              tol: float | None = None, state: list | None = None) -> list:
        """Steady-state potentials (volts) of every non-input layer for inputs ``x``.

        Runs ``iterations`` block-coordinate-descent sweeps (default ``hyper.iterations``) from
        ``state`` (default: all zero). With ``tol`` it sweeps until the KKT residual
        (:func:`kkt_residual`, amperes) is at most ``tol``, ``iterations`` then being the cap
        (default ``MAX_TOL_ITERATIONS``; :class:`ConvergenceError` if reached). ``beta`` nudges the
        outputs towards ``target`` (labels or voltages) through conductance ``beta`` (may be negative).
        Returns a list of (batch, n) arrays (or (n,) arrays for a single 1-D input).
        """
        single = np.ndim(x) == 1
        x = self.check_inputs(self.xp.asarray(x)[None] if single else x)
        beta = _check_beta(beta, allow_negative=True)
        batch = x.shape[0]
        onehot = None
        if beta != 0.0:
            if target is None:
                raise DRNError(f"beta = {beta} needs a target")
            onehot = self.check_targets(self.xp.asarray(target)[None] if single else target, batch)
        if state is None:
            state = self.zero_state(batch)
        else:
            state = self._check_state(state, batch)
        k = self.kernels
        drive = k.input_drive(self.weights[0], x, self.gain)
        args = (self.weights, self.biases, drive, self.conductances(beta), state, beta, onehot)
        if tol is None:
            iterations = _check_iterations(self.hyper.iterations if iterations is None else iterations)
        else:
            iterations = MAX_TOL_ITERATIONS if iterations is None else _check_iterations(iterations)
        relax_phase(k, args, iterations, tol)
        return [s[0] for s in state] if single else state

    def kkt_residual(self, x, state: list, beta: float = 0.0, target=None) -> float:
        """Largest KKT violation (amperes) of ``state`` for inputs ``x`` (see kernels.kkt_residual)."""
        x = self.check_inputs(x)
        onehot = None if beta == 0.0 else self.check_targets(target, x.shape[0])
        drive = self.kernels.input_drive(self.weights[0], x, self.gain)
        return self.kernels.kkt_residual(self.weights, self.biases, drive, self.conductances(beta),
                                         self._check_state(state, x.shape[0]), beta, onehot)

    def predict(self, x, iterations: int | None = None, chunk: int = 1000):
        """Predicted class (argmax of the output potentials) per row of ``x``, relaxed from zero.

        Uses ``hyper.inference_iterations`` sweeps unless ``iterations`` is given. Returns a NumPy
        int64 array.
        """
        x = self.check_inputs(x)
        its = self.hyper.inference_iterations if iterations is None else iterations
        out = [self.xp.argmax(self.relax(x[i:i + chunk], iterations=its)[-1], axis=1)
               for i in range(0, x.shape[0], chunk)]
        return np.asarray(_to_host(self.xp.concatenate(out)), dtype=np.int64)

    def _check_state(self, state, batch: int) -> list:
        if len(state) != self.num_layers:
            raise DRNError(f"state has {len(state)} layers; expected {self.num_layers}")
        checked = []
        for l, (s, n) in enumerate(zip(state, self.sizes[1:])):
            if tuple(s.shape) != (batch, n):
                raise DRNError(f"state[{l}] has shape {tuple(s.shape)}; expected ({batch}, {n})")
            checked.append(self.to_device(s).copy())
        return checked

    # -- circuit --------------------------------------------------------------------------------
    def node_ids(self) -> list[np.ndarray]:
        """Node numbers used by :meth:`to_network`: inputs first, then each non-input layer.

        Node 0 is ground; the ``2 * num_pixels`` input nodes are ``1 ..``, followed by layer 1, ...
        """
        ids, start = [], 1
        for n in (2 * self.sizes[0], *self.sizes[1:]):
            ids.append(np.arange(start, start + n))
            start += n
        return ids

    def to_network(self, x):
        """The same circuit, for one input ``x`` (num_pixels,), as a :class:`resgraph.Network`.

        Input node ``j`` is held at ``+gain x_j`` (then ``-gain x_j``) by a voltage source to ground;
        each positive conductance becomes a resistor (zero ones are absent); excitatory units get a
        diode from ground (anode 0), inhibitory ones a diode to ground (cathode 0); each non-zero
        bias is a current source from ground into its unit. Node numbers: :meth:`node_ids`.
        """
        from ..network import Network

        x = np.asarray(x)
        if x.ndim != 1:
            raise DRNError(f"to_network takes one example of shape ({self.sizes[0]},); got {x.shape}")
        x = _to_host(self.check_inputs(x[None]))[0].astype(np.float64)
        ids = self.node_ids()
        num_nodes = int(ids[-1][-1]) + 1
        volts = self.gain * np.concatenate((x, -x))
        res_a, res_b, res_g = [], [], []
        for l, w in enumerate(self.weights):
            w = _to_host(w).astype(np.float64)
            j, k = np.nonzero(w > 0)
            res_a.append(ids[l][j])
            res_b.append(ids[l + 1][k])
            res_g.append(w[j, k])
        anodes, cathodes = [], []
        for l in range(1, self.num_layers):
            units, half = ids[l], self.sizes[l] // 2
            anodes += [np.zeros(half, dtype=np.int64), units[half:]]
            cathodes += [units[:half], np.zeros(units.size - half, dtype=np.int64)]
        src_to, src_i = [], []
        for l, b in enumerate(self.biases):
            b = _to_host(b).astype(np.float64)
            (k,) = np.nonzero(b)
            src_to.append(ids[l + 1][k])
            src_i.append(b[k])
        src_to = _concat(src_to, np.int64)
        return Network.from_arrays(
            num_nodes,
            resistors=(_concat(res_a, np.int64), _concat(res_b, np.int64), _concat(res_g, np.float64)),
            diodes=(_concat(anodes, np.int64), _concat(cathodes, np.int64)),
            voltage_sources=(ids[0], np.zeros(ids[0].size, dtype=np.int64), volts),
            current_sources=(np.zeros(src_to.size, dtype=np.int64), src_to, _concat(src_i, np.float64)),
        )

    def __repr__(self) -> str:
        return (f"DRN(sizes={self.sizes}, gain={self.gain:g}, backend={self.backend!r}, "
                f"dtype={self.dtype.name!r})")


def _concat(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _to_host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def _check_beta(beta, allow_negative: bool) -> float:
    try:
        beta = float(beta)
    except (TypeError, ValueError) as exc:
        raise DRNError(f"beta = {beta!r} is not a number") from exc
    if not np.isfinite(beta) or (beta < 0 and not allow_negative):
        raise DRNError(f"beta = {beta!r} must be a finite {'number' if allow_negative else 'non-negative number'}")
    return beta


def _check_iterations(iterations, name: str = "iterations") -> int:
    """``iterations`` as an int if it is a positive integer; DRNError naming ``name`` otherwise."""
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise DRNError(f"{name} = {iterations!r} must be a positive integer")
    return int(iterations)


def relax_phase(kernels, args: tuple, iterations: int, tol: float | None) -> int:
    """Run ``kernels.relax(*args, ...)``: ``iterations`` sweeps, or with ``tol`` sweeps until
    ``kernels.kkt_residual(*args) <= tol`` (amperes), ``iterations`` being the cap.

    Returns the number of sweeps done; raises :class:`ConvergenceError` when the cap is hit.
    """
    if tol is None:
        kernels.relax(*args, iterations)
        return iterations
    if not tol > 0:
        raise DRNError(f"tol = {tol!r} must be positive")
    for done in range(iterations + 1):
        residual = kernels.kkt_residual(*args)
        if residual <= tol:
            return done
        if done < iterations:
            kernels.relax(*args, 1)
    raise ConvergenceError(f"KKT residual {residual:.3g} A still above tol = {tol:g} A after {iterations} sweeps")


def check_positive_conductances(totals: list, beta: float, xp) -> None:
    """Raise :class:`NudgingError` if a unit's total conductance (``+ beta`` at the outputs) is <= 0."""
    last = len(totals) - 1
    for l, g in enumerate(totals):
        g_eff = g + beta if l == last else g
        bad = xp.nonzero(g_eff <= 0)[0]
        if bad.size:
            k = int(bad[0])
            what = "output" if l == last else "hidden"
            extra = (f" = {float(g[k]):.4g} S of weights {beta:+g} S of nudging" if l == last and beta
                     else f" = {float(g_eff[k]):.4g} S")
            raise NudgingError(f"{what} unit {k} of layer {l + 1} has non-positive total conductance"
                               f"{extra}: that phase has no steady state (reduce beta, or "
                               f"revive the unit's conductances)")


def preset(name: str, backend: str = "numba", dtype="float32", seed: int = 0) -> DRN:
    """The published DRN ``name`` (one of :data:`PRESETS`), hyperparameters in ``model.hyper``.

    ``model.preset`` keeps the :class:`Preset` (with the paper's test error for reference).
    """
    if name not in PRESETS:
        raise DRNError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    model = DRN(p.sizes, p.gain, backend=backend, dtype=dtype, seed=seed, hyper=p.hyper)
    model.preset = p
    return model
