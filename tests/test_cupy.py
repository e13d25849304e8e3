"""The cupy backend: GPU tests (marked ``gpu``, skipped without a usable device) and CPU checks.

The CPU checks always run: the error raised without CuPy or without a device, that importing
resgraph never imports CuPy, and the backend's host loops (:mod:`resgraph.backends.cupy_backend.loops`)
driven by NumPy models of its fused kernels, against the NumPy and numba backends. The GPU tests
then check each fused kernel against its NumPy model and every public path against the CPU backends.
"""
from __future__ import annotations

import subprocess
import sys
import types
from dataclasses import replace

import numpy as np
import pytest

import resgraph as rg
from circuits import check_kirchhoff, random_network
from resgraph import backends
from resgraph.backends import get_backend
from resgraph.backends.cupy_backend import loops
from resgraph.backends.numba_backend import drn as numba_drn
from resgraph.backends.numpy_backend import drn as numpy_drn
from resgraph.coarse import shift_step
from resgraph.drn import DRN, Hyper, NudgingError, Trainer, preset
from resgraph.errors import BackendError


def _unavailable() -> str | None:
    try:
        get_backend("cupy")
    except BackendError as exc:
        return str(exc)
    return None


UNAVAILABLE = _unavailable()
gpu = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no usable CuPy GPU: {UNAVAILABLE}")


class NumpyOps:
    """NumPy models of the fused kernels of :mod:`resgraph.backends.cupy_backend.fused`."""

    @staticmethod
    def hidden_update(cur, bias, top, g, out):
        p = ((cur + bias) + top) / g
        half = out.shape[-1] // 2
        out[..., :half] = np.maximum(p[..., :half], 0)
        out[..., half:] = np.minimum(p[..., half:], 0)

    @staticmethod
    def output_update(cur, bias, target, g, beta, out):
        out[...] = ((cur + bias) + beta * target) / (g + beta)

    @staticmethod
    def column_step(plus, minus, lr, bias, sq):
        bias += lr * (plus - minus).sum(axis=0)
        sq[...] = (plus * plus - minus * minus).sum(axis=0)

    @staticmethod
    def input_step(w, x, plus, minus, sq, lr, scale, s):
        n = x.shape[1]
        t = x.T @ (plus - minus)
        post = sq * scale
        w[:n] = np.maximum(w[:n] - lr * (post - s * t), 0)
        w[n:] = np.maximum(w[n:] - lr * (post + s * t), 0)

    @staticmethod
    def layer_step(w, lower_plus, lower_minus, upper_plus, upper_minus, pre, post, lr, scale, s):
        t = lower_plus.T @ upper_plus - lower_minus.T @ upper_minus
        w[...] = np.maximum(w - lr * ((pre[:, None] + post[None, :]) * scale - s * t), 0)


def small(backend="numpy", dtype="float64", sizes=(12, 8, 6, 4), seed=1):
    """Two hidden layers and random biases, so that every element type matters."""
    model = DRN(sizes, gain=3.0, backend=backend, dtype=dtype, seed=seed, hyper=Hyper(beta=0.05))
    rng = np.random.default_rng(seed + 100)
    for b in model.biases:
        b[...] = model.to_device(rng.normal(0.0, 0.3, b.shape))
    return model


def data(n, pixels, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, pixels)) * (rng.random((n, pixels)) < 0.25)).astype(np.float32)
    return x, rng.integers(0, 10, n)


def host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


# -- always: errors, imports, and the host loops on NumPy ----------------------------------------

def test_missing_cupy_raises_backend_error_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    monkeypatch.delitem(backends._cache, "cupy", raising=False)
    with pytest.raises(BackendError, match=r'pip install "resgraph\[cupy\]"'):
        get_backend("cupy")
    with pytest.raises(BackendError, match=r'pip install "resgraph\[cupy\]"'):
        DRN(backend="cupy")


def _fake_cupy(device_count):
    runtime = types.SimpleNamespace(getDeviceCount=device_count)
    return types.SimpleNamespace(__version__="0.0-fake", cuda=types.SimpleNamespace(runtime=runtime))


