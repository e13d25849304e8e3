"""Every bad input raises a specific NetworkError subclass that names the element."""
import numpy as np
import pytest

import resgraph as rg
from circuits import random_arcs


def test_error_hierarchy():
    for cls in (rg.InvalidElementError, rg.NodeIndexError, rg.KirchhoffVoltageError,
                rg.InfeasibleDiodeError, rg.FloatingNodeError, rg.ColouringError):
        assert issubclass(cls, rg.NetworkError) and issubclass(cls, rg.ResgraphError)
    assert issubclass(rg.BackendError, rg.ResgraphError)


@pytest.mark.parametrize("num_nodes", [0, -3, 2.5, "4", True])
def test_bad_num_nodes(num_nodes):
    with pytest.raises(rg.InvalidElementError, match="num_nodes"):
        rg.Network(num_nodes)


@pytest.mark.parametrize("g", [0.0, -1.0, np.nan, np.inf])
def test_bad_conductance(g):
    net = rg.Network(3)
    net.add_resistor(1, 0, 1.0)
    with pytest.raises(rg.InvalidElementError, match=r"resistor #1 \(1 -> 2\): conductance"):
        net.add_resistor(1, 2, g)
    with pytest.raises(rg.InvalidElementError, match=r"resistor #1 \(2 -> 0\): conductance"):
        rg.Network.from_arrays(3, resistors=([1, 2], [0, 0], [1.0, g]))


def test_non_numeric_values():
    net = rg.Network(3)
    with pytest.raises(rg.InvalidElementError, match="conductance must be a number"):
        net.add_resistor(1, 2, "big")
    with pytest.raises(rg.InvalidElementError, match="node must be an integer"):
        net.add_diode(1.5, 2)
    with pytest.raises(rg.InvalidElementError, match="voltage must be finite"):
        net.add_voltage_source(1, 0, np.nan)
    with pytest.raises(rg.InvalidElementError, match="current must be finite"):
        net.add_current_source(1, 0, np.inf)
    with pytest.raises(rg.InvalidElementError, match="itself"):
        net.add_voltage_source(1, 1, 1.0)


def test_node_out_of_range():
    net = rg.Network(3)
    with pytest.raises(rg.NodeIndexError, match=r"diode #0: cathode node 3 is out of range 0..2"):
        net.add_diode(1, 3)
    with pytest.raises(rg.NodeIndexError, match=r"voltage_source #1: plus node -1"):
        rg.Network.from_arrays(3, voltage_sources=([1, -1], [0, 0], [1.0, 1.0]))


def test_from_arrays_shapes_and_atomicity():
    with pytest.raises(rg.InvalidElementError, match="has 2 entries but b has 1"):
        rg.Network.from_arrays(3, resistors=([1, 2], [0], [1.0, 1.0]))
    with pytest.raises(rg.InvalidElementError, match=r"conductance has shape \(3,\)"):
        rg.Network.from_arrays(3, resistors=([1, 2], [0, 0], [1.0, 1.0, 1.0]))
    with pytest.raises(rg.InvalidElementError, match="must be given as"):
        rg.Network.from_arrays(3, resistors=([1, 2], [0, 0]))
    with pytest.raises(rg.InvalidElementError, match="integers"):
        rg.Network.from_arrays(3, diodes=([0.5], [1]))
    net = rg.Network(3)
    with pytest.raises(rg.NodeIndexError):
        net.add_arrays(resistors=([1], [0], [1.0]), diodes=([1], [7]))
    assert net.num_resistors == 0, "a failed add_arrays must not half-add elements"


def test_kirchhoff_voltage_law_violation_names_the_source():
    net = rg.Network(3)
    net.add_voltage_source(1, 0, 1.0)
    net.add_voltage_source(2, 1, 1.0)
    net.add_voltage_source(2, 0, 1.5)
    net.add_resistor(1, 2, 1.0)
    with pytest.raises(rg.KirchhoffVoltageError, match=r"voltage_source #1 \(2 -> 1, 1 V\) closes a loop of voltage sources \(#0, #1, #2\)"):
        rg.solve(net)


def test_diode_contradicting_voltage_source():
    net = rg.Network(3)
    net.add_voltage_source(1, 2, 1.0)   # v1 = v2 + 1
    net.add_diode(1, 2)                 # v1 <= v2
    net.add_resistor(1, 0, 1.0)
    with pytest.raises(rg.InfeasibleDiodeError, match=r"diode #0 \(anode 1, cathode 2\)"):
        net.compile()


def test_diodes_contradicting_each_other_through_ground_sources():
    net = rg.Network(4)
    net.add_voltage_source(1, 0, 1.0)
    net.add_voltage_source(2, 0, -1.0)
    net.add_resistor(3, 0, 1.0)
    net.add_diode(1, 3)   # v3 >= 1
    net.add_diode(3, 2)   # v3 <= -1
    with pytest.raises(rg.InfeasibleDiodeError, match=r"diode #0 .* and diode #1"):
        net.compile()


def test_loop_of_coupled_diodes_contradicting_sources():
    # v1 <= v2 and v2 <= v1 - 1 (through a floating 1 V source) cannot both hold.
    net = rg.Network(4)
    net.add_resistor(1, 0, 1.0)
    net.add_resistor(2, 0, 1.0)
    net.add_resistor(3, 0, 1.0)
    net.add_voltage_source(1, 3, 1.0)   # v3 = v1 - 1
    net.add_diode(1, 2)
    net.add_diode(2, 3)
    with pytest.raises(rg.InfeasibleDiodeError, match="loop"):
        net.compile()


