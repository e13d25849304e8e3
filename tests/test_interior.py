"""The interior-point method that names the conducting set where the active-set iteration cannot."""
import numpy as np
import pytest

import resgraph as rg
import resgraph.interior as interior
import resgraph.polish as polish
from circuits import check_kirchhoff, dense_diode_network
from resgraph.kkt import constraint_slack


def _dense(seed: int, low: int, high: int):
    rng = np.random.default_rng(seed)
    return dense_diode_network(rng, int(rng.integers(low, high)), float(rng.choice([0.0, 2.0, 6.0])))


def test_its_point_is_feasible_and_dissipates_what_the_optimum_does():
    """Small circuits thick with diodes (up to four per node, loops, antiparallel pairs): from the
    compiled feasible start, the method's point satisfies every diode to 1e-9 of the potentials
    and its dissipation is the certified optimum's to 1e-6; its conducting set starts an
    iteration that ends at that optimum."""
    checked = 0
    for seed in range(60):
        net = _dense(seed, 2, 60)
        try:
            c = net.compile()
        except rg.NetworkError:
            continue
        system = interior.newton_system(c)
        if system is None:
            assert not np.any(c.diode_is_constraint)
            continue
        optimum = rg.solve(c, tol=1e-10)
        assert optimum.converged
        result = interior.interior_point(c, c.feasible_start, system)
        vscale = max(1.0, np.abs(optimum.variables).max())
        assert constraint_slack(c, result.x)[c.diode_is_constraint].min() >= -1e-9 * vscale
        best, reach = polish._dissipation(c, optimum.variables)
        assert abs(polish._dissipation(c, result.x)[0] - best) <= 1e-6 * max(1.0, abs(best)) + reach
        solver = polish.SPDSolver(c.mesh_like, None, factorise=False)
        restart = polish._iterate(c, result.x, result.conducting, 1e-10, solver, 50, None, 0, None)
        assert restart.converged
        np.testing.assert_allclose(restart.x, optimum.variables, atol=1e-8 * vscale)
        checked += 1
    assert checked >= 30


def test_no_newton_system_without_diodes_to_decide():
    net = rg.Network(3)
    net.add_resistor(1, 0, 1.0)
    net.add_resistor(2, 1, 1.0)
    assert interior.newton_system(net.compile()) is None


@pytest.mark.parametrize("seed", [183, 19, 32, 84])
def test_where_its_factor_would_fill_in_cg_solves_its_systems_and_it_names_the_set(monkeypatch, seed):
    """Random circuits thick with diodes fill a factor in beyond memory from a few 1e4 nodes on
    (a 3e4-node one: no Newton system, 200 + 200 active-set steps, then 12066 primal active-set
    steps, 276 s). Forced here on small ones: the systems are solved by CG, and the iteration
    restarted from the conducting set the method names ends at the optimum."""
    c = _dense(seed, 20, 300).compile()
    optimum = rg.solve(c, tol=1e-10)
    assert optimum.converged
    monkeypatch.setattr(interior, "MAX_FILL", 0.5)
    system = interior.newton_system(c)
    assert system.factor is None
    result = interior.interior_point(c, c.feasible_start, system)
    solver = polish.SPDSolver(c.mesh_like, None, factorise=False)
    restart = polish._iterate(c, result.x, result.conducting, 1e-10, solver, 50, None, 0, None)
    assert restart.converged
    np.testing.assert_allclose(restart.x, optimum.variables, atol=1e-8 * max(1.0, np.abs(optimum.variables).max()))


def test_the_method_stops_where_it_stalls(monkeypatch):
    """A circuit on which the method ran its ``MAX_STEPS`` (80) without meeting ``GAP_RTOL``: it
    stops once neither its gap nor its residuals have halved for ``STALL_STEPS`` steps, with
    the same conducting set."""
    c = _dense(84, 2, 60).compile()
    system = interior.newton_system(c)
    stopped = interior.interior_point(c, c.feasible_start, system)
    monkeypatch.setattr(interior, "STALL_STEPS", 10**9)
    ran = interior.interior_point(c, c.feasible_start, system)
    assert ran.steps == interior.MAX_STEPS and stopped.steps < 30
    np.testing.assert_array_equal(stopped.conducting, ran.conducting)