def test_cupy_without_a_device_raises_backend_error_naming_the_cause(monkeypatch):
    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    monkeypatch.delitem(backends._cache, "cupy", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(no_driver))
    with pytest.raises(BackendError, match="usable CUDA GPU.*cudaErrorInsufficientDriver"):
        get_backend("cupy")
    with pytest.raises(BackendError, match="usable CUDA GPU.*cudaErrorInsufficientDriver"):
        DRN(backend="cupy")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 0))
    with pytest.raises(BackendError, match="reports none"):
        get_backend("cupy")
    with pytest.raises(BackendError, match="reports none"):
        DRN(backend="cupy")


def test_importing_resgraph_never_imports_cupy():
    code = ("import sys, resgraph; resgraph.solve; resgraph.drn; resgraph.backends.get_backend('numpy');"
            " import resgraph.backends.cupy_backend.loops; assert 'cupy' not in sys.modules, 'cupy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("beta", [0.0, 0.5, -0.05])
def test_host_relax_loop_equals_the_numpy_kernels(beta):
    m = small()
    x, y = data(5, 12)
    x = x.astype(np.float64)
    target = m.check_targets(y % 4, 5) if beta else None
    drive = numpy_drn.input_drive(m.weights[0], x, m.gain)
    totals = m.conductances(beta)
    expected, got = m.zero_state(5), m.zero_state(5)
    numpy_drn.relax(m.weights, m.biases, drive, totals, expected, beta, target, 7)
    loops.relax(m.weights, m.biases, drive, totals, got, beta, target, 7, NumpyOps)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)


def test_both_nudged_phases_relax_as_one_stacked_state():
    m = small()
    x, y = data(3, 12)
    target = m.check_targets(y % 4, 3)
    drive = numpy_drn.input_drive(m.weights[0], x.astype(np.float64), m.gain)
    totals = m.conductances(-0.05)
    stacked = [np.zeros((2,) + s.shape) for s in m.zero_state(3)]
    loops.relax(m.weights, m.biases, drive, totals, stacked, np.array([-0.05, 0.05]).reshape(2, 1, 1),
                target, 4, NumpyOps)
    for phase, beta in enumerate((-0.05, 0.05)):
        alone = m.zero_state(3)
        numpy_drn.relax(m.weights, m.biases, drive, totals, alone, beta, target, 4)
        for a, b in zip(alone, stacked):
            np.testing.assert_allclose(b[phase], a, rtol=1e-13, atol=1e-15)


def _train_both(model_numba, model_loops, x, y, batches, tol=0.0):
    """numba's compiled batches and the host loops (NumPy ops) from identical models and state."""
    h = model_numba.hyper
    order = np.random.default_rng(3).permutation(x.shape[0])
    results = []
    for m in (model_numba, model_loops):
        state = [np.full(s.shape, 0.01) for s in m.zero_state(h.batch_size)]
        args = (m.weights, m.biases, state, m.check_inputs(x), y, order, 2 * h.batch_size, batches,
                m.gain, h.beta, h.iterations, np.array(h.lr_weights), np.array(h.lr_biases))
        if m is model_numba:
            out = numba_drn.train_batches(*args, tol=tol)
        else:
            out = loops.train_batches(*args, NumpyOps, tol=tol)
        results.append((out, m.weights + m.biases + state))
    return results


def _pair(sizes, **hyper):
    models = [small(sizes=sizes) for _ in range(2)]
    for m in models:
        settings = {"beta": 0.05, "lr_weights": (0.05,), "lr_biases": (0.02,), **hyper}
        m.hyper = Hyper(**settings).with_layers(m.num_layers)
    return models


@pytest.mark.parametrize("sizes", [(12, 8, 6, 4), (12, 8, 10), (12, 10)])
@pytest.mark.parametrize("tol", [0.0, 1e-9])
def test_host_training_loop_equals_the_numba_epoch(sizes, tol):
    x, y = data(40, 12)
    models = _pair(sizes, iterations=4 if tol == 0 else 500)
    (numba_out, numba_arrays), (loop_out, loop_arrays) = _train_both(*models, x, y % sizes[-1], 6, tol)
    assert loop_out == numba_out and numba_out[2] is None
    assert numba_out[1] == 3 * 6 * 4 if tol == 0 else numba_out[1] >= 3 * 6   # >= 1 sweep per phase
    for a, b in zip(numba_arrays, loop_arrays):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


