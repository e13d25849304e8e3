"""Fused CuPy kernels of the DRN: one launch each where NumPy code chains several array operations.

Every kernel is templated on the float type ``T`` of its arrays (float32 or float64); scalars are
passed as NumPy scalars of that type. Array conventions are those of
:mod:`resgraph.backends.numpy_backend.drn` (potentials in volts, conductances in siemens, currents
in amperes); ``plus``/``minus`` are the potentials of the ``+beta``/``-beta`` phases. The functions
below are the "ops" that :mod:`.loops` drives; tests model each of them in NumPy.
"""
from __future__ import annotations

from . import cupy_module

cupy = cupy_module()

_hidden = cupy.ElementwiseKernel(
    "T cur, T bias, T top, T g, int64 units, int64 half", "T v",
    """
    const T p = ((cur + bias) + top) / g;
    if (i % units < half) v = p > T(0) ? p : T(0);   // excitatory unit: diode from ground, v >= 0
    else v = p < T(0) ? p : T(0);                    // inhibitory unit: diode to ground, v <= 0
    """,
    "resgraph_drn_hidden_update")

_output = cupy.ElementwiseKernel(
    "T cur, T bias, T target, T g, T beta", "T v",
    "v = ((cur + bias) + beta * target) / (g + beta);",
    "resgraph_drn_output_update")

_column = cupy.ElementwiseKernel(
    "raw T plus, raw T minus, T lr, int64 batch", "T bias, T sq",
    """
    const ptrdiff_t units = _ind.size();
    T diff = 0, squares = 0;
    for (ptrdiff_t r = 0; r < batch; ++r) {
        const T p = plus[r * units + i], m = minus[r * units + i];
        diff += p - m;
        squares += p * p - m * m;
    }
    bias += lr * diff;
    sq = squares;
    """,
    "resgraph_drn_column_step")

_input = cupy.ElementwiseKernel(
    "raw T x, raw T plus, raw T minus, raw T sq, T lr, T scale, T s, int64 batch, int64 pixels, "
    "int64 hidden", "T wp, T wn",
    """
    const ptrdiff_t j = i / hidden, k = i % hidden;
    T t = 0;
    for (ptrdiff_t r = 0; r < batch; ++r) {
        const T xr = x[r * pixels + j];
        if (xr != T(0)) t += xr * (plus[r * hidden + k] - minus[r * hidden + k]);
    }
    const T post = sq[k] * scale;
    const T up = wp - lr * (post - s * t), down = wn - lr * (post + s * t);
    wp = up > T(0) ? up : T(0);
    wn = down > T(0) ? down : T(0);
    """,
    "resgraph_drn_input_step")

_layer = cupy.ElementwiseKernel(
    "raw T lower_plus, raw T lower_minus, raw T upper_plus, raw T upper_minus, raw T pre, raw T post, "
    "T lr, T scale, T s, int64 batch, int64 fan_in, int64 fan_out", "T w",
    """
    const ptrdiff_t j = i / fan_out, k = i % fan_out;
    T t = 0;
    for (ptrdiff_t r = 0; r < batch; ++r)
        t += lower_plus[r * fan_in + j] * upper_plus[r * fan_out + k]
             - lower_minus[r * fan_in + j] * upper_minus[r * fan_out + k];
    const T step = w - lr * ((pre[j] + post[k]) * scale - s * t);
    w = step > T(0) ? step : T(0);
    """,
    "resgraph_drn_layer_step")


def hidden_update(cur, bias, top, g, out) -> None:
    """``out = clip(((cur + bias) + top) / g)`` onto each unit's diode, over the last axis.

    ``cur`` is the current from the layer below (or the input drive), ``top`` from the layer
    above, ``g`` the units' total conductance; the first half of the units is clipped at
    ``v >= 0``, the rest at ``v <= 0``. Arrays broadcast against ``out`` (..., units).
    """
    units = out.shape[-1]
    _hidden(cur, bias, top, g, units, units // 2, out)


def output_update(cur, bias, target, g, beta, out) -> None:
    """``out = ((cur + bias) + beta target) / (g + beta)``: the linear output layer, nudged by
    ``beta`` (a scalar, or an array broadcasting against ``out``, e.g. one value per phase)."""
    _output(cur, bias, target, g, beta, out)


def column_step(plus, minus, lr, bias, sq) -> None:
    """Per unit ``k`` of a (batch, n) layer: ``bias[k] += lr * sum_r (plus - minus)[r, k]`` and
    ``sq[k] = sum_r (plus^2 - minus^2)[r, k]`` (C-contiguous ``plus``/``minus``)."""
    _column(plus, minus, lr, plus.shape[0], bias, sq)


def input_step(w, x, plus, minus, sq, lr, scale, s) -> None:
    """Centred-EP SGD step on the input conductances ``w`` (2 n, H), in place, clipped at 0.

    With ``t[j, k] = sum_r x[r, j] (plus - minus)[r, k]`` and ``post = sq * scale``: row ``j``
    (source ``+gain x_j``) steps by ``-lr (post - s t)``, row ``n + j`` by ``-lr (post + s t)``.
    """
    batch, pixels = x.shape
    hidden = w.shape[1]
    _input(x, plus, minus, sq, lr, scale, s, batch, pixels, hidden, w[:pixels], w[pixels:])


def layer_step(w, lower_plus, lower_minus, upper_plus, upper_minus, pre, post, lr, scale, s) -> None:
    """Centred-EP SGD step on the conductances ``w`` (fan_in, fan_out) between two non-input layers:
    ``w -= lr ((pre[j] + post[k]) scale - s t[j, k])``, clipped at 0, where
    ``t = lower_plus' upper_plus - lower_minus' upper_minus`` summed over the batch."""
    batch, fan_in = lower_plus.shape
    _layer(lower_plus, lower_minus, upper_plus, upper_minus, pre, post, lr, scale, s, batch, fan_in,
           w.shape[1], w)