@pytest.mark.parametrize("forecast_steps, hands_over", [(0, True), (10**9, False)])
def test_the_iteration_hands_over_once_it_has_cost_what_the_method_would(monkeypatch, forecast_steps,
                                                                          hands_over):
    """The 290-node circuit on which the active-set iteration takes 28 steps (switching one diode
    where it would cycle): with the method forecast to cost nothing, it takes over after
    ``INTERIOR_AFTER`` exact steps and the iteration restarted from its conducting set ends at
    the optimum (no descent); forecast to cost more than anything, it never does."""
    c = _dense(183, 20, 300).compile()
    monkeypatch.setattr(polish, "INTERIOR_STEPS", forecast_steps)
    calls = []
    original = polish.interior_point

    def counted(*args):
        result = original(*args)
        calls.append(result.steps)
        return result

    def no_descent(*args):
        raise AssertionError("the primal active-set method ran")

    monkeypatch.setattr(polish, "interior_point", counted)
    monkeypatch.setattr(polish, "_descend", no_descent)
    steps = []
    result = polish.polish(c, c.feasible_start, 1e-10, 1e-10, on_step=lambda i, changed, exact: steps.append(i))
    assert result.converged
    if hands_over:
        first = polish.INTERIOR_AFTER
        assert len(calls) == 1 and steps[first - 1] == first and steps[first] == first + calls[0] + 1
    else:
        assert calls == [] and steps == list(range(1, 29))
    optimum = rg.solve(c, tol=1e-10)
    np.testing.assert_allclose(result.x, optimum.variables, atol=1e-9 * max(1.0, np.abs(result.x).max()))


def test_the_method_starts_from_the_feasible_start_not_from_coordinate_descents_point(monkeypatch):
    """A 1568-node circuit with 1647 diodes: the interior-point method run from coordinate
    descent's point (potentials up to 3.3e4 V) stalled 17 V from the optimum naming 106 of the
    818 conducting diodes; the iteration from that set cycled, twice, and the primal active-set
    method took 3.5 s. From the feasible start it names them all."""
    def no_descent(*args):
        raise AssertionError("the primal active-set method ran")

    monkeypatch.setattr(polish, "_descend", no_descent)
    net = _dense(20037, 300, 3001)
    sol = rg.solve(net, tol=1e-9)
    assert sol.converged and np.count_nonzero(sol.diode_on) == 818
    check_kirchhoff(net, sol, rtol=1e-8)


def test_the_forecast_is_not_measured_before_its_flops_could_be_due(monkeypatch):
    """Measuring a Newton step costs two factorisations (3 s on a 1e4-node circuit thick with
    diodes); until the iteration has run as long as the method's factorisations' flops would take
    at ``PEAK_FLOPS``, it cannot be due and is not measured."""
    c = _dense(183, 20, 300).compile()
    monkeypatch.setattr(interior, "PEAK_FLOPS", 1.0)

    def measured(self):
        raise AssertionError("a Newton step was measured")

    monkeypatch.setattr(interior.NewtonSystem, "step_seconds", measured)
    assert interior.newton_system(c).least_step_seconds() > 1e3
    result = polish.polish(c, c.feasible_start, 1e-10, 1e-10)
    assert result.converged and result.iterations == 28


def _newton_systems(monkeypatch, seed: int):
    """A small circuit thick with diodes, its Newton system factorised and by CG (forced)."""
    c = _dense(seed, 100, 300).compile()
    exact = interior.newton_system(c)
    monkeypatch.setattr(interior, "MAX_FILL", 0.5)
    by_cg = interior.newton_system(c)
    assert exact.factor is not None and by_cg.factor is None
    return c, exact, by_cg