def test_host_training_loop_reports_failures_like_numba():
    x, y = data(40, 12)
    models = _pair((12, 8, 4))
    for m in models:
        m.weights[1][:, 2] = 0.005  # output unit 2: total conductance 0.04 S < beta
    (numba_out, _), (loop_out, _) = _train_both(*models, x, y % 4, 5)
    assert numba_out[2] == ("conductance", 1, 2, 0) and loop_out == numba_out
    (numba_out, _), (loop_out, _) = _train_both(*_pair((12, 8, 4), iterations=2), x, y % 4, 5, tol=1e-14)
    assert loop_out[2] == ("convergence", 0, -1, 0) and loop_out[:2] == numba_out[:2]
    assert numba_out[2][:2] == loop_out[2][:2] and numba_out[2][3] == loop_out[2][3]


def _nvrtc():
    """CuPy's NVRTC binding when CuPy and the NVRTC library are installed (no GPU needed)."""
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception as exc:  # not installed, or libnvrtc missing
        return None, f"NVRTC unavailable: {exc}"
    return nvrtc, None


def test_cuda_sources_compile_with_nvrtc():
    """The graph kernels' CUDA source compiles (for an H100/H200, sm_90) wherever NVRTC loads,
    with or without a GPU: catches CUDA errors on machines that cannot run the GPU tests."""
    nvrtc, reason = _nvrtc()
    if nvrtc is None:
        pytest.skip(reason)
    from resgraph.backends.cupy_backend import graph
    names = [*graph._NAMES.values(), *graph._IMBALANCE.values(), *graph._OPTIMA.values()]
    program = nvrtc.createProgram(graph._SOURCE, "graph.cu", [], [])
    for name in names:
        nvrtc.addNameExpression(program, name)
    try:
        nvrtc.compileProgram(program, ["--gpu-architecture=compute_90", "--std=c++17"])
    except Exception as exc:
        pytest.fail(f"{exc}\n{nvrtc.getProgramLog(program)}")
    assert all(nvrtc.getLoweredName(program, name) for name in names)


# -- GPU: the kernels on the device against the CPU backends ----------------------------------

def _networks():
    rng = np.random.default_rng(0)
    return [random_network(rng, int(n), extra_resistors=int(2 * n), num_diodes=int(n // 3), num_vs=3, num_cs=3)
            for n in (2, 30, 300, 3000)]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_colour_sweeps_residual_optima_and_shift_equal_numba(dtype):
    cupy_be, numba_be = get_backend("cupy"), get_backend("numba")
    for net in _networks():
        c = net.compile()
        graph, device_graph = c.sweep.astype(dtype), c.sweep.astype(dtype, cupy_be.to_device)
        x = c.feasible_start.astype(dtype)
        expected = x.copy()
        numba_be.colour_sweep(graph, expected, 1.5, 25)
        xd = cupy_be.to_device(x)
        cupy_be.colour_sweep(device_graph, xd, 1.5, 25)
        tol = 1e-12 if dtype == np.float64 else 1e-4
        np.testing.assert_allclose(cupy_be.to_host(xd), expected, rtol=tol, atol=tol)
        residual = numba_be.sweep_residual(graph, expected)
        assert cupy_be.sweep_residual(device_graph, cupy_be.to_device(expected)) == pytest.approx(
            residual, rel=1e-10 if dtype == np.float64 else 1e-5, abs=1e-12)
        for a, b in zip(numba_be.optima(graph, expected), cupy_be.optima(device_graph, cupy_be.to_device(expected))):
            np.testing.assert_allclose(cupy_be.to_host(b), a, rtol=tol, atol=tol)
        shifted, shifted_d = expected.copy(), cupy_be.to_device(expected)
        alpha = shift_step(numba_be, graph, shifted)
        assert shift_step(cupy_be, device_graph, shifted_d) == pytest.approx(alpha, rel=tol, abs=tol)
        np.testing.assert_allclose(cupy_be.to_host(shifted_d), shifted, rtol=tol, atol=tol)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-7)])
def test_solve_on_cupy_equals_numba(dtype, tol):
    for net in _networks():
        sol = rg.solve(net, backend="cupy", dtype=dtype, tol=tol)
        check_kirchhoff(net, sol, rtol=max(tol, 1e-8))
        ref = rg.solve(net, backend="numba", tol=1e-9)
        scale = max(1.0, float(np.abs(ref.potentials).max()))
        np.testing.assert_allclose(sol.potentials, ref.potentials, atol=1e-5 * scale)
        assert sol.backend == "cupy"


