"""Host-side loops of the GPU DRN kernels, written against a table of fused ops (array-module generic).

The ops (:mod:`.fused` on the GPU; NumPy models of them in the tests, so these loops run in CI) do
the per-unit and per-conductance arithmetic in one launch each; matrix products go to the array
module (cuBLAS for CuPy). Nothing here reads the device except once per batch in
:func:`train_batches` (a positivity check that must precede the ``-beta`` phase), once at the end,
and, when training to a KKT tolerance, once per layer and sweep (the residual).
"""
from __future__ import annotations

import numpy as np

from ..numpy_backend.drn import array_module, kkt_residual, total_conductances


def _rows_matmul(a, w):
    """``a @ w`` for ``a`` of shape (..., fan_in): one matrix product over all leading axes."""
    return (a.reshape(-1, a.shape[-1]) @ w).reshape(a.shape[:-1] + (w.shape[1],))


def relax(weights, biases, drive, conductances, state, beta, target, iterations: int, ops) -> None:
    """Exact block coordinate descent in place on ``state`` (see numpy_backend.drn.relax).

    ``state[l]`` may carry extra leading axes (e.g. (2, batch, n): both nudged phases at once);
    ``drive``, ``target`` and ``beta`` (a scalar or e.g. (2, 1, 1) per phase) broadcast against them.
    ``target`` may be None when ``beta`` is 0.
    """
    last = len(weights) - 1
    dtype = state[0].dtype.type
    beta = dtype(beta) if np.ndim(beta) == 0 else beta
    target = dtype(0) if target is None else target
    for _ in range(iterations):
        for parity in (0, 1):
            for l in range(parity, last + 1, 2):
                cur = drive if l == 0 else _rows_matmul(state[l - 1], weights[l])
                if l < last:
                    top = _rows_matmul(state[l + 1], weights[l + 1].T)
                    ops.hidden_update(cur, biases[l], top, conductances[l], state[l])
                else:
                    ops.output_update(cur, biases[l], target, conductances[l], beta, state[l])


def _first_nonpositive(totals, beta: float):
    """(layer, unit) of the first unit whose total conductance (``- beta`` at the outputs) is <= 0,
    or None. Reads one small vector back from the device."""
    xp = array_module(totals[0])
    dtype = totals[0].dtype.type
    last = len(totals) - 1
    lowest = xp.stack([g.min() for g in totals]).tolist()
    for l, g in enumerate(totals):
        shift = dtype(beta) if l == last else dtype(0)
        if dtype(lowest[l]) - shift <= 0:
            return l, int(xp.flatnonzero(g - shift <= 0)[0])
    return None


def _relax_to(sweep, residual, iterations: int, tol: float) -> int:
    """``sweep(iterations)`` if ``tol <= 0``, else one ``sweep(1)`` at a time until ``residual()``
    (amperes, read back from the device) is at most ``tol``, ``iterations`` being the cap.
    Returns the sweeps done, or -1 when the cap was hit."""
    if tol <= 0:
        sweep(iterations)
        return iterations
    for done in range(iterations + 1):
        if residual() <= tol:
            return done
        if done < iterations:
            sweep(1)
    return -1


def _relax_phase(weights, biases, drive, totals, state, beta, target, iterations: int, tol: float, ops) -> int:
    """One phase, (batch, n) ``state`` nudged with ``beta``, relaxed as :func:`_relax_to` says."""
    return _relax_to(lambda k: relax(weights, biases, drive, totals, state, beta, target, k, ops),
                     lambda: kkt_residual(weights, biases, drive, totals, state, beta, target),
                     iterations, tol)


def _relax_nudged(weights, biases, drive, totals, nudged, betas, beta: float, target, iterations: int,
                  tol: float, ops) -> int:
    """Both nudged phases as one (2, batch, n) state, like the numba backend, relaxed as
    :func:`_relax_to` says until both KKT residuals are within ``tol``."""
    return _relax_to(
        lambda k: relax(weights, biases, drive, totals, nudged, betas, target, k, ops),
        lambda: max(kkt_residual(weights, biases, drive, totals, [n[p] for n in nudged], sign, target)
                    for p, sign in ((0, -beta), (1, beta))),
        iterations, tol)


