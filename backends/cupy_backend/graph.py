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

#: Threads per block of the colour kernel.
BLOCK = 256

_SOURCE = r"""
template <typename T>
__global__ void colour_update(
        const long long start, const long long stop,
        const long long* __restrict__ indptr, const long long* __restrict__ indices,
        const T* __restrict__ coupling, const T* __restrict__ total, const T* __restrict__ source,
        const T* __restrict__ lower_bound, const T* __restrict__ upper_bound,
        const long long* __restrict__ lower_ptr, const long long* __restrict__ lower_var,
        const T* __restrict__ lower_offset,
        const long long* __restrict__ upper_ptr, const long long* __restrict__ upper_var,
        const T* __restrict__ upper_offset,
        T* x, const T omega) {
    const long long k = start + (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= stop) return;
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
    const T moved = x[k] + omega * (drive / total[k] - x[k]);
    const T raised = moved > lower ? moved : lower;
    x[k] = raised < upper ? raised : upper;
}
"""
_NAMES = {np.dtype(np.float32): "colour_update<float>", np.dtype(np.float64): "colour_update<double>"}
_MODULE = cupy.RawModule(code=_SOURCE, options=("--std=c++17",), name_expressions=tuple(_NAMES.values()))


def colour_sweep(graph, x: cupy.ndarray, omega: float, sweeps: int) -> None:
    """Run ``sweeps`` projected over-relaxed colour sweeps on the device array ``x`` in place.

    ``graph`` is a :class:`resgraph.compiled.SweepArrays` of device arrays: int64 indices, floats
    of ``x``'s dtype (float32 or float64).
    """
    if x.dtype not in _NAMES or graph.coupling.dtype != x.dtype:
        raise BackendError(f"cupy colour sweep needs float32 or float64 arrays of one dtype; got x "
                           f"{x.dtype} and graph {graph.coupling.dtype}")
    kernel = _MODULE.get_function(_NAMES[x.dtype])
    ptr = cupy.asnumpy(graph.colour_ptr)
    launches = [(np.int64(a), np.int64(b), (int(b - a) + BLOCK - 1) // BLOCK)
                for a, b in zip(ptr[:-1], ptr[1:]) if b > a]
    arrays = (graph.indptr, graph.indices, graph.coupling, graph.total_conductance, graph.source,
              graph.lower_bound, graph.upper_bound, graph.lower_ptr, graph.lower_var,
              graph.lower_offset, graph.upper_ptr, graph.upper_var, graph.upper_offset, x,
              x.dtype.type(omega))
    for _ in range(int(sweeps)):
        for start, stop, blocks in launches:
            kernel((blocks,), (BLOCK,), (start, stop, *arrays))