def _random_like(cp, shape, dtype, rng, low=-1.0, high=1.0):
    return cp.asarray(rng.uniform(low, high, shape).astype(dtype))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_kernels_equal_their_numpy_models(dtype):
    from resgraph.backends.cupy_backend import fused

    cp = get_backend("cupy").xp
    rng = np.random.default_rng(0)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    B, n, H, O = 3, 7, 9, 5

    def check(op, inputs, outputs, positive=()):
        """Run ``op`` on random arrays of the given shapes (scalars as given) and on their host
        copies through its NumPy model; compare the arguments it writes (``outputs``)."""
        args = [_random_like(cp, a, dtype, rng, *((0.5, 2.0) if k in positive else ()))
                if isinstance(a, tuple) else dtype(a) for k, a in enumerate(inputs)]
        model = [host(a).copy() if isinstance(a, cp.ndarray) else a for a in args]
        getattr(fused, op)(*args)
        getattr(NumpyOps, op)(*model)
        for k in outputs:
            np.testing.assert_allclose(host(args[k]), model[k], rtol=rtol, atol=rtol, err_msg=op)

    check("hidden_update", [(B, H), (H,), (2, B, H), (H,), (2, B, H)], [4], positive=(3,))
    check("hidden_update", [(B, H), (H,), (B, H), (H,), (B, H)], [4], positive=(3,))
    check("output_update", [(2, B, O), (O,), (B, O), (O,), (2, 1, 1), (2, B, O)], [5], positive=(3, 4))
    check("output_update", [(B, O), (O,), (B, O), (O,), 0.3, (B, O)], [5], positive=(3,))
    check("column_step", [(B, H), (B, H), 0.1, (H,), (H,)], [3, 4])
    check("input_step", [(2 * n, H), (B, n), (B, H), (B, H), (H,), 0.1, 0.7, 0.3], [0], positive=(0, 1))
    check("layer_step", [(H, O), (B, H), (B, H), (B, O), (B, O), (H,), (O,), 0.1, 0.7, 0.3], [0],
          positive=(0,))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_drn_relax_on_cupy_equals_numpy(dtype):
    x, y = data(5, 12)
    ref, dev = small(dtype=dtype), small(backend="cupy", dtype=dtype)
    rtol = 1e-11 if dtype == "float64" else 1e-4
    for beta in (0.0, 0.05, -0.05):
        target = None if beta == 0 else y % 4
        a = ref.relax(x, beta=beta, target=target, iterations=6)
        b = dev.relax(x, beta=beta, target=target, iterations=6)
        for u, v in zip(a, b):
            np.testing.assert_allclose(host(v), u, rtol=rtol, atol=rtol)
    a = ref.relax(x, tol=1e-6)
    b = dev.relax(x, tol=1e-6)
    assert dev.kkt_residual(x, b) <= 1e-6
    np.testing.assert_allclose(host(b[-1]), a[-1], rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
@gpu
def test_ep_step_on_cupy_equals_numpy():
    x, y = data(4, 12)
    ref, dev = small(), small(backend="cupy")
    for m in (ref, dev):
        Trainer(m, batch_size=4).train_batch(m.check_inputs(x), y % 4, m.zero_state(4))
    for a, b in zip(ref.weights + ref.biases, dev.weights + dev.biases):
        np.testing.assert_allclose(host(b), a, rtol=1e-11, atol=1e-13)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("count, tol", [(8, None), (11, None), (11, 1e-8)])  # 11: a trailing partial
def test_training_epoch_on_cupy_equals_numba(count, tol):                     # batch takes the generic path
    x, y = data(count, 784)
    results = {}
    for backend in ("numba", "cupy"):
        m = preset("xs", backend=backend, dtype="float64", seed=0)
        m.hyper = replace(m.hyper, tol=tol)
        m.biases[0][...] = m.to_device(np.linspace(-0.1, 0.1, 100))
        tr = Trainer(m, seed=7)
        err = tr.train_epoch(x, y)
        results[backend] = ((err, tr.mean_sweeps), [host(a) for a in m.weights + m.biases + tr.state])
    assert results["cupy"][0] == results["numba"][0]
    for a, b in zip(results["numba"][1], results["cupy"][1]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
@gpu
def test_training_on_cupy_stops_on_a_non_positive_nudged_conductance():
    m = preset("xs", backend="cupy", seed=0)
    m.weights[1] *= 0.01  # output conductances sum to ~0.03 S < beta = 1 S
    x, y = data(8, 784)
    with pytest.raises(NudgingError, match="layer 2"):
        Trainer(m).train_epoch(x, y)
