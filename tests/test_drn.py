"""Deep resistive networks: relaxation, EP/BP gradients, training kernels, checkpoints, errors."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy.optimize import minimize

import resgraph
from resgraph.drn import DRN, PRESETS, Hyper, ConvergenceError, DRNError, NudgingError, Trainer, preset
from resgraph.drn.backprop import implicit_gradients, truncated_bp_gradients
from resgraph.errors import BackendError


def small(backend="numpy", dtype="float64", sizes=(12, 8, 6, 4), gain=3.0, seed=1):
    """A small two-hidden-layer DRN with random biases, so every element type matters.

    Its outputs have ~0.1-1 S of input conductance, so it trains with beta = 0.05.
    """
    model = DRN(sizes, gain=gain, backend=backend, dtype=dtype, seed=seed, hyper=Hyper(beta=0.05))
    rng = np.random.default_rng(seed + 100)
    for b in model.biases:
        b[...] = rng.normal(0.0, 0.3, b.shape)
    return model


def inputs(model, batch, seed=2):
    return np.random.default_rng(seed).random((batch, model.sizes[0]))


def power(model, x, flat, beta=0.0, target=None):
    """Power dissipated (minus bias work, plus nudging) for one example: the function relax minimises."""
    sizes = model.sizes[1:]
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    layers = [model.gain * np.concatenate((x, -x))] + parts
    e = 0.0
    for l, w in enumerate(model.weights):
        e += 0.5 * (w * (layers[l][:, None] - layers[l + 1][None, :]) ** 2).sum()
        e -= model.biases[l] @ layers[l + 1]
    if beta:
        e += 0.5 * beta * ((layers[-1] - target) ** 2).sum()
    return e


# -- model and presets ------------------------------------------------------------------------

def test_presets_match_the_published_table():
    assert set(PRESETS) == {"xs", "1h", "2h", "3h", "xl"}
    m = preset("3h", backend="numpy")
    assert m.sizes == (784, 1024, 1024, 1024, 10) and m.gain == 4000.0
    assert m.hyper.beta == 2.0 and m.hyper.iterations == 6 and m.hyper.batch_size == 4
    assert m.hyper.lr_biases == (0.0005, 0.002, 0.008, 0.0005)
    xs = preset("xs", backend="numpy")
    assert [w.shape for w in xs.weights] == [(1568, 100), (100, 10)]
    assert [b.shape for b in xs.biases] == [(100,), (10,)]


def test_initialisation_is_clipped_uniform_and_seeded():
    m = preset("xs", backend="numpy", dtype="float32", seed=3)
    w0 = m.weights[0]
    assert w0.dtype == np.float32 and w0.min() == 0.0 and w0.max() <= 1 / np.sqrt(1568)
    assert 0.4 < (w0 == 0).mean() < 0.6  # half the uniform draws are negative, clipped to 0
    assert all((b == 0).all() for b in m.biases)
    assert np.array_equal(w0, preset("xs", backend="numpy", dtype="float32", seed=3).weights[0])
    assert not np.array_equal(w0, preset("xs", backend="numpy", dtype="float32", seed=4).weights[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(sizes=(784,)), "at least"),
    (dict(sizes=(784, 0, 10)), r"sizes\[1\]"),
    (dict(gain=-1.0), "gain"),
    (dict(dtype="float16"), "float16"),
    (dict(dtype="banana"), "banana"),
])
def test_bad_model_arguments_raise(kwargs, match):
    with pytest.raises(DRNError, match=match):
        DRN(**{"backend": "numpy", **kwargs})


def test_bad_backend_and_preset_raise():
    with pytest.raises(BackendError, match="tpu"):
        DRN(backend="tpu")
    with pytest.raises(DRNError, match="xxl"):
        preset("xxl")
    if importlib.util.find_spec("cupy") is None:
        with pytest.raises(BackendError, match="cupy"):
            DRN(backend="cupy")


def test_bad_relax_arguments_raise():
    m = small()
    x = inputs(m, 3)
    with pytest.raises(DRNError, match=r"shape \(3, 11\)"):
        m.relax(x[:, :11])
    with pytest.raises(DRNError, match="int64"):
        m.relax(np.ones((2, 12), dtype=np.int64))
    with pytest.raises(DRNError, match="NaN"):
        m.relax(np.full((1, 12), np.nan))
    with pytest.raises(DRNError, match="needs a target"):
        m.relax(x, beta=0.5)
    with pytest.raises(DRNError, match="labels"):
        m.relax(x, beta=0.5, target=np.array([0, 1, 4]))
    with pytest.raises(DRNError, match="iterations"):
        m.relax(x, iterations=0)
    with pytest.raises(DRNError, match="tol"):
        m.relax(x, tol=-1.0)
    with pytest.raises(DRNError, match="hebb"):
        Trainer(m, algorithm="hebb")
    with pytest.raises(DRNError, match="batch_size"):
        Trainer(m, batch_size=0)


# -- relaxation -------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_relaxed_state_minimises_the_power(beta):
    """The tol-relaxed state equals an independent bound-constrained minimiser of the power."""
    m = small()
    x = inputs(m, 2)
    labels = np.array([1, 3])
    states = m.relax(x, beta=beta, target=labels, tol=1e-12)
    assert m.kkt_residual(x, states, beta=beta, target=labels) <= 1e-12
    half = [n // 2 for n in m.sizes[1:-1]]
    bounds = []
    for n, h in zip(m.sizes[1:-1], half):
        bounds += [(0, None)] * h + [(None, 0)] * (n - h)
    bounds += [(None, None)] * m.sizes[-1]
    for b in range(2):
        onehot = np.eye(m.sizes[-1])[labels[b]]
        res = minimize(lambda v: power(m, x[b], v, beta, onehot), np.zeros(len(bounds)),
                       method="L-BFGS-B", bounds=bounds, options=dict(ftol=1e-15, gtol=1e-12, maxiter=10000))
        ours = np.concatenate([s[b] for s in states])
        assert power(m, x[b], ours, beta, onehot) <= res.fun + 1e-9
        np.testing.assert_allclose(ours, res.x, atol=1e-5)


def test_relaxation_respects_diodes_and_decreases_power():
    m = small(seed=5)
    x = inputs(m, 1)[0]
    previous = np.inf
    state = None
    for _ in range(6):
        state = m.relax(x, iterations=1, state=None if state is None else [s[None] for s in state])
        e = power(m, x, np.concatenate(state))
        assert e <= previous + 1e-12
        previous = e
    for s, n in zip(state[:-1], m.sizes[1:-1]):
        assert (s[: n // 2] >= 0).all() and (s[n // 2:] <= 0).all()


def test_tol_cap_raises_convergence_error():
    m = small()
    with pytest.raises(ConvergenceError, match="tol"):
        m.relax(inputs(m, 2), tol=1e-14, iterations=1)


def test_negative_nudging_beyond_the_output_conductance_raises():
    m = small()
    worst = float(m.weights[-1].sum(axis=0).min())
    with pytest.raises(NudgingError, match="output unit"):
        m.relax(inputs(m, 2), beta=-(worst + 0.01), target=np.array([0, 1]))


def _have_solver() -> bool:
    try:
        return callable(resgraph.solve) and callable(resgraph.Network.from_arrays)
    except (ImportError, AttributeError):
        return False


@pytest.mark.skipif(not _have_solver(), reason="resgraph.solve not available yet")
def test_to_network_gives_the_same_steady_state():
    m = preset("xs", backend="numpy", dtype="float64", seed=0)
    m.biases[0][...] = np.random.default_rng(0).normal(0, 0.05, 100)
    x = inputs(m, 1)[0] * (np.random.default_rng(1).random(784) < 0.3)
    ours = np.concatenate(m.relax(x, tol=1e-12))
    net = m.to_network(x)
    potentials = np.asarray(resgraph.solve(net, tol=1e-12).potentials)
    ids = np.concatenate(m.node_ids()[1:])
    np.testing.assert_allclose(potentials[ids], ours, atol=1e-7 * m.gain)
    np.testing.assert_allclose(potentials[m.node_ids()[0]], m.gain * np.concatenate((x, -x)))


# -- gradients --------------------------------------------------------------------------------

def _ep_gradient(m, x, labels, beta):
    free = m.relax(x, tol=1e-13)
    minus = m.relax(x, beta=-beta, target=labels, tol=1e-13, state=free)
    plus = m.relax(x, beta=beta, target=labels, tol=1e-13, state=free)
    return m.kernels.ep_gradients(m.to_device(x), m.gain, minus, plus, beta), free


def _flat(grads):
    return np.concatenate([g.ravel() for g in grads[0] + grads[1]])


def test_ep_gradient_tends_to_the_exact_gradient_as_beta_shrinks():
    m = small()
    x, labels = inputs(m, 3), np.array([0, 2, 3])
    onehot = np.eye(4)[labels]
    _, free = _ep_gradient(m, x, labels, 1e-3)
    exact = _flat(implicit_gradients(m, x, onehot, free))
    betas = (0.01, 0.0025, 0.000625)  # small against the outputs' ~0.1 S input conductance
    errors = [np.abs(_flat(_ep_gradient(m, x, labels, beta)[0]) - exact).max() for beta in betas]
    assert errors[-1] < 1e-3 * np.abs(exact).max()
    # centred EP is second-order accurate: quartering beta divides the error by ~16
    assert errors[1] < errors[0] / 8 and errors[2] < errors[1] / 8


def test_truncated_bp_matches_finite_differences():
    m = small()
    x, labels = inputs(m, 2), np.array([1, 2])
    onehot = np.eye(4)[labels]
    start = [0.1 * s for s in m.relax(x, iterations=2)]

    def cost():
        state = [s.copy() for s in start]
        m.kernels.relax(m.weights, m.biases, m.kernels.input_drive(m.weights[0], x, m.gain),
                        m.conductances(0.0), state, 0.0, None, 3)
        return 0.5 * ((state[-1] - onehot) ** 2).sum() / 2

    gw, gb = truncated_bp_gradients(m, x, onehot, [s.copy() for s in start], 3)
    rng = np.random.default_rng(0)
    checked = 0
    for params, grads in ((m.weights, gw), (m.biases, gb)):
        for p, g in zip(params, grads):
            for flat in rng.choice(p.size, 4, replace=False):
                i = np.unravel_index(flat, p.shape)
                if p.ndim == 2 and p[i] == 0:
                    continue  # a clipped conductance: one-sided; skip
                h = 1e-6
                p[i] += h
                up = cost()
                p[i] -= 2 * h
                down = cost()
                p[i] += h
                assert abs((up - down) / (2 * h) - g[i]) < 1e-6 + 1e-4 * abs(g[i])
                checked += 1
    assert checked >= 12


def test_truncated_bp_from_the_steady_state_tends_to_the_implicit_gradient():
    m = small()
    x, labels = inputs(m, 2), np.array([3, 0])
    onehot = np.eye(4)[labels]
    free = m.relax(x, tol=1e-13)
    exact = _flat(implicit_gradients(m, x, onehot, free))
    bp = _flat(truncated_bp_gradients(m, x, onehot, [s.copy() for s in free], 300))
    np.testing.assert_allclose(bp, exact, atol=1e-8 * np.abs(exact).max())


# -- training ---------------------------------------------------------------------------------

def _data(n, seed=0, pixels=784):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, pixels)) * (rng.random((n, pixels)) < 0.25)).astype(np.float32)
    return x, rng.integers(0, 10, n)


@pytest.mark.parametrize("n", [4, 8])
def test_compiled_epoch_equals_the_generic_kernels(n):
    """The fused numba batch loop and the generic NumPy per-batch path agree to rounding."""
    x, y = _data(n)
    result = {}
    for backend in ("numpy", "numba"):
        m = preset("xs", backend=backend, dtype="float64", seed=0)
        m.biases[0][...] = np.linspace(-0.1, 0.1, 100)
        tr = Trainer(m, seed=7)
        err = tr.train_epoch(x, y)
        result[backend] = (err, m.weights + m.biases + tr.state)
    assert result["numpy"][0] == result["numba"][0]
    for a, b in zip(result["numpy"][1], result["numba"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_compiled_epoch_equals_the_generic_kernels_with_three_hidden_layers():
    """Middle layers (neighbours above and below, hidden-to-hidden updates) in the fused kernel."""
    x, y = _data(12, pixels=12)
    result = {}
    for backend in ("numpy", "numba"):
        m = small(backend=backend, sizes=(12, 16, 16, 16, 10), seed=3)
        m.hyper = Hyper(beta=0.05, iterations=6, inference_iterations=6).with_layers(4)
        tr = Trainer(m, batch_size=4)
        tr.train_epoch(x, y)
        result[backend] = m.weights + m.biases + tr.state
    for a, b in zip(result["numpy"], result["numba"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert any(not np.array_equal(w, small(sizes=(12, 16, 16, 16, 10), seed=3).weights[l])
               for l, w in enumerate(result["numba"][:4]))


def test_numba_training_is_deterministic_and_resumes_bit_for_bit(tmp_path):
    x, y = _data(202)
    runs = []
    for _ in range(2):
        m = preset("xs", backend="numba", seed=0)
        tr = Trainer(m, seed=1)
        tr.train_epoch(x, y)
        runs.append(tr.state_dict())
    for key in runs[0]:
        assert np.array_equal(runs[0][key], runs[1][key]), key
    # continue the run for one epoch vs save, reload into a fresh trainer, continue
    np.savez(tmp_path / "ckpt.npz", **runs[0])
    m = preset("xs", backend="numba", seed=0)
    tr = Trainer(m, seed=1)
    tr.train_epoch(x, y)
    tr.train_epoch(x, y)
    resumed = Trainer(preset("xs", backend="numba", seed=99), seed=5)
    with np.load(tmp_path / "ckpt.npz") as f:
        resumed.load_state_dict(dict(f))
    assert resumed.epoch == 1
    resumed.train_epoch(x, y)
    a, b = tr.state_dict(), resumed.state_dict()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert resumed.epoch == 2 and np.allclose(a["lr_weights"], 0.006 * 0.99 ** 2)


def test_load_state_dict_rejects_a_mismatch():
    tr = Trainer(small(), batch_size=2)
    other = Trainer(small(sizes=(12, 6, 4)), batch_size=2).state_dict()
    with pytest.raises(DRNError, match="sizes"):
        tr.load_state_dict(other)
    with pytest.raises(DRNError, match="lacks"):
        tr.load_state_dict({})


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_training_stops_on_a_non_positive_nudged_conductance(backend):
    m = preset("xs", backend=backend, seed=0)
    m.weights[1] *= 0.01  # output conductances sum to ~0.03 S < beta = 1 S
    x, y = _data(8)
    with pytest.raises(NudgingError, match="output|layer 2"):
        Trainer(m).train_epoch(x, y)


def test_partial_batch_and_progress_callback():
    m = small(backend="numba", dtype="float32", sizes=(12, 8, 10))
    x, y = _data(11, pixels=12)
    calls = []
    tr = Trainer(m, batch_size=4)
    err = tr.train_epoch(x, y, progress=lambda done, e: calls.append((done, e)))
    assert calls[-1][0] == 11 and 0 <= err <= 1 and tr.epoch == 1
    with pytest.raises(DRNError, match="train_y"):
        tr.train_epoch(x, y[:5])
    with pytest.raises(DRNError, match="uint8"):
        tr.train_epoch((x * 255).astype(np.uint8), y)


def test_bp_training_runs_and_changes_the_weights():
    m = small(sizes=(12, 8, 10))
    x, y = _data(16, pixels=12)
    before = [w.copy() for w in m.weights]
    Trainer(m, algorithm="bp", batch_size=4).train_epoch(x, y)
    assert all(not np.array_equal(a, b) for a, b in zip(before, m.weights))
    assert all((w >= 0).all() for w in m.weights)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_training_to_a_kkt_tolerance(backend):
    """With hyper.tol every phase relaxes until its KKT residual is below tol (beyond the paper)."""
    x, y = _data(8, pixels=12)
    m = small(backend=backend, sizes=(12, 8, 10))
    m.hyper = Hyper(beta=0.05, tol=1e-9, max_iterations=5000).with_layers(2)
    tr = Trainer(m, batch_size=4)
    tr.train_epoch(x, y)
    assert tr.mean_sweeps > 4  # more than the fixed count was needed for 1e-9 A
    # the persistent state is the last +beta phase: within tol of its steady state, before the update
    m.hyper = Hyper(beta=0.05, tol=1e-9, max_iterations=1).with_layers(2)
    with pytest.raises(ConvergenceError, match="1e-09"):
        Trainer(m, batch_size=4).train_epoch(x, y)


def test_compiled_and_generic_tol_training_agree():
    x, y = _data(8, pixels=12)
    out = {}
    for backend in ("numpy", "numba"):
        m = small(backend=backend, sizes=(12, 8, 10))
        m.hyper = Hyper(beta=0.05, tol=1e-10, max_iterations=5000).with_layers(2)
        tr = Trainer(m, batch_size=4)
        tr.train_epoch(x, y)
        out[backend] = (tr.mean_sweeps, m.weights + m.biases)
    # the compiled kernel relaxes the two nudged phases together (until both meet tol), so it may
    # sweep one of them more often than the generic path: the states agree to ~tol / conductance
    assert abs(out["numpy"][0] - out["numba"][0]) <= 1
    for a, b in zip(out["numpy"][1], out["numba"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def to_host(arrays):
    return [np.asarray(a.get() if hasattr(a, "get") else a) for a in arrays]


@pytest.mark.parametrize("backend", ["numba", "cupy"])
def test_backend_kernels_agree_with_numpy(backend):
    """Every backend's DRN kernels compute what the NumPy reference computes (float64)."""
    try:
        m = small(backend=backend)
    except BackendError as exc:
        pytest.skip(str(exc))
    ref = small(backend="numpy")
    x, labels = inputs(ref, 3), np.array([0, 1, 3])
    for beta in (0.0, 0.02):
        ours = to_host(m.relax(x, beta=beta, target=labels, iterations=3))
        for a, b in zip(ours, ref.relax(x, beta=beta, target=labels, iterations=3)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    free = ref.relax(x, tol=1e-12)
    minus = ref.relax(x, beta=-0.02, target=labels, tol=1e-12, state=free)
    plus = ref.relax(x, beta=0.02, target=labels, tol=1e-12, state=free)
    got = m.kernels.ep_gradients(m.to_device(x), m.gain, [m.to_device(a) for a in minus], [m.to_device(a) for a in plus], 0.02)
    want = ref.kernels.ep_gradients(x, ref.gain, minus, plus, 0.02)
    for a, b in zip(to_host(got[0] + got[1]), want[0] + want[1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert abs(m.kkt_residual(x, [m.to_device(a) for a in free]) - ref.kkt_residual(x, free)) < 1e-12


def test_train_convenience_loop_records_each_epoch():
    from resgraph.drn import train

    m = small(backend="numba", dtype="float32", sizes=(12, 8, 10))
    x, y = _data(40, pixels=12)
    logged = []
    history = train(m, x, y, x[:10], y[:10], epochs=2, log=logged.append)
    assert [h["epoch"] for h in history] == [1, 2] and logged == history
    assert all(0 <= h["train_error"] <= 1 and 0 <= h["test_error"] <= 1 for h in history)
    with pytest.raises(DRNError, match="epochs"):
        train(m, x, y, epochs=0)
