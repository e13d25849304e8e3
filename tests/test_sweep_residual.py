"""``sweep_residual``: the backends' convergence test of coordinate descent (sweeps alone)."""
import numpy as np
import pytest

import resgraph as rg
from circuits import random_network
from resgraph.backends import get_backend
from resgraph.kkt import constraint_slack, current_scale, diode_currents, kkt_report


def _networks(coupled: bool):
    """Feasible random circuits of 8..400 nodes (draws whose diodes contradict the sources are
    skipped)."""
    rng = np.random.default_rng(11)
    nets = []
    for n in (8, 30, 60, 400):
        while True:
            net = random_network(rng, n, extra_resistors=n, num_vs=3, num_cs=3)
            # Diodes to ground (bounds) always; between free nodes (coupled) only when asked.
            for k in rng.choice(np.arange(1, n), max(1, n // 4), replace=False):
                net.add_diode(int(k), 0) if rng.random() < 0.5 else net.add_diode(0, int(k))
            if coupled:
                for _ in range(max(1, n // 5)):
                    a, b = rng.choice(np.arange(1, n), 2, replace=False)
                    net.add_diode(int(a), int(b))
            try:
                net.compile()
            except rg.InfeasibleDiodeError:
                continue
            nets.append(net)
            break
    return nets


def _points(c, rng):
    """A few feasible points: the start, part-way through coordinate descent, and converged."""
    numba = get_backend("numba")
    x = c.feasible_start.copy()
    yield x.copy()
    for sweeps in (1, 3, 2000):
        numba.colour_sweep(c.sweep, x, 1.5, sweeps)
        yield x.copy()


@pytest.mark.parametrize("coupled", [False, True])
def test_numpy_and_numba_agree(coupled):
    numpy_be, numba_be = get_backend("numpy"), get_backend("numba")
    rng = np.random.default_rng(0)
    for net in _networks(coupled):
        c = net.compile()
        for x in _points(c, rng):
            a = numpy_be.sweep_residual(c.sweep, x)
            b = numba_be.sweep_residual(c.sweep, x)
            assert a == pytest.approx(b, rel=1e-12, abs=1e-15)


def test_is_the_kcl_residual_when_diodes_only_bound_nodes():
    """Without diodes between free nodes: scaled as the certificate scales it, never above the
    scaled KKT residual; equal to the certificate's KCL excess where the variables are off their
    diode bounds, and zero at the steady state."""
    numba = get_backend("numba")
    rng = np.random.default_rng(1)
    for net in _networks(coupled=False):
        c = net.compile()
        points = list(_points(c, rng))
        for x in points:
            active = c.diode_is_constraint & (constraint_slack(c, x) <= 1e-12)
            report = kkt_report(c, x, diode_currents(c, x, active))
            assert numba.sweep_residual(c.sweep, x) / report.current_scale <= report.scaled * (1 + 1e-9) + 1e-15
        assert numba.sweep_residual(c.sweep, points[0]) > 1e-3
        sol = rg.solve(c, tol=1e-12)
        assert numba.sweep_residual(c.sweep, sol.variables) <= 1e-11 * current_scale(c, sol.variables)
        unbounded = rg.Network.from_arrays(net.num_nodes, resistors=net.arrays("resistor"),
                                           voltage_sources=net.arrays("voltage_source"),
                                           current_sources=net.arrays("current_source")).compile()
        x = unbounded.feasible_start
        report = kkt_report(unbounded, x, np.zeros(0))
        assert numba.sweep_residual(unbounded.sweep, x) == pytest.approx(report.kcl_excess, rel=1e-9)
        assert report.kcl_excess / report.current_scale == pytest.approx(report.scaled, rel=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_sweeps_alone_stop_on_it_and_certify_on_the_host(backend):
    for net in _networks(coupled=False):
        sol = rg.solve(net, backend=backend, polish=False, tol=1e-9)
        assert sol.converged and sol.kkt.scaled <= 1e-9 and sol.polish_iterations == 0
    # Where coordinate descent stalls on a diode between free nodes, the certificate says so.
    net = rg.Network(4)
    net.add_voltage_source(1, 0, 1.0)
    net.add_resistor(1, 2, 1.0)
    net.add_resistor(3, 0, 1.0)
    net.add_diode(2, 3)                # conducts 0.5 A in the steady state
    net.add_resistor(2, 0, 1e-3)
    sol = rg.solve(net, backend=backend, polish=False, tol=1e-9, max_sweeps=200)
    exact = rg.solve(net, backend=backend, tol=1e-9)
    assert exact.converged and exact.diode_currents[0] > 0.4
    assert not sol.converged and sol.kkt.scaled > 0.1            # stuck at v2 = v3 = 0
    assert abs(sol.potentials - exact.potentials).max() > 0.4
