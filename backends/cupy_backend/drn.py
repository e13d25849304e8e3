"""CuPy DRN kernels: the generic NumPy kernels on device arrays, plus fused relaxation and training.

Same interface as :mod:`resgraph.backends.numpy_backend.drn` and the numba backend's module.
``input_drive``, ``total_conductances``, ``kkt_residual``, ``ep_gradients`` and ``sgd_step`` are the
array-module-generic NumPy kernels called with CuPy arrays. ``relax`` and ``train_batches`` run the
loops of :mod:`.loops` with the fused kernels of :mod:`.fused`: per layer update, one or two cuBLAS
products and one elementwise launch (the divide and diode clip fused); per training batch, one
launch per conductance matrix for the whole centred-EP step. Importing this module raises
:class:`resgraph.BackendError` when CuPy cannot run on a GPU here.
"""
from __future__ import annotations

from ..numpy_backend.drn import (  # noqa: F401  (re-exported: same math, no copy)
    array_module,
    ep_gradients,
    input_drive,
    kkt_residual,
    sgd_step,
    total_conductances,
)
from . import fused, loops


def relax(weights, biases, drive, conductances, state, beta: float, target, iterations: int) -> None:
    """Exact block coordinate descent, in place on ``state`` (see numpy_backend.drn.relax)."""
    loops.relax(weights, biases, drive, conductances, state, beta, target, iterations, fused)


def train_batches(weights, biases, state, images, labels, order, first: int, num_batches: int,
                  gain: float, beta: float, iterations: int, lr_weights, lr_biases, tol: float = 0.0):
    """Centred-EP SGD on ``num_batches`` batches, in place (see :func:`.loops.train_batches`)."""
    return loops.train_batches(weights, biases, state, images, labels, order, first, num_batches,
                               gain, beta, iterations, lr_weights, lr_biases, fused, tol)
