"""Colour sweep on the GPU: one CUDA thread per variable, one kernel launch per colour.

Same update as :mod:`resgraph.backends.numpy_backend.graph` (projected over-relaxed exact
coordinate descent): variable ``k`` of the colour moves to ``(source + sum coupling * x[nbr]) /
total`` (amperes over siemens: volts), over-relaxed by ``omega`` and clipped to the interval its
diodes allow. Variables of one colour are not coupled, so their threads never race; the launches
of successive colours are ordered by the stream. The sweep loop runs on the host and only queues
launches: nothing is read back inside it (the colour boundaries are read once per call).
"""
from __future__ import annotations

import cupy
import numpy as np

from ...errors import BackendError
from ...kkt import ROUNDING_ALLOWANCE

#: Threads per block of the colour kernel.
BLOCK = 256

_SOURCE = r"""
template <typename T>
struct Optimum { T target, lower, upper; };

// Variable k's unconstrained optimum given its neighbours (volts) and its diode interval.
template <typename T>
__device__ Optimum<T> optimum(
        const long long k,
        const long long* __restrict__ indptr, const long long* __restrict__ indices,
        const T* __restrict__ coupling, const T* __restrict__ total, const T* __restrict__ source,
        const T* __restrict__ lower_bound, const T* __restrict__ upper_bound,
        const long long* __restrict__ lower_ptr, const long long* __restrict__ lower_var,
        const T* __restrict__ lower_offset,
        const long long* __restrict__ upper_ptr, const long long* __restrict__ upper_var,
        const T* __restrict__ upper_offset, const T* x) {
    T drive = source[k];
    for (long long t = indptr[k]; t < indptr[k + 1]; ++t) drive += coupling[t] * x[indices[t]];
    T lower = lower_bound[k];
    for (long long t = lower_ptr[k]; t < lower_ptr[k + 1]; ++t) {
        const T bound = x[lower_var[t]] + lower_offset[t];
        lower = bound > lower ? bound : lower;
    }
    T upper = upper_bound[k];
    for (long long t = upper_ptr[k]; t < upper_ptr[k + 1]; ++t) {
        const T bound = x[upper_var[t]] + upper_offset[t];
        upper = bound < upper ? bound : upper;
    }
    return Optimum<T>{drive / total[k], lower, upper};
}

template <typename T>
__device__ T clip(const T value, const T lower, const T upper) {
    const T raised = value > lower ? value : lower;
    return raised < upper ? raised : upper;
}

#define GRAPH_PARAMETERS \
        const long long* __restrict__ indptr, const long long* __restrict__ indices, \
        const T* __restrict__ coupling, const T* __restrict__ total, const T* __restrict__ source, \
        const T* __restrict__ lower_bound, const T* __restrict__ upper_bound, \
        const long long* __restrict__ lower_ptr, const long long* __restrict__ lower_var, \
        const T* __restrict__ lower_offset, \
        const long long* __restrict__ upper_ptr, const long long* __restrict__ upper_var, \
        const T* __restrict__ upper_offset
#define GRAPH_ARGUMENTS indptr, indices, coupling, total, source, lower_bound, upper_bound, \
        lower_ptr, lower_var, lower_offset, upper_ptr, upper_var, upper_offset

template <typename T>
__global__ void colour_update(const long long start, const long long stop, GRAPH_PARAMETERS,
                              T* x, const T omega) {
    const long long k = start + (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= stop) return;
    const Optimum<T> o = optimum<T>(k, GRAPH_ARGUMENTS, x);
    x[k] = clip<T>(x[k] + omega * (o.target - x[k]), o.lower, o.upper);
}

// Every variable's optimum given its neighbours and its diode interval, for optima().
template <typename T>
__global__ void optima(const long long n, GRAPH_PARAMETERS, const T* x, T* target, T* lower, T* upper) {
    const long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const Optimum<T> o = optimum<T>(k, GRAPH_ARGUMENTS, x);
    target[k] = o.target;
    lower[k] = o.lower;
    upper[k] = o.upper;
}

// Per variable: the current (A) by which it is off its projected optimum, less its rounding
// allowance (allowance times |source| + |Q| |x| in its row), for sweep_residual.
template <typename T>
__global__ void imbalance(const long long n, GRAPH_PARAMETERS, const T* x, const double allowance, T* off) {
    const long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const Optimum<T> o = optimum<T>(k, GRAPH_ARGUMENTS, x);
    T magnitude = fabs(source[k]) + total[k] * fabs(x[k]);
    for (long long t = indptr[k]; t < indptr[k + 1]; ++t) magnitude += fabs(coupling[t] * x[indices[t]]);
    off[k] = total[k] * fabs(x[k] - clip<T>(o.target, o.lower, o.upper)) - (T)(allowance * magnitude);
}
"""
_NAMES = {np.dtype(np.float32): "colour_update<float>", np.dtype(np.float64): "colour_update<double>"}
_IMBALANCE = {np.dtype(np.float32): "imbalance<float>", np.dtype(np.float64): "imbalance<double>"}
_OPTIMA = {np.dtype(np.float32): "optima<float>", np.dtype(np.float64): "optima<double>"}
_MODULE = cupy.RawModule(code=_SOURCE, options=("--std=c++17",),
                         name_expressions=(*_NAMES.values(), *_IMBALANCE.values(), *_OPTIMA.values()))


