"""The coarse step of coordinate descent (:mod:`resgraph.coarse`) and the ``optima`` kernels."""
import numpy as np
import pytest

import resgraph as rg
from circuits import random_network
from resgraph.backends import get_backend
from resgraph.coarse import shift_step, shift_terms
from resgraph.kkt import constraint_slack


def _networks():
    """Feasible random circuits with diodes to fixed potentials and between free nodes."""
    rng = np.random.default_rng(5)
    nets = []
    while len(nets) < 12:
        n = int(rng.integers(5, 300))
        net = random_network(rng, n, extra_resistors=n, num_diodes=n // 3, num_vs=3, num_cs=3)
        try:
            net.compile()
        except rg.InfeasibleDiodeError:
            continue
        nets.append(net)
    return nets


def _energy(c, x):
    return 0.5 * x @ (c.q_matrix @ x) - c.sweep.source @ x


def test_optima_agree_between_numpy_and_numba():
    numpy_be, numba_be = get_backend("numpy"), get_backend("numba")
    for net in _networks():
        c = net.compile()
        x = c.feasible_start.copy()
        numba_be.colour_sweep(c.sweep, x, 1.5, 2)
        for a, b in zip(numpy_be.optima(c.sweep, x), numba_be.optima(c.sweep, x)):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_fused_shift_terms_agree_with_the_optima_version():
    """Numba's fused kernel against :func:`resgraph.coarse.shift_terms` on the NumPy backend:
    the same free variables and sums, after 0 to 50 sweeps. (In float32 a variable whose pull
    rounds to about zero may count as free in one and not the other: float64 only.)"""
    numpy_be, numba_be = get_backend("numpy"), get_backend("numba")
    assert numba_be.shift_terms is not None and numpy_be.shift_terms is None
    for net in _networks():
        c = net.compile()
        x = c.feasible_start.copy()
        for sweeps in (0, 1, 5, 50):
            numba_be.colour_sweep(c.sweep, x, 1.5, sweeps)
            d, sums = numba_be.shift_terms(c.sweep, x)
            d_ref, sums_ref = shift_terms(numpy_be, c.sweep, x)
            assert np.array_equal(d, d_ref)
            np.testing.assert_allclose(sums, sums_ref, rtol=1e-12, atol=1e-12 * max(1.0, abs(sums_ref[0])))


@pytest.mark.parametrize("backend,dtype", [("numpy", np.float64), ("numba", np.float64), ("numba", np.float32)])
def test_shift_step_lowers_the_dissipation_and_keeps_every_diode(backend, dtype):
    be = get_backend(backend)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    moved = 0
    for net in _networks():
        c = net.compile()
        graph = c.sweep.astype(dtype)
        x = c.feasible_start.astype(dtype)
        for sweeps in (0, 1, 5, 50):
            be.colour_sweep(graph, x, 1.5, sweeps)
            before = _energy(c, x.astype(np.float64))
            y = x.copy()
            alpha = shift_step(be, graph, y)
            moved += alpha != 0.0
            assert _energy(c, y.astype(np.float64)) <= before + tol * max(1.0, abs(before))
            assert np.all(constraint_slack(c, y.astype(np.float64))[c.diode_is_constraint] >= -tol)
            assert np.all(y >= graph.lower_bound - tol) and np.all(y <= graph.upper_bound + tol)
            np.testing.assert_allclose(y - x, np.where(y != x, dtype(alpha), 0.0), atol=tol)
    assert moved > 10           # the step does act on these circuits


def test_shift_step_is_the_exact_line_minimum_without_diodes():
    """A long chain pinned at one end and fed 1 mA at the other: one step along the all-ones
    direction lands on the minimum along it (zero slope)."""
    n = 400
    net = rg.Network.from_arrays(n + 1, resistors=(np.arange(n), np.arange(1, n + 1), np.ones(n)),
                                 current_sources=(np.zeros(1, np.int64), np.array([n]), np.array([1e-3])))
    c = net.compile()
    be = get_backend("numba")
    x = np.zeros(c.num_free)
    alpha = shift_step(be, c.sweep, x)
    assert alpha > 0
    slope = np.sum(c.sweep.source - c.q_matrix @ x)
    assert abs(slope) <= 1e-12
    assert alpha == pytest.approx(1e-3, rel=1e-12)   # 1 mA into the one unit resistor to ground


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_solve_with_and_without_the_coarse_step_agree(backend):
    for net in _networks():
        with_step = rg.solve(net, backend=backend, tol=1e-10)
        without = rg.solve(net, backend=backend, tol=1e-10, coarse=False)
        assert with_step.converged and without.converged
        scale = max(1.0, float(np.abs(without.potentials).max()))
        np.testing.assert_allclose(with_step.potentials, without.potentials, atol=1e-8 * scale)


def test_small_network_with_no_diode_at_its_limit_is_solved_outright():
    """Divider 1 V -- 1 S -- node 2 -- 1 S -- ground, and a diode from node 2 to a node held at
    ``clamp`` volts: at the start (0 V) the diode is 0.3 V or 2 V from its limit."""
    def divider(clamp):
        net = rg.Network(4)
        net.add_voltage_source(1, 0, 1.0)
        net.add_resistor(1, 2, 1.0)
        net.add_resistor(2, 0, 1.0)
        net.add_voltage_source(3, 0, clamp)
        net.add_diode(2, 3)                     # v2 <= clamp
        return net

    sol = rg.solve(divider(2.0), tol=1e-12)     # the diode stays off: one linear solve
    assert sol.converged and sol.sweeps == 0 and sol.polish_iterations == 1
    np.testing.assert_allclose(sol.potentials, [0.0, 1.0, 0.5, 2.0], atol=1e-15)
    sol = rg.solve(divider(0.3), tol=1e-12)     # it conducts: the active-set iteration finds it
    assert sol.converged and sol.sweeps == 0 and sol.polish_iterations == 2
    np.testing.assert_allclose(sol.potentials, [0.0, 1.0, 0.3, 0.3], atol=1e-15)
    np.testing.assert_allclose(sol.diode_currents, [0.4], atol=1e-15)   # 0.7 A in, 0.3 A to ground
