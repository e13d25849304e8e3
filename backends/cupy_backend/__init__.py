"""The cupy backend: the same kernels on an NVIDIA GPU, through CuPy (an optional dependency).

Importing this package never imports CuPy; :func:`load` (called by
:func:`resgraph.backends.get_backend`) and the DRN kernels (:mod:`.drn`) first call
:func:`cupy_module`, which raises :class:`resgraph.BackendError` naming what is missing: CuPy
itself, or a CUDA driver and device it can run a kernel on.
"""
from __future__ import annotations

from types import ModuleType

from ...errors import BackendError
from .. import Backend

#: How to get CuPy, quoted in the error raised when it is missing.
INSTALL_HINT = ('pip install "resgraph[cupy]" (CUDA 12; "resgraph[cupy-cuda13]" or '
                '"resgraph[cupy-cuda11]" for other CUDA versions)')


def cupy_module() -> ModuleType:
    """CuPy, after checking that it runs a kernel on the current GPU.

    Raises :class:`BackendError` with the underlying error's text when CuPy is not installed,
    fails to import, finds no CUDA driver or device, or cannot compile a kernel (e.g. NVRTC
    missing). Costs one tiny kernel launch (compiled once, then cached by CuPy).
    """
    try:
        import cupy
    except ImportError as exc:
        raise BackendError(f"backend 'cupy' needs CuPy, which is not installed here ({exc}); "
                           f"install it with {INSTALL_HINT}") from exc
    except Exception as exc:  # CuPy raises CUDA errors of its own types at import
        raise BackendError(f"backend 'cupy': CuPy is installed but failed to import "
                           f"({type(exc).__name__}: {exc})") from exc
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
        if devices:
            (cupy.ones(1, dtype=cupy.float32) + 1).get()
    except Exception as exc:  # CUDARuntimeError (no driver, driver too old), NVRTC errors...
        raise BackendError(
            f"backend 'cupy' needs a usable CUDA GPU, but CuPy {cupy.__version__} failed: "
            f"{type(exc).__name__}: {exc} (check `nvidia-smi`, and that the CuPy wheel matches the "
            f"driver's CUDA version: {INSTALL_HINT})") from exc
    if devices == 0:
        raise BackendError("backend 'cupy' needs a CUDA GPU, but the CUDA driver reports none")
    return cupy


def load() -> Backend:
    cupy = cupy_module()
    from . import drn, graph

    return Backend(
        name="cupy",
        xp=cupy,
        colour_sweep=graph.colour_sweep,
        sweep_residual=graph.sweep_residual,
        optima=graph.optima,
        to_device=cupy.asarray,
        to_host=cupy.asnumpy,
        drn=drn,
        info={"cupy": cupy.__version__},
    )