def _graph_arrays(graph):
    return (graph.indptr, graph.indices, graph.coupling, graph.total_conductance, graph.source,
            graph.lower_bound, graph.upper_bound, graph.lower_ptr, graph.lower_var,
            graph.lower_offset, graph.upper_ptr, graph.upper_var, graph.upper_offset)


def _check_dtypes(graph, x) -> None:
    if x.dtype not in _NAMES or graph.coupling.dtype != x.dtype:
        raise BackendError(f"cupy colour sweep needs float32 or float64 arrays of one dtype; got x "
                           f"{x.dtype} and graph {graph.coupling.dtype}")


def colour_sweep(graph, x: cupy.ndarray, omega: float, sweeps: int) -> None:
    """Run ``sweeps`` projected over-relaxed colour sweeps on the device array ``x`` in place.

    ``graph`` is a :class:`resgraph.compiled.SweepArrays` of device arrays: int64 indices, floats
    of ``x``'s dtype (float32 or float64).
    """
    _check_dtypes(graph, x)
    kernel = _MODULE.get_function(_NAMES[x.dtype])
    ptr = cupy.asnumpy(graph.colour_ptr)
    launches = [(np.int64(a), np.int64(b), (int(b - a) + BLOCK - 1) // BLOCK)
                for a, b in zip(ptr[:-1], ptr[1:]) if b > a]
    arguments = (*_graph_arrays(graph), x, x.dtype.type(omega))
    for _ in range(int(sweeps)):
        for start, stop, blocks in launches:
            kernel((blocks,), (BLOCK,), (start, stop, *arguments))


def optima(graph, x: cupy.ndarray):
    """See :func:`resgraph.backends.numpy_backend.graph.optima`; device arrays."""
    _check_dtypes(graph, x)
    n = x.size
    target, lower, upper = cupy.empty_like(x), cupy.empty_like(x), cupy.empty_like(x)
    if n:
        _MODULE.get_function(_OPTIMA[x.dtype])(((n + BLOCK - 1) // BLOCK,), (BLOCK,),
                                                (np.int64(n), *_graph_arrays(graph), x, target, lower, upper))
    return target, lower, upper


def sweep_residual(graph, x: cupy.ndarray) -> float:
    """See :func:`resgraph.backends.numpy_backend.graph.sweep_residual`; computed on the device,
    one number read back."""
    _check_dtypes(graph, x)
    n = x.size
    if n == 0:
        return 0.0
    off = cupy.empty_like(x)
    _MODULE.get_function(_IMBALANCE[x.dtype])(((n + BLOCK - 1) // BLOCK,), (BLOCK,),
                                               (np.int64(n), *_graph_arrays(graph), x,
                                                np.float64(ROUNDING_ALLOWANCE), off))
    return max(0.0, float(off.max().get()))