def train_batches(weights, biases, state, images, labels, order, first: int, num_batches: int,
                  gain: float, beta: float, iterations: int, lr_weights, lr_biases, ops, tol: float = 0.0):
    """Centred-EP SGD on ``num_batches`` full batches of ``images[order[first:]]``, in place.

    Same contract as the numba backend's ``train_batches``: ``images`` (examples, pixels) on the
    device, ``labels`` and ``order`` host integer arrays; ``state`` (persistent potentials) ends as
    the last batch's ``+beta`` state; each phase runs ``iterations`` sweeps, or with ``tol > 0``
    sweeps to a KKT residual of ``tol`` amperes (``iterations`` the cap). Returns
    ``(free_phase_errors, sweeps, failure)``: ``failure`` None,
    ``("conductance", layer_index, unit, batch_index)`` for a unit with non-positive total
    conductance in the ``-beta`` phase, or ``("convergence", phase, -1, batch_index)`` (phase 0
    free, 1 the two nudged phases, which relax together as one (2, batch, n) state until both are
    within ``tol``); training stops at that batch, its update not applied.
    """
    xp = array_module(weights[0])
    dtype = weights[0].dtype.type
    batch, last = state[0].shape[0], len(weights) - 1
    rows = np.asarray(order[first:first + num_batches * batch])
    xs = images[xp.asarray(rows)]
    signed = xp.concatenate((gain * xs, -gain * xs), axis=1)      # the input sources' volts
    labels = xp.asarray(np.asarray(labels)[rows])
    onehots = (labels[:, None] == xp.arange(state[last].shape[1])).astype(dtype)
    misses = xp.zeros(rows.size, dtype=bool)
    betas = xp.asarray([-beta, beta], dtype=dtype).reshape(2, 1, 1)
    nudged = [xp.empty((2,) + s.shape, dtype=dtype) for s in state]   # [0]: -beta, [1]: +beta
    squares = [xp.empty(s.shape[1], dtype=dtype) for s in state]
    scale = dtype(1.0 / (4.0 * beta * batch))
    bias_lr = [dtype(lr / (2.0 * beta * batch)) for lr in lr_biases]
    s_input, s_hidden = dtype(2.0 * gain / (4.0 * beta * batch)), dtype(2.0 / (4.0 * beta * batch))
    sweeps, failure = 0, None
    for i in range(num_batches):
        part = slice(i * batch, (i + 1) * batch)
        totals = total_conductances(weights)
        failure = _first_nonpositive(totals, beta)
        if failure is not None:
            failure = ("conductance", *failure, i)
            break
        drive = signed[part] @ weights[0]
        target = onehots[part]
        done = _relax_phase(weights, biases, drive, totals, state, 0.0, target, iterations, tol, ops)
        if done < 0:
            failure = ("convergence", 0, -1, i)
            break
        sweeps += done
        xp.not_equal(xp.argmax(state[last], axis=1), labels[part], out=misses[part])
        for s, n in zip(state, nudged):
            n[...] = s
        done = _relax_nudged(weights, biases, drive, totals, nudged, betas, beta, target, iterations, tol, ops)
        if done < 0:
            failure = ("convergence", 1, -1, i)
            break
        sweeps += 2 * done
        for l, (n, sq) in enumerate(zip(nudged, squares)):
            ops.column_step(n[1], n[0], bias_lr[l], biases[l], sq)
        ops.input_step(weights[0], xs[part], nudged[0][1], nudged[0][0], squares[0],
                       dtype(lr_weights[0]), scale, s_input)
        for l in range(1, last + 1):
            ops.layer_step(weights[l], nudged[l - 1][1], nudged[l - 1][0], nudged[l][1], nudged[l][0],
                           squares[l - 1], squares[l], dtype(lr_weights[l]), scale, s_hidden)
        for s, n in zip(state, nudged):
            s[...] = n[1]
    return int(misses.sum()), sweeps, failure
