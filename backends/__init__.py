"""Backend registry: a backend is a small set of array kernels behind one name.

Each backend is a subpackage ``resgraph.backends.<name>_backend`` whose ``BACKEND`` attribute is a
:class:`Backend`. Kernels hold no algorithmic decisions: the drivers in :mod:`resgraph.solve` and
:mod:`resgraph.drn` call them, so every backend computes the same thing.

Kernels
-------
``colour_sweep(graph, x, omega, sweeps)``
    In-place projected over-relaxed coordinate descent on the free variables ``x`` of a
    :class:`resgraph.compiled.CompiledNetwork` given as plain arrays (``graph``, a
    :class:`resgraph.compiled.SweepArrays` already moved to the backend's device by
    ``to_device``), colour by colour, ``sweeps`` times.
``sweep_residual(graph, x)``
    Largest current (A) by which a variable is off its projected optimum given its neighbours,
    ``g |x - clip(target)|``, less the rounding allowance of the KKT certificate
    (:class:`resgraph.kkt.KKTReport`): the convergence test of coordinate descent, computed
    where ``x`` lives (one number comes back; the driver scales it by the certificate's
    ``current_scale``).
``optima(graph, x)``
    Every variable's optimum given its neighbours (volts) and its diode interval, all from the
    same ``x``: arrays ``(target, lower, upper)`` (used by the coarse step, :mod:`resgraph.coarse`).
``shift_terms(graph, x)`` (optional)
    The coarse step's direction and sums in one fused pass, as
    :func:`resgraph.coarse.shift_terms` computes them from ``optima``; backends without it use that.
``to_device(array)`` / ``to_host(array)``
    Move arrays to / from the backend's memory.
``drn``
    Module with the deep-resistive-network kernels (see :mod:`resgraph.drn`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

from ..errors import BackendError

__all__ = ["Backend", "get_backend", "available_backends", "host_backend", "BACKEND_NAMES"]

#: Backends resgraph knows, in order of preference on a CPU.
BACKEND_NAMES = ("numba", "numpy", "cupy")


@dataclass(frozen=True)
class Backend:
    """A named set of kernels over one array module ``xp`` (numpy or cupy)."""

    name: str
    xp: ModuleType
    colour_sweep: Callable[..., None]
    sweep_residual: Callable[..., float]
    optima: Callable[..., tuple]
    to_device: Callable[[Any], Any]
    to_host: Callable[[Any], Any]
    drn: ModuleType | None = None
    info: dict = field(default_factory=dict)
    shift_terms: Callable[..., tuple] | None = None


def host_backend(name: str, graph: ModuleType, drn: ModuleType) -> Backend:
    """A backend whose arrays are NumPy arrays in host memory (the numpy and numba backends)."""
    import numpy as np

    return Backend(name=name, xp=np, colour_sweep=graph.colour_sweep, sweep_residual=graph.sweep_residual,
                   optima=graph.optima, to_device=np.asarray, to_host=np.asarray, drn=drn,
                   shift_terms=getattr(graph, "shift_terms", None))


_cache: dict[str, Backend] = {}


def get_backend(name: str | Backend) -> Backend:
    """Return the backend called ``name`` (``"numpy"``, ``"numba"`` or ``"cupy"``).

    Raises :class:`resgraph.BackendError` naming what is missing when the backend cannot run here.
    """
    if isinstance(name, Backend):
        return name
    if name not in _cache:
        if name not in BACKEND_NAMES:
            raise BackendError(
                f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}"
                " (or backend='osqp' in resgraph.solve for the reference QP solver)"
            )
        module = importlib.import_module(f"{__name__}.{name}_backend")
        _cache[name] = module.load()
    return _cache[name]


def available_backends() -> list[str]:
    """Names of the backends that load on this machine."""
    names = []
    for name in BACKEND_NAMES:
        try:
            get_backend(name)
        except BackendError:
            continue
        names.append(name)
    return names
