"""Numba DRN kernels: a compiled run of many EP training batches; the rest is the NumPy kernels.

The batch loop, the three relaxations (free, ``-beta``, ``+beta``), the centred-EP update of every
conductance and bias, and the next batch's input drive all run in one compiled call, so training
at batch size 4 pays no per-batch Python overhead. The loops are serial, in a fixed order (results
are bit-reproducible): at batch 4 one pass over a conductance matrix takes well under a
millisecond, and measured on this project's 2-core machine, splitting it over threads lost more to
synchronisation (and to any other process holding a core) than it gained. The relaxation's matrix
products are hand-written too (BLAS is slow on 4-row products).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..numpy_backend.drn import (  # noqa: F401  (re-exported: same math, no copy)
    array_module,
    ep_gradients,
    input_drive,
    kkt_residual,
    relax,
    sgd_step,
    total_conductances,
)


_JIT = dict(cache=True, error_model="numpy", nogil=True)

# Status codes written by `_train_batches` into status[0].
_OK, _NONPOSITIVE, _UNCONVERGED = 0, 1, 2


@njit(fastmath={"reassoc", "contract"}, **_JIT)
def _product(u, w):
    """``u @ w`` for (batch, fan_in) potentials, skipping units at 0 V (held by their diode).

    Row by row over ``w`` so each conductance is read once per call; at batch 4 this beats BLAS
    (whose kernels are tuned for large products) several times over.
    """
    out = np.zeros((u.shape[0], w.shape[1]), w.dtype)
    for j in range(w.shape[0]):
        row = w[j]
        for r in range(u.shape[0]):
            a = u[r, j]
            if a != 0:
                o = out[r]
                for k in range(w.shape[1]):
                    o[k] += a * row[k]
    return out


@njit(fastmath={"reassoc", "contract"}, **_JIT)
def _product_transposed(v, w):
    """``v @ w.T`` for (batch, fan_out) potentials: one dot product per row of ``w``."""
    out = np.empty((v.shape[0], w.shape[0]), w.dtype)
    for j in range(w.shape[0]):
        row = w[j]
        for r in range(v.shape[0]):
            vr = v[r]
            acc = vr[0] - vr[0]
            for k in range(w.shape[1]):
                acc += row[k] * vr[k]
            out[r, j] = acc
    return out


@njit(**_JIT)
def _solve_layer(l, weights, biases, drive, totals, state, betas, target, out):
    """Write into ``out`` the potentials of layer ``l`` that minimise the power given its neighbours.

    ``betas[r]`` is the nudging conductance of row ``r`` (rows of one call may be nudged differently).
    """
    last = len(weights) - 1
    zero = drive[0, 0] - drive[0, 0]
    if l == 0:
        current = drive
    else:
        current = _product(state[l - 1], weights[l])
    b, g = biases[l], totals[l]
    batch, n = out.shape
    if l < last:
        top = _product_transposed(state[l + 1], weights[l + 1])
        half = n // 2
        for r in range(batch):
            for k in range(n):
                p = ((current[r, k] + b[k]) + top[r, k]) / g[k]
                if k < half:
                    out[r, k] = p if p > zero else zero
                else:
                    out[r, k] = p if p < zero else zero
    else:
        for r in range(batch):
            for k in range(n):
                out[r, k] = ((current[r, k] + b[k]) + betas[r] * target[r, k]) / (g[k] + betas[r])


@njit(**_JIT)
def _sweeps(weights, biases, drive, totals, state, betas, target, iterations):
    """``iterations`` block-coordinate-descent sweeps on ``state`` (see numpy_backend.drn.relax)."""
    for _ in range(iterations):
        for parity in range(2):
            for l in range(parity, len(weights), 2):
                _solve_layer(l, weights, biases, drive, totals, state, betas, target, state[l])


@njit(**_JIT)
def _residual(weights, biases, drive, totals, state, betas, target):
    """Largest KKT violation in amperes (see numpy_backend.drn.kkt_residual)."""
    last = len(weights) - 1
    worst = 0.0
    for l in range(last + 1):
        v = state[l]
        best = np.empty_like(v)
        _solve_layer(l, weights, biases, drive, totals, state, betas, target, best)
        g = totals[l]
        for r in range(v.shape[0]):
            for k in range(v.shape[1]):
                gk = g[k] + betas[r] if l == last else g[k]
                worst = max(worst, abs(gk * (v[r, k] - best[r, k])))
    return worst


@njit(**_JIT)
def _relax(weights, biases, drive, totals, state, betas, target, iterations, tol):
    """Sweeps on ``state``: ``iterations`` of them if ``tol <= 0``, else until the KKT residual is at
    most ``tol`` with ``iterations`` as the cap. Returns the sweeps done, or -1 if the cap was hit."""
    if tol <= 0:
        _sweeps(weights, biases, drive, totals, state, betas, target, iterations)
        return iterations
    for done in range(iterations + 1):
        if _residual(weights, biases, drive, totals, state, betas, target) <= tol:
            return done
        if done < iterations:
            _sweeps(weights, biases, drive, totals, state, betas, target, 1)
    return -1


@njit(**_JIT)
def _first_nonpositive(totals, beta):
    """(layer, unit) of the first unit whose total conductance (+ beta at the outputs) is <= 0."""
    last = len(totals) - 1
    for l in range(last + 1):
        g = totals[l]
        for k in range(g.shape[0]):
            if (g[k] + beta if l == last else g[k]) <= 0:
                return l, k
    return -1, -1


@njit(**_JIT)
def _update_input_layer(w, x, dh, post_sq, s, lr, x_next, has_next, gain, drive_next, colsum):
    """Centred-EP SGD step on the input conductances, fused with the next batch's drive.

    ``w`` (2n, H); ``x`` (B, n) this batch's pixels; ``dh = h(+beta) - h(-beta)`` (B, H);
    ``post_sq[k]`` the scaled sum of ``h+^2 - h-^2``. Gradient of row ``j`` (source ``+A x_j``):
    ``post_sq - s t``, of row ``n + j`` (source ``-A x_j``): ``post_sq + s t``, ``t = x[:, j] . dh``.
    Writes the clipped conductances, their column sums into ``colsum`` and, if ``has_next``, the
    input drive of ``x_next`` into ``drive_next``: one pass over ``w``. Inner loops run over whole
    contiguous rows so that they vectorise; zero pixels (most of MNIST) are skipped.
    """
    batch, n = x.shape
    hidden = w.shape[1]
    zero = lr - lr
    t = np.empty(hidden, w.dtype)
    diff = np.empty(hidden, w.dtype)
    acc = np.zeros(hidden, w.dtype)
    dn = np.zeros((batch, hidden), w.dtype)
    for j in range(n):
        t[:] = 0
        for r in range(batch):
            xr = x[r, j]
            if xr != 0:
                d = dh[r]
                for k in range(hidden):
                    t[k] += xr * d[k]
        plus_row = w[j]
        minus_row = w[n + j]
        for k in range(hidden):
            st = s * t[k]
            wp = max(plus_row[k] - lr * (post_sq[k] - st), zero)
            wn = max(minus_row[k] - lr * (post_sq[k] + st), zero)
            plus_row[k] = wp
            minus_row[k] = wn
            acc[k] += wp + wn
            diff[k] = wp - wn
        if has_next:
            for r in range(batch):
                xr = x_next[r, j]
                if xr != 0:
                    dr = dn[r]
                    for k in range(hidden):
                        dr[k] += xr * diff[k]
    colsum[:] = acc
    for r in range(batch):
        drive_next[r] = gain * dn[r]


@njit(**_JIT)
def _update_layer(w, um, up, vm, vp, pre_sq, post_sq, s, lr, colsum):
    """Centred-EP SGD step on conductances between hidden/output layers; column sums to ``colsum``.

    Gradient ``pre_sq[j] + post_sq[k] - s (up[:, j] . vp[:, k] - um[:, j] . vm[:, k])`` where ``u``
    is the lower layer, ``v`` the upper one, ``m``/``p`` the ``-beta``/``+beta`` phases.
    """
    batch, fan_in = um.shape
    fan_out = w.shape[1]
    zero = lr - lr
    t = np.empty(fan_out, w.dtype)
    acc = np.zeros(fan_out, w.dtype)
    for j in range(fan_in):
        t[:] = 0
        for r in range(batch):
            a = up[r, j]
            if a != 0:
                d = vp[r]
                for k in range(fan_out):
                    t[k] += a * d[k]
            a = um[r, j]
            if a != 0:
                d = vm[r]
                for k in range(fan_out):
                    t[k] -= a * d[k]
        row = w[j]
        for k in range(fan_out):
            new = max(row[k] - lr * ((pre_sq[j] + post_sq[k]) - s * t[k]), zero)
            row[k] = new
            acc[k] += new
    colsum[:] = acc


@njit(**_JIT)
def _scaled_square_difference(plus, minus, scale):
    out = np.zeros(plus.shape[1], plus.dtype)
    for r in range(plus.shape[0]):
        for k in range(plus.shape[1]):
            out[k] += plus[r, k] * plus[r, k] - minus[r, k] * minus[r, k]
    return out * scale


@njit(**_JIT)
def _train_batches(weights, biases, state, minus, plus, nudged, totals, drive, drive_next, drive2, x,
                   x_next, target, target2, betas_free, betas_nudged, images, labels, order, first,
                   num_batches, gain, beta, iterations, tol, lr_weights, lr_biases, scale, bias_scale,
                   s_input, s_hidden, status):
    """Train on ``num_batches`` batches ``order[first + i B: first + (i + 1) B]``; free-phase errors.

    ``state`` (persistent) holds the potentials the previous batch ended in (its ``+beta`` phase),
    from which the free phase starts; both nudged phases start from the free state and relax
    together as one batch of twice the rows (``nudged``: ``-beta`` rows, then ``+beta`` rows), so
    each conductance is read once per sweep for both. On a unit with non-positive total
    conductance, stops before that batch and writes (1, layer, unit, batch) into ``status``.
    """
    num_layers = len(weights)
    last = num_layers - 1
    batch, n = x.shape
    errors = 0
    for i in range(num_batches):
        base = first + i * batch
        if i == 0:
            for r in range(batch):
                x[r] = images[order[base + r]]
            drive[:] = gain * (np.dot(x, weights[0][:n]) - np.dot(x, weights[0][n:]))
            for l in range(num_layers):
                totals[l][:] = weights[l].sum(axis=0)
                if l < last:
                    totals[l][:] += weights[l + 1].sum(axis=1)
        else:
            x[:] = x_next
            drive[:] = drive_next
        layer, unit = _first_nonpositive(totals, -beta)
        if layer >= 0:
            status[0], status[1], status[2], status[3] = _NONPOSITIVE, layer, unit, i
            return errors
        target[:] = 0
        for r in range(batch):
            target[r, labels[order[base + r]]] = 1
        done = _relax(weights, biases, drive, totals, state, betas_free, target, iterations, tol)
        if done < 0:
            status[0], status[1], status[3] = _UNCONVERGED, 0, i
            return errors
        status[4] += done
        for r in range(batch):
            if np.argmax(state[last][r]) != labels[order[base + r]]:
                errors += 1
        for l in range(num_layers):
            nudged[l][:batch] = state[l]
            nudged[l][batch:] = state[l]
        drive2[:batch] = drive
        drive2[batch:] = drive
        target2[:batch] = target
        target2[batch:] = target
        done = _relax(weights, biases, drive2, totals, nudged, betas_nudged, target2, iterations, tol)
        if done < 0:
            status[0], status[1], status[3] = _UNCONVERGED, 1, i
            return errors
        status[4] += 2 * done
        for l in range(num_layers):
            minus[l][:] = nudged[l][:batch]
            plus[l][:] = nudged[l][batch:]
        has_next = i + 1 < num_batches
        if has_next:
            for r in range(batch):
                x_next[r] = images[order[base + batch + r]]
        for l in range(num_layers):
            b = biases[l]
            for r in range(batch):
                for k in range(b.shape[0]):
                    b[k] += lr_biases[l] * bias_scale * (plus[l][r, k] - minus[l][r, k])
            post_sq = _scaled_square_difference(plus[l], minus[l], scale)
            if l == 0:
                _update_input_layer(weights[0], x, plus[0] - minus[0], post_sq, s_input, lr_weights[0],
                                    x_next, has_next, gain, drive_next, totals[0])
            else:
                pre_sq = _scaled_square_difference(plus[l - 1], minus[l - 1], scale)
                _update_layer(weights[l], minus[l - 1], plus[l - 1], minus[l], plus[l], pre_sq, post_sq,
                              s_hidden, lr_weights[l], totals[l])
        for l in range(last):
            totals[l][:] += weights[l + 1].sum(axis=1)
        for l in range(num_layers):
            state[l][:] = plus[l]
    return errors


def train_batches(weights, biases, state, images, labels, order, first: int, num_batches: int,
                  gain: float, beta: float, iterations: int, lr_weights, lr_biases, tol: float = 0.0):
    """Centred-EP SGD on ``num_batches`` full batches taken from ``images[order[first:]]``, in place.

    ``state`` is the persistent (batch, n) potentials list, updated to the last batch's ``+beta``
    state. Each phase runs ``iterations`` sweeps, or with ``tol > 0`` sweeps until its KKT residual
    is at most ``tol`` amperes (``iterations`` then caps it). Returns
    ``(free_phase_errors, sweeps, failure)``: ``sweeps`` the total over all phases run, ``failure``
    None, ``("conductance", layer_index, unit, batch_index)`` for a unit with non-positive total
    conductance, or ``("convergence", phase, -1, batch_index)`` (phase 0 free, 1 the nudged pair,
    which relax together until both are within ``tol``) when the cap was hit; training stops at that
    batch, its update not applied.
    """
    dt = weights[0].dtype.type
    batch = state[0].shape[0]
    n = images.shape[1]
    weights, biases, state = tuple(weights), tuple(biases), tuple(state)
    minus = tuple(np.empty_like(s) for s in state)
    plus = tuple(np.empty_like(s) for s in state)
    nudged = tuple(np.empty((2 * batch, s.shape[1]), s.dtype) for s in state)
    betas = np.concatenate((np.full(batch, -beta), np.full(batch, beta))).astype(weights[0].dtype)
    totals = tuple(np.empty(w.shape[1], weights[0].dtype) for w in weights)
    drive = np.empty((batch, weights[0].shape[1]), weights[0].dtype)
    status = np.zeros(5, np.int64)
    scale = 1.0 / (4.0 * beta * batch)
    errors = _train_batches(
        weights, biases, state, minus, plus, nudged, totals, drive, np.empty_like(drive),
        np.empty((2 * batch, drive.shape[1]), drive.dtype), np.empty((batch, n), images.dtype),
        np.empty((batch, n), images.dtype), np.empty_like(state[-1]), np.empty_like(nudged[-1]),
        np.zeros(batch, drive.dtype), betas, images, labels, order, first, num_batches, dt(gain), dt(beta),
        iterations, dt(tol), np.asarray(lr_weights, weights[0].dtype), np.asarray(lr_biases, weights[0].dtype),
        dt(scale), dt(1.0 / (2.0 * beta * batch)), dt(2.0 * gain * scale), dt(2.0 * scale), status)
    kind = {_OK: None, _NONPOSITIVE: "conductance", _UNCONVERGED: "convergence"}[int(status[0])]
    failure = None if kind is None else (kind, int(status[1]), int(status[2]), int(status[3]))
    return int(errors), int(status[4]), failure
