"""The active-set polish's stages on a large circuit."""
import os
import sys

import numpy as np

import resgraph as rg
import resgraph.polish as polish
from circuits import check_kirchhoff, dense_diode_network

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))

import stress  # noqa: E402
from networks import benchmark_network  # noqa: E402


def test_a_loose_stage_that_stops_settling_turns_tight(monkeypatch):
    """A 5e4-node random circuit over 12 decades, warm-started: its loose solves (CG with a
    support graph) leave 4-9 diodes flipping at every step; after ``LOOSE_PATIENCE`` steps
    without fewer switching than ever, tight solves settle it. (Loose to the end, it ran 50
    steps, then 43 more after further sweeps.)"""
    steps = []
    original = polish._solve_with_active

    def counted(c, x, active, prefer, solver, rtol):
        steps.append(rtol)
        return original(c, x, active, prefer, solver, rtol)

    monkeypatch.setattr(polish, "_solve_with_active", counted)
    net, description = stress.stress_circuit(1, 50_000, 12.0)
    assert description.startswith("random 50000 nodes")
    solution = stress.solve_as(net, "warm", np.random.default_rng(10_001))
    assert solution.converged
    check_kirchhoff(net, solution, rtol=1e-8)
    assert polish.TIGHT_RTOL in steps and len(steps) < 30       # (14 here; 93 loose to the end)


def test_a_mesh_system_solved_by_cg_with_a_kept_factor_is_settled_row_by_row():
    """A 5e3-node lattice over 16 decades, warm-started: a later system of its polish goes to CG
    preconditioned by the kept factor, whose answer met the norm of rounding's floor with a row
    of small terms still off (KKT 3e-9, unconverged); it is now settled row by row there too."""
    net, description = stress.stress_circuit(21, 5000, 16.0)
    assert description.startswith("lattice 5041 nodes")
    solution = stress.solve_as(net, "warm", np.random.default_rng(10_021))
    assert solution.converged
    check_kirchhoff(net, solution, rtol=1e-8)


def test_currents_negative_by_no_more_than_their_rounding_do_not_switch_diodes():
    """A 5e3-node random circuit over 16 decades: near the end of its polish, diodes at zero
    voltage carried -1e-8 A, computed from terms of 1e8 A (rounding's reach): switched off as
    negative, they came back reverse-biased by 1e-5 V, and the active set went round in a cycle
    at every polish (the solve ended after 1e5 sweeps at KKT 0.88). Such currents no longer
    count as negative."""
    net, description = stress.stress_circuit(75, 5000, 16.0)
    assert description.startswith("random 5000 nodes")
    solution = rg.solve(net, tol=1e-9, max_sweeps=2000)
    assert solution.converged and solution.polish_iterations < 20
    check_kirchhoff(net, solution, rtol=1e-8)


def test_a_numerically_indefinite_system_ends_unconverged_not_in_an_exception():
    """Conductances over 20 decades, beyond what float64 resolves: a cluster joined inside by
    conductances 1e20 times those that leave it has its contracted diagonal round to zero, and
    the factorisation that was to rescue its stalled CG met a pivot that is not positive. That
    raised NotPositiveDefinite out of ``solve``; now the polish gives up on such a system and the
    answer says it is not converged."""
    net, _ = stress.stress_circuit(6, 5000, 20.0)
    rough = rg.solve(net, tol=1e-6, polish=False, max_sweeps=200).potentials
    start = rough + np.random.default_rng(10_006).normal(0, 0.05, rough.size)
    solution = rg.solve(net, tol=1e-9, warm_start=start, max_sweeps=500)
    assert not solution.converged and solution.kkt.scaled > 1e-9
    assert np.all(np.isfinite(solution.potentials))