def test_current_source_into_floating_part():
    net = rg.Network(4)
    net.add_resistor(1, 0, 1.0)
    net.add_resistor(2, 3, 1.0)          # 2-3 float
    net.add_current_source(1, 2, 1.0)
    with pytest.raises(rg.FloatingNodeError, match=r"current_source #0 \(1 -> 2, 1 A\) drives node 2"):
        net.compile()


def test_floating_node_without_drive():
    net = rg.Network(3)
    net.add_resistor(1, 0, 1.0)
    net.add_diode(2, 0)                  # a diode does not fix a potential
    with pytest.raises(rg.FloatingNodeError, match="node 2 has no resistive path"):
        net.compile()


def test_bad_colouring():
    net = rg.Network(3)
    net.add_resistor(1, 0, 1.0)
    net.add_resistor(1, 2, 1.0)
    with pytest.raises(rg.ColouringError, match=r"resistor #1 \(1 -> 2\) joins two free nodes of colour 0"):
        net.compile(colouring=np.zeros(3, int))
    with pytest.raises(rg.ColouringError, match="one per node"):
        net.compile(colouring=np.zeros(2, int))


def test_bad_solver_arguments():
    net = rg.Network(2)
    net.add_resistor(1, 0, 1.0)
    with pytest.raises(rg.BackendError, match="unknown backend 'fortran'"):
        rg.solve(net, backend="fortran")
    with pytest.raises(rg.ResgraphError, match="omega"):
        rg.solve(net, omega=2.5)
    with pytest.raises(rg.ResgraphError, match="tol"):
        rg.solve(net, tol=0)


def test_unknown_kind_and_networkx_missing_value():
    import networkx as nx
    net = rg.Network(2)
    with pytest.raises(rg.NetworkError, match="unknown element kind"):
        net.arrays("capacitor")
    g = nx.MultiDiGraph()
    g.add_edge(0, 1, kind="voltage_source")
    with pytest.raises(rg.InvalidElementError, match="needs a 'voltage' attribute"):
        rg.Network.from_networkx(g)
    g = nx.MultiDiGraph()
    g.add_edge(0, 1, kind="capacitor")
    with pytest.raises(rg.InvalidElementError, match="unknown kind 'capacitor'"):
        rg.Network.from_networkx(g)


def test_parallel_coupled_diodes_keep_the_tightest_constraint():
    # Found by Hypothesis: diodes 3 -> 1 and 3 -> 4 bind the same pair of variables (1 and 4 are
    # one voltage-source component); the circuit is infeasible (v2 = v4 = 0, v3 <= v1 = -1.57).
    net = rg.Network(5)
    for a, b, g in [(1, 0, 1.0), (2, 0, 1.0), (3, 0, 1.0), (4, 0, 1.0)]:
        net.add_resistor(a, b, g)
    net.add_voltage_source(4, 1, 1.57)
    for anode, cathode in [(2, 3), (1, 0), (2, 4), (4, 2), (3, 0), (0, 4), (4, 0), (3, 1), (3, 4)]:
        net.add_diode(anode, cathode)
    with pytest.raises(rg.InfeasibleDiodeError):
        net.compile()


@pytest.mark.parametrize("seed", range(40))
def test_least_path_weights_match_bellman_ford(seed):
    """The feasible start's difference constraints: the queue-based Bellman-Ford gives SciPy's
    distances (from a source joined to every node at weight 0) and finds the same negative
    loops."""
    import scipy.sparse as sp
    from scipy.sparse import csgraph
    from resgraph.compiled import _least_path_weights
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    tail, head = random_arcs(rng, n, 3 * n)
    weight = rng.normal(size=tail.size) + (1.0 if seed % 2 else 0.3)   # odd seeds: mostly no negative loop
    dist, bounded = _least_path_weights(n, tail, head, weight)
    graph = sp.coo_matrix((np.r_[weight, np.zeros(n)], (np.r_[tail, np.full(n, n)], np.r_[head, np.arange(n)])),
                          shape=(n + 1, n + 1))
    first = {}
    for t, h, w in zip(graph.row, graph.col, graph.data):   # parallel arcs: the lightest
        first[t, h] = min(w, first.get((t, h), np.inf))
    keys = np.array(list(first)).reshape(-1, 2)
    graph = sp.csr_matrix((np.array(list(first.values())), (keys[:, 0], keys[:, 1])), shape=(n + 1, n + 1))
    try:
        expected = csgraph.bellman_ford(graph, indices=n)[:n]
    except csgraph.NegativeCycleError:
        assert not bounded
        return
    assert bounded
    np.testing.assert_allclose(dist, expected, atol=1e-12)


def test_least_path_weights_without_a_loop_are_bounded_however_often_a_distance_falls():
    """Five nodes, no loop at all, parallel arcs 0 -> 1: node 1's distance falls more times than
    there are nodes (counting falls, as a first version did, called that a negative loop)."""
    from resgraph.compiled import _least_path_weights
    tail = np.array([2, 2, 2, 0, 0, 0])
    head = np.array([3, 1, 0, 1, 1, 1])
    weight = np.array([-2.8221690029307016, -3.5093364840773846, -93.673949574702, -0.5525000971604223,
                       -32.58848781147014, -38.40372633390561])
    dist, bounded = _least_path_weights(5, tail, head, weight)
    assert bounded
    np.testing.assert_allclose(dist, [-93.673949574702, -93.673949574702 - 38.40372633390561, 0.0,
                                      -2.8221690029307016, 0.0])
