"""Backpropagation baselines for DRNs: truncated BP through relaxation sweeps, and the exact gradient.

Both differentiate the squared-error cost ``C = mean_b 1/2 ||v_out - y||^2`` with respect to the
conductances and bias currents, returning ``(weight_grads, bias_grads)`` laid out like
``model.weights`` / ``model.biases`` (and like :func:`ep_gradients`, which estimates the same thing).

* :func:`truncated_bp_gradients` (the published BP baseline): from a given state, run ``iterations``
  more sweeps and backpropagate through them (reverse mode, the initial state held constant).
* :func:`implicit_gradients`: implicit differentiation at the exact steady state with the diodes'
  active set fixed, ``dC/dtheta = -lambda^T d(grad_v E)/dtheta`` where ``H_FF lambda_F = dC/dv_F``
  over the units not held at 0 V by their diode (``H`` the Hessian of the power, a weighted Laplacian).

These run with the NumPy-like kernels of the model's backend (no compiled path); they are baselines.
"""
from __future__ import annotations

import numpy as np

from .model import DRN, _to_host


def truncated_bp_gradients(model: DRN, x, target, state: list, iterations: int):
    """Gradient of the cost after ``iterations`` sweeps started from ``state``, by reverse mode.

    ``x`` (batch, pixels) device array, ``target`` (batch, outputs) one-hot voltages. ``state`` is
    advanced in place to the end of the sweeps (as the published trainer does).
    """
    xp, w, L = model.xp, model.weights, model.num_layers
    batch, pixels = x.shape
    drive = model.kernels.input_drive(w[0], x, model.gain)
    totals = model.conductances(0.0)
    tape = []
    for _ in range(iterations):
        for parity in (0, 1):
            for l in range(parity, L, 2):
                below = state[l - 1].copy() if l > 0 else None
                above = state[l + 1].copy() if l < L - 1 else None
                current = (drive if l == 0 else below @ w[l]) + model.biases[l]
                if above is not None:
                    current = current + above @ w[l + 1].T
                p = current / totals[l]
                if l < L - 1:
                    half = p.shape[1] // 2
                    mask = xp.concatenate((p[:, :half] >= 0, p[:, half:] <= 0), axis=1)
                    state[l][...] = xp.where(mask, p, 0)
                else:
                    mask = None
                    state[l][...] = p
                tape.append((l, p, mask, below, above))
    adjoint = [xp.zeros_like(s) for s in state]
    adjoint[-1] = (state[-1] - target) / batch
    gw = [xp.zeros_like(a) for a in w]
    gb = [xp.zeros_like(b) for b in model.biases]
    for l, p, mask, below, above in reversed(tape):
        a = adjoint[l] if mask is None else adjoint[l] * mask
        adjoint[l] = xp.zeros_like(a)
        d_current = a / totals[l]
        d_total = -(d_current * p).sum(axis=0)
        gb[l] += d_current.sum(axis=0)
        if l == 0:
            t = model.gain * (x.T @ d_current)
            gw[0][:pixels] += t
            gw[0][pixels:] -= t
        else:
            gw[l] += below.T @ d_current
            adjoint[l - 1] += d_current @ w[l].T
        gw[l] += d_total[None, :]
        if above is not None:
            gw[l + 1] += d_current.T @ above
            gw[l + 1] += d_total[:, None]
            adjoint[l + 1] += d_current @ w[l + 1]
    return gw, gb


def implicit_gradients(model: DRN, x, target, state: list):
    """Exact gradient at the steady state ``state`` (from ``model.relax(x, tol=...)``), active set fixed.

    Units of hidden layers at exactly 0 V count as held by their diode (their potential does not
    move with the parameters). Dense solve per example: meant for tests and small networks.
    """
    x = np.asarray(_to_host(model.check_inputs(x)), dtype=np.float64)
    target = np.asarray(_to_host(target), dtype=np.float64)
    w = [np.asarray(_to_host(a), dtype=np.float64) for a in model.weights]
    v = [np.asarray(_to_host(s), dtype=np.float64) for s in state]
    totals = [np.asarray(_to_host(t), dtype=np.float64) for t in model.kernels.total_conductances(w)]
    batch, L = x.shape[0], model.num_layers
    sizes = model.sizes[1:]
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    hessian = np.diag(np.concatenate(totals))
    for l in range(1, L):
        rows, cols = slice(offsets[l - 1], offsets[l]), slice(offsets[l], offsets[l + 1])
        hessian[rows, cols] = -w[l]
        hessian[cols, rows] = -w[l].T
    lam = np.zeros((batch, offsets[-1]))
    for b in range(batch):
        held = np.concatenate([v[l][b] == 0 if l < L - 1 else np.zeros(sizes[l], bool) for l in range(L)])
        free = ~held
        rhs = np.zeros(offsets[-1])
        rhs[offsets[L - 1]:] = (v[-1][b] - target[b]) / batch
        lam[b, free] = np.linalg.solve(hessian[np.ix_(free, free)], rhs[free])
    lams = [lam[:, offsets[l]:offsets[l + 1]] for l in range(L)]
    x2 = model.gain * np.concatenate((x, -x), axis=1)
    gw, gb = [], []
    for l in range(L):
        below = x2 if l == 0 else v[l - 1]
        lam_below = np.zeros_like(x2) if l == 0 else lams[l - 1]
        # dC/dg_jk = -sum_b (lam_k - lam_j)(v_k - u_j)
        grad = (-(lams[l] * v[l]).sum(axis=0)[None, :] + below.T @ lams[l] + lam_below.T @ v[l]
                - (lam_below * below).sum(axis=0)[:, None])
        gw.append(grad)
        gb.append(lams[l].sum(axis=0))
    return gw, gb
