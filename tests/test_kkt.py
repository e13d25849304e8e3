"""The KKT certificate (``kkt_report``, a compiled kernel) against its definition written out in
NumPy, at points that break each condition: random potentials and diode currents of both signs."""
import numpy as np
import pytest

import resgraph as rg
from circuits import random_network
from resgraph.kkt import constraint_slack, kkt_report


def _reference(c, x, lam):
    """The report's fields from their definitions (see :class:`resgraph.kkt.KKTReport`)."""
    con = c.diode_is_constraint
    n = c.num_free
    balance = (np.append(c.q_matrix @ x - c.sweep.source, 0.0)
               + np.bincount(c.diode_anode_var[con], lam[con], n + 1)
               - np.bincount(c.diode_cathode_var[con], lam[con], n + 1))
    slack = constraint_slack(c, x)[con]
    lam = lam[con]
    current_scale = max(1.0, float(np.max(np.abs(c.sweep.source) + abs(c.q_matrix) @ np.abs(x), initial=0.0)))
    voltage_scale = max(1.0, float(np.max(np.abs(c.potentials(x)), initial=0.0)))
    kcl = float(np.max(np.abs(balance[:n]), initial=0.0))
    feasibility = float(np.max(-slack, initial=0.0))
    dual = float(np.max(-lam, initial=0.0))
    complementarity = float(np.max(np.minimum(np.maximum(lam, 0), np.maximum(slack, 0)), initial=0.0))
    scaled = max(kcl / current_scale, feasibility / voltage_scale, dual / current_scale,
                 float(np.max(np.minimum(np.maximum(lam, 0) / current_scale, np.maximum(slack, 0) / voltage_scale),
                              initial=0.0)))
    return kcl, feasibility, dual, complementarity, current_scale, voltage_scale, scaled


@pytest.mark.parametrize("seed", range(6))
def test_report_matches_its_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 300))
    net = random_network(rng, n, extra_resistors=n, num_vs=3, num_cs=3)
    for _ in range(max(1, n // 4)):
        a, b = rng.choice(n, 2, replace=False)
        net.add_diode(int(a), int(b))
    # A diode across a voltage source's terminals is no constraint (both ends one variable).
    plus, minus, volts = net.arrays("voltage_source")
    if plus.size:
        net.add_diode(int(plus[0]), int(minus[0])) if volts[0] <= 0 else net.add_diode(int(minus[0]), int(plus[0]))
    c = net.compile()
    for scale in (0.0, 1e-3, 1.0, 50.0):
        x = scale * rng.normal(size=c.num_free)
        lam = scale * rng.normal(size=c.diode_offset.size)
        report = kkt_report(c, x, lam)
        got = (report.kcl, report.feasibility, report.dual, report.complementarity, report.current_scale,
               report.voltage_scale, report.scaled)
        np.testing.assert_allclose(got, _reference(c, x, lam), rtol=1e-12, atol=1e-300)


def test_report_of_a_solved_network_is_tiny_and_of_a_bad_point_is_not():
    rng = np.random.default_rng(7)
    net = random_network(rng, 50, extra_resistors=50, num_diodes=10, num_vs=2, num_cs=2)
    sol = rg.solve(net, tol=1e-12)
    assert sol.kkt.scaled <= 1e-12
    c = net.compile()
    bad = kkt_report(c, sol.variables + 0.1, sol.diode_currents)
    assert bad.kcl > 1e-3
