"""resgraph: exact steady states of ideal nonlinear resistive networks, and their training.

>>> import resgraph as rg
>>> net = rg.Network(num_nodes=3)            # node 0 is ground
>>> net.add_voltage_source(1, 0, 1.0)
>>> net.add_resistor(1, 2, 1.0); net.add_resistor(2, 0, 1.0)
>>> round(float(rg.solve(net).potentials[2]), 6)
0.5
"""
from __future__ import annotations

import importlib

from .errors import (
    BackendError,
    ColouringError,
    DataError,
    FloatingNodeError,
    InfeasibleDiodeError,
    InvalidElementError,
    KirchhoffVoltageError,
    NetworkError,
    NodeIndexError,
    ResgraphError,
)

__version__ = "0.1.0"

_LAZY = {
    "Network": ("resgraph.network", "Network"),
    "CompiledNetwork": ("resgraph.compiled", "CompiledNetwork"),
    "solve": ("resgraph.solver", "solve"),
    "Solution": ("resgraph.solution", "Solution"),
    "kkt_report": ("resgraph.kkt", "kkt_report"),
    "get_backend": ("resgraph.backends", "get_backend"),
    "available_backends": ("resgraph.backends", "available_backends"),
    "drn": ("resgraph.drn", None),
    "datasets": ("resgraph.datasets", None),
}

__all__ = [
    "BackendError", "ColouringError", "DataError", "FloatingNodeError", "InfeasibleDiodeError",
    "InvalidElementError", "KirchhoffVoltageError", "NetworkError", "NodeIndexError",
    "ResgraphError", *_LAZY,
]


def __getattr__(name: str):
    # Submodules load on first use so that `import resgraph` stays fast and never needs CuPy.
    if name not in _LAZY:
        raise AttributeError(f"module 'resgraph' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