def test_an_iteration_about_to_cycle_switches_one_diode_instead(monkeypatch):
    """A 290-node random circuit over six decades with 4 diodes per node: from the feasible start
    the active-set iteration came back to a state it had seen after 25 steps (and from
    coordinate descent's point, at every retry: 1e5 sweeps, KKT 0.43, 200 s, unconverged).
    Switching only the diode furthest from its condition there, it ends at the optimum after 28
    steps, with no other method."""
    rng = np.random.default_rng(183)
    net = dense_diode_network(rng, int(rng.integers(20, 300)), 6.0)
    c = net.compile()
    monkeypatch.setattr(polish, "newton_system", lambda c: None)

    def no_descent(*args):
        raise AssertionError("the primal active-set method ran")

    monkeypatch.setattr(polish, "_descend", no_descent)
    result = polish.polish(c, c.feasible_start, 1e-10, 1e-10)
    assert result.converged and result.iterations == 28
    solution = rg.solve(net, tol=1e-10)
    np.testing.assert_allclose(solution.potentials, c.potentials(result.x), atol=1e-9 * max(1.0, np.abs(result.x).max()))


def test_an_iteration_out_of_steps_hands_over_to_a_descent(monkeypatch):
    """The same circuit given 20 steps: where the interior-point method does not run (removed
    here), the primal active-set method it hands over to ends at the optimum."""
    rng = np.random.default_rng(183)
    net = dense_diode_network(rng, int(rng.integers(20, 300)), 6.0)
    c = net.compile()
    monkeypatch.setattr(polish, "newton_system", lambda c: None)
    descents = []
    original = polish._descend

    def counted(*args):
        descents.append(args[5])                # the iterations before it
        return original(*args)

    monkeypatch.setattr(polish, "_descend", counted)
    result = polish.polish(c, c.feasible_start, 1e-10, 1e-10, max_iterations=20)
    assert result.converged and descents == [20]
    solution = rg.solve(net, tol=1e-10)
    assert solution.converged
    check_kirchhoff(net, solution, rtol=1e-8)
    np.testing.assert_allclose(solution.potentials, c.potentials(result.x), atol=1e-9 * max(1.0, np.abs(result.x).max()))


def test_diodes_carrying_negative_current_within_tol_are_dropped_where_that_passes_too():
    """A 56-node circuit over 12-16 decades whose largest current is 1.3e4 A: at tol 1e-9 the
    polish's answer passed with diodes carrying -1e-5 A (within tol of 1.3e4 A) holding an
    island of two nodes (joined by 9.8e4 S, tied to the rest by 3e-6 and 9e-5 S) at 0.03172 V,
    where the optimum is 0.02557 V. Dropping such diodes, again while the answer still passes
    (three times with the split of loop currents of ``resgraph.circulation``: each time one more
    carries -3e-8 A), finds it."""
    rng = np.random.default_rng(30323)
    net = dense_diode_network(rng, int(rng.integers(2, 61)), float(rng.choice([12.0, 16.0])))
    loose, tight = rg.solve(net, tol=1e-9), rg.solve(net, tol=1e-12)
    assert loose.converged and tight.converged and tight.kkt.scaled == 0.0
    assert abs(tight.potentials[37] - 0.0255684) < 1e-6
    np.testing.assert_allclose(loose.potentials, tight.potentials, atol=1e-9)
    check_kirchhoff(net, loose, rtol=1e-8)


def test_a_3e4_node_circuit_thick_with_diodes_needs_no_primal_active_set_method(monkeypatch):
    """The benchmark's 3e4-node random circuit with 3.3e4 diodes, half of them between free
    nodes: a factor of its Newton systems would fill in beyond memory, and with no interior-point
    method the polish fell to the primal active-set method (200 + 200 active-set steps switching
    about 1000 diodes each, then 12066 solves: 276 s). CG solves those systems now, and the
    iteration restarted from the conducting set the method names ends at the optimum."""
    def no_descent(*args):
        raise AssertionError("the primal active-set method ran")

    monkeypatch.setattr(polish, "_descend", no_descent)
    net = benchmark_network("diodes", 30_000, "on")
    sol = rg.solve(net, tol=1e-9)
    assert sol.converged
    check_kirchhoff(net, sol, rtol=1e-8)