@pytest.mark.parametrize("seed", [183, 19])
def test_diodes_beyond_the_tie_range_are_the_limit_of_stiff_resistors(monkeypatch, seed):
    """Diodes conducting so well that ``D`` exceeds ``CG_TIE_RANGE`` times their variables'
    conductance are held at their voltage change in CG's systems: a forest of such diodes given
    ``D`` = 1e9 times it, the tied direction and currents are the factorised system's, to 1e-5
    and 1e-4 (the tie's error falls as 1 / D, 1e-5 of the currents at 1e8; the factorisation's
    own residual rises with D, 7e-4 of the drive at 1e9)."""
    from resgraph.forest import spanning_forest
    c, exact, by_cg = _newton_systems(monkeypatch, seed)
    rng = np.random.default_rng(seed)
    m, n = exact.diodes.size, c.num_free
    anode, cathode = c.diode_anode_var[exact.diodes], c.diode_cathode_var[exact.diodes]
    chosen = np.flatnonzero(rng.random(m) < 0.3)
    forest = spanning_forest(n + 1, anode[chosen], cathode[chosen])
    stiff = chosen[forest.parent_edge[forest.parent_edge >= 0]]
    t = np.full(m, 1.0)
    lam = exact.strength * 10.0 ** rng.uniform(-3, 0, m)
    lam[stiff] = 1e9 * exact.strength[stiff]
    d = lam / t
    by_cg.factorise(d)
    np.testing.assert_array_equal(np.flatnonzero(by_cg.tied), np.sort(stiff))
    rhs, drop = rng.normal(size=n), np.where(by_cg.tied, rng.normal(size=m), 0.0)
    dx, flow = by_cg.solve(rhs, drop)
    exact.factorise(d)
    # The same step with the tied diodes as resistors: their drive D drop enters the right side.
    drive = (np.bincount(anode, d * drop, n + 1) - np.bincount(cathode, d * drop, n + 1))[:n]
    expected = exact.factor.solve(rhs + drive)
    np.testing.assert_allclose(dx, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    voltage = np.append(expected, 0.0)
    currents = d * (voltage[anode] - voltage[cathode] - drop)
    np.testing.assert_allclose(flow[stiff], currents[stiff], rtol=0, atol=1e-4 * np.abs(currents[stiff]).max())


def test_tied_diodes_closing_loops_keep_their_current(monkeypatch):
    """Tied diodes that close loops of tied diodes carry no change of current (around such loops
    the optimum's currents are free); the others hold their voltage change, and KCL holds at
    every variable with the currents the solve gives."""
    c, _, by_cg = _newton_systems(monkeypatch, 183)
    rng = np.random.default_rng(1)
    m, n = by_cg.diodes.size, c.num_free
    anode, cathode = c.diode_anode_var[by_cg.diodes], c.diode_cathode_var[by_cg.diodes]
    lam, t = by_cg.strength * 10.0 ** rng.uniform(-3, 0, m), np.ones(m)
    lam[rng.random(m) < 0.6] *= 1e9
    d = lam / t
    by_cg.factorise(d)
    rhs, drop = rng.normal(size=n), rng.normal(size=m)
    dx, flow = by_cg.solve(rhs, drop)
    voltage = np.append(dx, 0.0)
    held = np.isclose(voltage[anode] - voltage[cathode], drop, rtol=0, atol=1e-9 * np.abs(dx).max())
    tied = by_cg.tied
    closing = tied & ~held
    assert closing.any() and np.all(flow[closing] == 0.0)
    assert np.count_nonzero(tied & held) >= np.count_nonzero(tied) // 2
    currents = np.where(tied, flow, np.where(tied, 0.0, d) * (voltage[anode] - voltage[cathode]))
    kcl = c.q_matrix @ dx + (np.bincount(anode, currents, n + 1) - np.bincount(cathode, currents, n + 1))[:n] - rhs
    assert np.abs(kcl).max() <= 1e-8 * np.abs(rhs).max()
