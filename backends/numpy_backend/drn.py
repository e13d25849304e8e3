"""Deep-resistive-network kernels, written once for any NumPy-like array module.

Every function takes its array module ``xp`` from its arguments (NumPy here; CuPy arrays work
unchanged), so a GPU backend can reuse them. Arrays and units:

``weights[l]``  (fan_in, fan_out) conductances (siemens, >= 0) between layer ``l`` and ``l + 1``;
                ``weights[0]`` has ``2 * num_pixels`` rows: the ``+A x`` sources, then the ``-A x`` ones.
``biases[l]``   (n,) current (amperes) injected into each unit of non-input layer ``l + 1``.
``state[l]``    (batch, n) potentials (volts) of non-input layer ``l + 1``; the last is the output layer.
``drive``       (batch, n_1) current that the input sources push into the first layer at zero potential:
                ``sum_j g_in[j, k] v_in[j]`` (see :func:`input_drive`).
``conductances[l]`` (n,) total conductance of each unit of layer ``l + 1`` to its neighbours
                (see :func:`total_conductances`), the nudging conductance ``beta`` excluded.
``target``      (batch, n_out) voltages of the nudging sources (one-hot labels), or None when beta == 0.

In hidden layers the first ``n // 2`` units are excitatory (diode from ground: ``v >= 0``), the rest
inhibitory (``v <= 0``); output units are linear.

Interface every backend's ``drn`` module provides (``resgraph.drn`` calls nothing else):

``array_module(a)``                          numpy or cupy
``input_drive(w_in, x, gain) -> drive``
``total_conductances(weights) -> conductances``
``relax(weights, biases, drive, conductances, state, beta, target, iterations) -> None`` (in place)
``kkt_residual(weights, biases, drive, conductances, state, beta, target) -> float``
``ep_gradients(x, gain, minus, plus, beta) -> (weight_grads, bias_grads)``
``sgd_step(weights, biases, weight_grads, bias_grads, lr_weights, lr_biases) -> None`` (in place)

Optionally ``train_batches(...)`` (see ``numba_backend.drn``): a fused loop over many EP batches,
which :class:`resgraph.drn.Trainer` uses instead of the per-batch kernels when present.
"""
from __future__ import annotations

import sys

import numpy as np


def array_module(a):
    """``numpy`` or ``cupy``, whichever owns array ``a``."""
    return sys.modules["cupy"] if type(a).__module__.startswith("cupy") else np


def input_drive(w_in, x, gain: float):
    """Current (batch, n_1) pushed into layer 1 by the sources ``+gain x`` and ``-gain x``.

    Equals ``concat(gain x, -gain x) @ w_in`` computed as ``gain (x @ w_in[:n] - x @ w_in[n:])``.
    It is constant while the network relaxes, so it is computed once per batch and phase.
    """
    n = x.shape[1]
    return gain * (x @ w_in[:n] - x @ w_in[n:])


def total_conductances(weights):
    """Per non-input layer, each unit's summed conductance to the layers below and above (siemens)."""
    totals = [w.sum(axis=0) for w in weights]
    for l in range(len(weights) - 1):
        totals[l] = totals[l] + weights[l + 1].sum(axis=1)
    return totals


def _clip_to_diodes(p):
    """Project potentials ``p`` (batch, n) of a hidden layer on its diodes' constraints, in place."""
    xp = array_module(p)
    half = p.shape[1] // 2
    xp.maximum(p[:, :half], 0, out=p[:, :half])
    xp.minimum(p[:, half:], 0, out=p[:, half:])
    return p


def _optimal_layer(l, weights, biases, drive, conductances, state, beta, target):
    """Potentials of layer ``l`` minimising the power given its neighbours, and its total conductance.

    Returns ``(p, g)``: ``p`` before projection on the diodes; ``g`` the unit conductances (with beta
    on the output layer).
    """
    last = len(weights) - 1
    current = drive if l == 0 else state[l - 1] @ weights[l]
    current = current + biases[l]
    g = conductances[l]
    if l < last:
        current += state[l + 1] @ weights[l + 1].T
    elif beta != 0.0:
        current += beta * target
        g = g + beta
    return current / g, g


