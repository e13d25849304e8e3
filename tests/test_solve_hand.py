"""Circuits whose steady state is known on paper."""
import numpy as np
import pytest

import resgraph as rg
from circuits import check_kirchhoff

BACKENDS = ["numpy", "numba", "osqp"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_voltage_divider(backend):
    net = rg.Network(4)
    net.add_voltage_source(1, 0, 3.0)
    net.add_resistor(1, 2, 1.0)
    net.add_resistor(2, 3, 2.0)
    net.add_resistor(3, 0, 2.0)
    sol = rg.solve(net, backend=backend)
    # series resistances 1 + 0.5 + 0.5 ohm carry 1.5 A
    np.testing.assert_allclose(sol.potentials, [0, 3, 1.5, 0.75], atol=1e-9)
    np.testing.assert_allclose(sol.voltage_source_currents, [1.5], atol=1e-9)
    np.testing.assert_allclose(sol.power, 3.0 * 1.5, atol=1e-8)
    check_kirchhoff(net, sol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_diode_clamps_to_ground(backend):
    # 2 V through 1 S into node 2, diode from node 2 to ground: clamps v2 <= 0.
    net = rg.Network(3)
    net.add_voltage_source(1, 0, 2.0)
    net.add_resistor(1, 2, 1.0)
    net.add_resistor(2, 0, 1.0)
    net.add_diode(2, 0)
    sol = rg.solve(net, backend=backend)
    np.testing.assert_allclose(sol.potentials, [0, 2, 0], atol=1e-8)
    np.testing.assert_allclose(sol.diode_currents, [2.0], atol=1e-7)
    assert sol.diode_on.tolist() == [True]
    check_kirchhoff(net, sol)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_reverse_biased_diode_is_off(backend):
    net = rg.Network(3)
    net.add_voltage_source(1, 0, -2.0)
    net.add_resistor(1, 2, 1.0)
    net.add_resistor(2, 0, 1.0)
    net.add_diode(2, 0)
    sol = rg.solve(net, backend=backend)
    np.testing.assert_allclose(sol.potentials, [0, -2, -1], atol=1e-12)
    assert sol.diode_currents.tolist() == [0.0] and sol.diode_on.tolist() == [False]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_diode_between_free_nodes_where_coordinate_descent_stalls(backend):
    # 1 A into node 1; diode 1 -> 2 forces v1 <= v2; both have 1 S to ground. The optimum
    # shares the current: v1 = v2 = 0.5 V, 0.5 A through the diode. From v = 0 each node is
    # individually optimal (node 1 is capped by v2 = 0, node 2 sits at its mean), so plain
    # coordinate descent never moves.
    net = rg.Network(3)
    net.add_current_source(0, 1, 1.0)
    net.add_resistor(1, 0, 1.0)
    net.add_resistor(2, 0, 1.0)
    net.add_diode(1, 2)
    stalled = rg.solve(net, backend=backend, polish=False, max_sweeps=500)
    assert not stalled.converged and stalled.kkt.scaled > 0.1
    sol = rg.solve(net, backend=backend)
    np.testing.assert_allclose(sol.potentials, [0, 0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(sol.diode_currents, [0.5], atol=1e-12)
    check_kirchhoff(net, sol)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_chain_of_diodes_between_free_nodes(backend):
    # A current pushes node 1 up against a chain 1 -> 2 -> 3 -> 4 of diodes; all four nodes
    # (1 S each to ground) must rise together to 2/4 V = 0.5 V.
    net = rg.Network(5)
    net.add_current_source(0, 1, 2.0)
    for k in range(1, 5):
        net.add_resistor(k, 0, 1.0)
    for k in range(1, 4):
        net.add_diode(k, k + 1)
    sol = rg.solve(net, backend=backend)
    np.testing.assert_allclose(sol.potentials[1:], 0.5, atol=1e-12)
    np.testing.assert_allclose(sol.diode_currents, [1.5, 1.0, 0.5], atol=1e-12)
    check_kirchhoff(net, sol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_floating_voltage_source_tree(backend):
    # A 1 V source between nodes 1 and 2, not tied to ground, each side 1 S to ground:
    # symmetric, so v1 = 0.5, v2 = -0.5 and 0.5 A circulates through ground.
    net = rg.Network(3)
    net.add_voltage_source(1, 2, 1.0)
    net.add_resistor(1, 0, 1.0)
    net.add_resistor(2, 0, 1.0)
    sol = rg.solve(net, backend=backend)
    np.testing.assert_allclose(sol.potentials, [0, 0.5, -0.5], atol=1e-9)
    np.testing.assert_allclose(sol.voltage_source_currents, [0.5], atol=1e-9)
    check_kirchhoff(net, sol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_current_source_direction(backend):
    # `current` flows through the source from a to b: 2 A drawn from ground into node 1.
    net = rg.Network(2)
    net.add_current_source(0, 1, 2.0)
    net.add_resistor(1, 0, 4.0)
    sol = rg.solve(net, backend=backend)
    np.testing.assert_allclose(sol.potentials, [0, 0.5], atol=1e-9)
    check_kirchhoff(net, sol)


def test_consistent_voltage_source_loop_is_accepted():
    net = rg.Network(4)
    net.add_voltage_source(1, 0, 1.0)
    net.add_voltage_source(2, 1, 2.0)
    net.add_voltage_source(2, 0, 3.0)   # closes the loop consistently
    net.add_resistor(2, 3, 1.0)
    net.add_resistor(3, 0, 1.0)
    sol = rg.solve(net)
    np.testing.assert_allclose(sol.potentials, [0, 1, 3, 1.5], atol=1e-12)
    check_kirchhoff(net, sol)


def test_warm_start_reuses_a_solution():
    rng = np.random.default_rng(1)
    from circuits import random_network
    net = random_network(rng, 200, extra_resistors=300, num_diodes=60, num_vs=5, num_cs=5)
    sol = rg.solve(net)
    again = rg.solve(net, warm_start=sol)
    np.testing.assert_allclose(again.potentials, sol.potentials, atol=1e-10)
    assert again.sweeps <= sol.sweeps
    with pytest.raises(rg.NetworkError, match="warm_start"):
        rg.solve(net, warm_start=np.zeros(3))


def test_to_qp_matches_solution():
    net = rg.Network(3)
    net.add_current_source(0, 1, 1.0)
    net.add_resistor(1, 0, 1.0)
    net.add_resistor(2, 0, 1.0)
    net.add_diode(1, 2)
    qp = net.to_qp()
    sol = rg.solve(net)
    x = sol.variables
    assert np.all(qp.A @ x <= qp.u + 1e-12)
    np.testing.assert_allclose(qp.potentials(x), sol.potentials)
    # stationarity with the diode currents as duals: P x + q + A' y = 0
    p_full = qp.P + qp.P.T - np.diag(qp.P.diagonal())
    y = sol.diode_currents[qp.diode_index]
    np.testing.assert_allclose(p_full @ x + qp.q + qp.A.T @ y, 0, atol=1e-12)


def test_networkx_round_trip():
    net = rg.Network(4)
    net.add_voltage_source(1, 0, 1.0)
    net.add_resistor(1, 2, 2.0)
    net.add_diode(2, 3)
    net.add_resistor(3, 0, 1.0)
    net.add_current_source(0, 3, 0.1)
    graph = net.to_networkx()
    back = rg.Network.from_networkx(graph)
    np.testing.assert_allclose(rg.solve(back).potentials, rg.solve(net).potentials)
    assert graph.number_of_edges() == 5


def test_networkx_labels_and_errors():
    import networkx as nx
    g = nx.Graph()
    g.add_edge("gnd", "a", conductance=1.0)
    g.add_edge("a", "b", conductance=1.0)
    net = rg.Network.from_networkx(g, ground="gnd")
    assert net.node_labels[0] == "gnd" and net.num_resistors == 2
    g.add_edge("b", "gnd", kind="diode")
    with pytest.raises(rg.InvalidElementError, match="directed"):
        rg.Network.from_networkx(g, ground="gnd")
    with pytest.raises(rg.NodeIndexError, match="ground"):
        rg.Network.from_networkx(g, ground="nope")


def _parallel_diodes_with_offset():
    """Node 1 (fed from +2 V through 1 S) feeds, through two diodes, nodes 3 and 2, which a
    floating 0.3 V source holds apart (v3 = v2 + 0.3), each 1 S to ground. Only the diode to node
    2 can conduct: v1 = v2 = 1.7 / 3 V, the diode to node 3 is 0.3 V reverse-biased."""
    net = rg.Network(5)
    net.add_voltage_source(4, 0, 2.0)
    net.add_resistor(4, 1, 1.0)
    net.add_voltage_source(3, 2, 0.3)
    net.add_diode(1, 3)              # listed first: a forest taken in order would hold it tight
    net.add_diode(1, 2)
    net.add_resistor(2, 0, 1.0)
    net.add_resistor(3, 0, 1.0)
    return net


def test_active_diodes_closing_a_loop_with_offsets_cannot_all_be_tight():
    """Regression (found by Hypothesis): the polish held the wrong diode of such a loop at zero
    voltage and called the answer converged with the other reverse-violated."""
    from resgraph.kkt import constraint_slack
    from resgraph.polish import polish

    net = _parallel_diodes_with_offset()
    c = net.compile()
    # Start with both diodes active: v1 = v3, so the diode to node 2 is 0.3 V reverse-violated.
    x = c.variables(np.array([0.0, 1.0, 0.7, 1.0, 2.0]))
    assert np.sum(constraint_slack(c, x) <= 1e-9) == 2
    result = polish(c, x, 1e-10, 1e-9)
    assert result.converged
    assert np.all(constraint_slack(c, result.x) >= -1e-12)
    v = c.potentials(result.x)
    np.testing.assert_allclose(v, [0.0, 1.7 / 3, 1.7 / 3, 1.7 / 3 + 0.3, 2.0], atol=1e-12)
    np.testing.assert_allclose(result.currents, [0.0, 2.0 - 1.7 / 3], atol=1e-12)
    sol = rg.solve(net, tol=1e-10)
    assert sol.converged
    np.testing.assert_allclose(sol.potentials, v, atol=1e-10)
    check_kirchhoff(net, sol)


def test_polish_switches_on_a_diode_violated_in_volts_but_not_in_amperes():
    """0.5 nA into a node held by 1 mS to ground, a diode from it to ground (v <= 0). Unclamped,
    the node sits at 0.5 uV: over the 1e-9 V the certificate allows, yet the diode would carry
    only 0.5 nA, under 1e-9 A. The polish used to switch diodes on by the ampere test alone, so it
    kept the diode off, failed the certificate on every visit and reported no convergence (a
    3e4-node stress circuit never converged that way)."""
    from resgraph.polish import polish
    net = rg.Network(2)
    net.add_resistor(1, 0, 1e-3)
    net.add_current_source(0, 1, 5e-10)
    net.add_diode(1, 0)
    c = net.compile()
    result = polish(c, np.array([-1.0]), tol=1e-9, active_tol=1e-12)   # start with the diode off
    assert result.converged
    assert result.x[0] == pytest.approx(0.0, abs=1e-15)
    assert result.currents[0] == pytest.approx(5e-10, rel=1e-9)


def test_osqp_backend_prints_nothing_and_polishes_only_with_an_active_diode(capfd):
    """OSQP 1.x prints a line on stdout when told to polish an answer with no active constraint,
    whatever ``verbose`` says (osqp/osqp#785); the backend asks for the polish only where a
    diode conducts."""
    from resgraph.backends.osqp_backend import solve_qp

    off = rg.Network(3)                      # the diode is reverse-biased: nothing to polish
    off.add_voltage_source(1, 0, 2.0)
    off.add_resistor(1, 2, 1.0)
    off.add_resistor(2, 0, 1.0)
    off.add_diode(0, 2)
    x, y, info = solve_qp(off.to_qp(), eps=1e-9)
    assert info["polished"] is None
    np.testing.assert_allclose(x, [1.0], atol=1e-7)     # (node 2: node 1 is fixed)
    on = rg.Network(3)                       # the diode clamps node 2 at 0 V: polished exactly
    on.add_voltage_source(1, 0, 2.0)
    on.add_resistor(1, 2, 1.0)
    on.add_resistor(2, 0, 1.0)
    on.add_diode(2, 0)
    x, y, info = solve_qp(on.to_qp(), eps=1e-9)
    assert info["polished"] == 1             # OSQP_POLISH_SUCCESS
    np.testing.assert_allclose(x, [0.0], atol=1e-12)
    np.testing.assert_allclose(y, [2.0], atol=1e-12)
    for net in (off, on):
        rg.solve(net, backend="osqp")
    assert capfd.readouterr().out == ""