def _project(l, p, num_layers):
    return _clip_to_diodes(p) if l < num_layers - 1 else p


def relax(weights, biases, drive, conductances, state, beta: float, target, iterations: int) -> None:
    """Exact block coordinate descent, in place on ``state``: ``iterations`` sweeps.

    A sweep sets every even-indexed non-input layer (layers 1, 3, ...) to its exact optimum given its
    neighbours, then every odd-indexed one. The caller guarantees positive unit conductances
    (``conductances[-1] + beta > 0`` included).
    """
    num_layers = len(weights)
    for _ in range(iterations):
        for parity in (0, 1):
            for l in range(parity, num_layers, 2):
                p, _ = _optimal_layer(l, weights, biases, drive, conductances, state, beta, target)
                state[l][...] = _project(l, p, num_layers)


def kkt_residual(weights, biases, drive, conductances, state, beta: float, target) -> float:
    """Largest KKT violation of ``state``, in amperes.

    For each unit, ``g (v - proj(p))``: the net current into an unblocked unit (Kirchhoff's current
    law), or the current a blocking diode would have to conduct the wrong way. Zero exactly at the
    steady state.
    """
    num_layers = len(weights)
    worst = 0.0
    for l in range(num_layers):
        p, g = _optimal_layer(l, weights, biases, drive, conductances, state, beta, target)
        violation = g * (state[l] - _project(l, p, num_layers))
        worst = max(worst, float(abs(violation).max()))
    return worst


def ep_gradients(x, gain: float, minus, plus, beta: float):
    """Centred equilibrium-propagation gradient estimates ``(weight_grads, bias_grads)``.

    With ``dE/dg_jk = mean_b (v_j - v_k)^2 / 2`` and ``dE/db_k = -mean_b v_k`` evaluated at the states
    ``plus`` (nudged with ``+beta``) and ``minus`` (``-beta``), the estimate is
    ``(dE/dtheta(plus) - dE/dtheta(minus)) / (2 beta)``. Expanded so that no (batch, fan_in, fan_out)
    tensor is formed; the input potentials are the same in both phases and cancel.
    """
    xp = array_module(x)
    batch = x.shape[0]
    scale = 1.0 / (4.0 * beta * batch)
    weight_grads, bias_grads = [], []
    for l in range(len(plus)):
        post_sq = ((plus[l] * plus[l]).sum(axis=0) - (minus[l] * minus[l]).sum(axis=0)) * scale
        if l == 0:
            t = (x.T @ (plus[0] - minus[0])) * (2.0 * gain * scale)
            grad = xp.concatenate((post_sq - t, post_sq + t))
        else:
            pre_sq = ((plus[l - 1] ** 2).sum(axis=0) - (minus[l - 1] ** 2).sum(axis=0)) * scale
            cross = plus[l - 1].T @ plus[l] - minus[l - 1].T @ minus[l]
            grad = pre_sq[:, None] + post_sq[None, :] - (2.0 * scale) * cross
        weight_grads.append(grad)
        bias_grads.append((minus[l] - plus[l]).sum(axis=0) * (1.0 / (2.0 * beta * batch)))
    return weight_grads, bias_grads


def sgd_step(weights, biases, weight_grads, bias_grads, lr_weights, lr_biases) -> None:
    """``param -= lr * grad`` in place, then conductances clipped at 0 (they cannot be negative)."""
    xp = array_module(weights[0])
    for w, b, gw, gb, lw, lb in zip(weights, biases, weight_grads, bias_grads, lr_weights, lr_biases):
        w -= w.dtype.type(lw) * gw.astype(w.dtype, copy=False)
        xp.maximum(w, 0, out=w)
        b -= b.dtype.type(lb) * gb.astype(b.dtype, copy=False)
