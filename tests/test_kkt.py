"""The KKT certificate (``kkt_report``, a compiled kernel) against its definition written out in
NumPy, at points that break each condition: random potentials and diode currents of both signs."""
import os
import sys

import numpy as np
import pytest

import resgraph as rg
from circuits import check_kirchhoff, least_negative_total, random_network
from resgraph.kkt import EPS, ROUNDING_ULPS, carrying, constraint_slack, current_rounding, kkt_report

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))

import stress  # noqa: E402
from networks import benchmark_network  # noqa: E402


def _cluster_rounding(c, x, lam, magnitude):
    """Per diode and per variable, the rounding allowance of the cluster of free variables joined
    by diodes carrying current or at zero voltage: all the cluster's terms (union-find)."""
    n = c.num_free
    xf = np.append(x, 0.0)
    a, k, w = c.diode_anode_var, c.diode_cathode_var, c.diode_offset
    at_zero = w - (xf[a] - xf[k]) <= ROUNDING_ULPS * EPS * (np.abs(xf[a]) + np.abs(xf[k]) + np.abs(w))
    carrying = c.diode_is_constraint & ((lam != 0) | at_zero)
    group = list(range(n))

    def find(i):
        while group[i] != i:
            i = group[i]
        return i
    for d in np.flatnonzero(carrying & (a < n) & (k < n)):
        group[find(a[d])] = find(k[d])
    roots = np.array([find(i) for i in range(n)], np.int64)
    in_cluster = np.zeros(n, bool)
    in_cluster[a[carrying & (a < n)]] = in_cluster[k[carrying & (k < n)]] = True
    reach = np.where(in_cluster, ROUNDING_ULPS * EPS * np.bincount(roots, magnitude, n)[roots], 0.0)
    per_diode = np.where(carrying, reach[np.where(a < n, a, np.minimum(k, n - 1))], 0.0)
    return per_diode, reach


def _reference(c, x, lam):
    """The report's fields from their definitions (see :class:`resgraph.kkt.KKTReport`)."""
    con = c.diode_is_constraint
    n = c.num_free
    magnitude = np.abs(c.sweep.source) + abs(c.q_matrix) @ np.abs(x)
    rounding, reach = _cluster_rounding(c, x, lam, magnitude)
    balance = (np.append(c.q_matrix @ x - c.sweep.source, 0.0)
               + np.bincount(c.diode_anode_var[con], lam[con], n + 1)
               - np.bincount(c.diode_cathode_var[con], lam[con], n + 1))
    slack = constraint_slack(c, x)[con]
    lam, rounding = lam[con], rounding[con]
    v = c.potentials(x)
    ra, rb, g = c.resistors
    current_scale = max(1.0, float(np.max(np.abs(g * (v[ra] - v[rb])), initial=0.0)),
                        float(np.max(np.abs(c.current_sources[2]), initial=0.0)), float(np.max(np.abs(lam), initial=0.0)))
    voltage_scale = max(1.0, float(np.max(np.abs(v), initial=0.0)))
    kcl = float(np.max(np.abs(balance[:n]), initial=0.0))
    excess = float(np.max(np.abs(balance[:n]) - np.maximum(ROUNDING_ULPS * EPS * magnitude, reach), initial=0.0))
    feasibility = float(np.max(-slack, initial=0.0))
    dual = float(np.max(-lam - rounding, initial=0.0))
    complementarity = float(np.max(np.minimum(np.maximum(lam, 0), np.maximum(slack, 0)), initial=0.0))
    scaled = max(excess / current_scale, feasibility / voltage_scale, dual / current_scale,
                 float(np.max(np.minimum(np.maximum(lam, 0) / current_scale, np.maximum(slack, 0) / voltage_scale),
                              initial=0.0)))
    return kcl, excess, feasibility, dual, complementarity, current_scale, voltage_scale, scaled


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
        got = (report.kcl, report.kcl_excess, report.feasibility, report.dual, report.complementarity, report.current_scale,
               report.voltage_scale, report.scaled)
        np.testing.assert_allclose(got, _reference(c, x, lam), rtol=1e-12, atol=1e-300)
        # The allowances themselves (they move the fields above by rounding's amounts only).
        magnitude = np.abs(c.sweep.source) + abs(c.q_matrix) @ np.abs(x)
        for got_part, want in zip(current_rounding(c, x, carrying(c, x, lam)), _cluster_rounding(c, x, lam, magnitude)):
            np.testing.assert_allclose(got_part, want, rtol=1e-12, atol=1e-300)


def test_report_of_a_solved_network_is_tiny_and_of_a_bad_point_is_not():
    rng = np.random.default_rng(7)
    net = random_network(rng, 50, extra_resistors=50, num_diodes=10, num_vs=2, num_cs=2)
    sol = rg.solve(net, tol=1e-12)
    assert sol.kkt.scaled <= 1e-12
    c = net.compile()
    bad = kkt_report(c, sol.variables + 0.1, sol.diode_currents)
    assert bad.kcl > 1e-3


def _lifted(net: rg.Network, volts: float) -> rg.Network:
    """``net`` with its ground node moved to a new node held ``volts`` above ground: the same
    circuit, every potential shifted by ``volts`` (old node k > 0 stays k, old 0 becomes the
    last node)."""
    n = net.num_nodes

    def moved(*nodes):
        return tuple(np.where(k == 0, n, k) for k in nodes)

    ra, rb, g = net.arrays("resistor")
    da, dc = net.arrays("diode")[:2]
    pa, pm, volts_vs = net.arrays("voltage_source")
    ca, cb, amps = net.arrays("current_source")
    return rg.Network.from_arrays(
        n + 1, resistors=(*moved(ra, rb), g), diodes=moved(da, dc),
        voltage_sources=(np.r_[moved(pa)[0], n], np.r_[moved(pm)[0], 0], np.r_[volts_vs, volts]),
        current_sources=(*moved(ca, cb), amps))


@pytest.mark.parametrize("seed", range(4))
def test_a_circuit_floating_at_a_kilovolt_is_solved_as_accurately(seed):
    """Shifting every potential by one amount changes no current: the certificate's scale must
    not grow with it (it once grew with |potential|, and a 1 kV shift let answers through whose
    KCL was off by 1e-6 of the largest current at tol 1e-9)."""
    rng = np.random.default_rng(100 + seed)
    net = random_network(rng, 400, extra_resistors=400, num_diodes=40, num_vs=4, num_cs=4)
    try:
        net.compile()
    except rg.InfeasibleDiodeError:
        pytest.skip("the drawn diodes contradict the sources")
    low = rg.solve(net, tol=1e-9)
    high_net = _lifted(net, 1000.0)
    high = rg.solve(high_net, tol=1e-9)
    check_kirchhoff(high_net, high, rtol=1e-8)     # relative to the largest element current
    assert high.kkt.current_scale == pytest.approx(low.kkt.current_scale, rel=1e-6)
    scale = low.kkt.current_scale
    np.testing.assert_allclose(high.resistor_currents, low.resistor_currents, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(high.potentials[1:-1] - 1000.0, low.potentials[1:], rtol=0, atol=1e-8)


def test_the_certificate_sees_an_imbalance_at_a_kilovolt():
    """A variable moved off its steady state by one part in a million of the currents in play is
    refused at 1 kV as at 0 V."""
    rng = np.random.default_rng(5)
    net = _lifted(random_network(rng, 200, extra_resistors=200, num_vs=2, num_cs=2), 1000.0)
    c = net.compile()
    sol = rg.solve(c, tol=1e-12)
    x = sol.variables.copy()
    k = int(np.argmax(c.sweep.total_conductance))
    x[k] += 1e-6 * sol.kkt.current_scale / c.sweep.total_conductance[k]
    report = kkt_report(c, x, sol.diode_currents)
    assert report.kcl_excess == pytest.approx(1e-6 * sol.kkt.current_scale, rel=1e-3)
    assert report.scaled > 0.9e-6


def test_sweeps_alone_stop_at_the_same_accuracy_at_a_kilovolt():
    """Coordinate descent's convergence test is scaled as the certificate: on a random graph
    with conducting clamps (which coordinate descent solves without the polish) floating at
    1 kV, the answer balances every node to 1e-8 of the largest current (it was 1e-6 when the
    test grew with the potentials)."""
    rng = np.random.default_rng(3)
    n = 5000
    a = np.r_[np.arange(2, n + 1), rng.integers(1, n + 1, n)]
    b = np.r_[rng.integers(1, np.arange(2, n + 1)), rng.integers(1, n + 1, n)]
    keep = a != b
    a, b = a[keep], b[keep]
    taps = rng.choice(np.arange(1, n + 1), (8, 4))
    source_nodes = np.arange(n + 1, n + 9)
    rail = n + 9
    clamped = rng.choice(np.arange(1, n + 1), n // 10, replace=False)
    net = rg.Network.from_arrays(
        n + 10,
        resistors=(np.r_[a, np.repeat(source_nodes, 4)], np.r_[b, taps.ravel()],
                   np.r_[rng.uniform(0.5, 2.0, a.size), np.full(32, 5.0)]),
        diodes=(np.full(clamped.size, rail), clamped),
        voltage_sources=(np.r_[source_nodes, rail], np.zeros(9, np.int64),
                         np.r_[np.where(np.arange(8) % 2 == 0, 1.0, -1.0), 0.5]))
    high_net = _lifted(net, 1000.0)
    high = rg.solve(high_net, tol=1e-9)
    check_kirchhoff(high_net, high, rtol=1e-8)


@pytest.mark.parametrize("volts", [1e5, 1e6])
def test_a_cg_solved_circuit_floating_far_from_ground_converges(volts):
    """A random 5e3-node circuit whose clamps do not conduct (the benchmarks' ``off`` regime:
    straight to the polish, one Jacobi-CG solve) floating at 1e5 and 1e6 V. The currents in play
    measured at the start (5e5 A) made CG's target far too loose until the system is solved
    again from its answer (1 A); at 1e6 V rounding's floor then sets the target, and CG goes on
    until every row is settled. Converged and balanced to 1e-8 A at every node (before: KKT
    4.4e-8 and 4.4e-7, unconverged)."""
    net = _lifted(benchmark_network("random", 5000, "off"), volts)
    sol = rg.solve(net, tol=1e-9)
    assert sol.polish_iterations == 1 and not np.any(sol.diode_on)
    check_kirchhoff(net, sol, rtol=1e-8)


def test_a_free_cluster_imbalance_counts_the_terms_of_the_whole_cluster():
    """Two free variables joined by a conducting diode, no fixed potential among them: the
    diode's current balances one, and the pair's imbalance (rounding of its terms, 3e8 A) lands
    on the other, whose own terms are 0.6 A. A 5e3-node circuit over 16 decades had such a pair
    certified only to 1.5e-9 (unconverged) though its imbalance is under an ulp of its terms."""
    net, _ = stress.stress_circuit(5, 5000, 16.0)
    sol = rg.solve(net, tol=1e-9)
    assert sol.converged
    check_kirchhoff(net, sol, rtol=1e-8)
    # The certificate is no looser elsewhere: the same answer with one diode current halved.
    c = net.compile()
    worst = int(np.argmax(sol.diode_currents))
    lam = sol.diode_currents.copy()
    lam[worst] /= 2
    assert kkt_report(c, sol.variables, lam).scaled > 1e-3


def test_a_diode_at_zero_voltage_carrying_exactly_nothing_still_carries_rounding():
    """A 2e4-node circuit over 16 decades: a conducting diode's far end balanced to exactly
    0 A, so its current came out exactly zero, and the imbalance of its cluster's 4e7 A of
    terms (20 ulps) showed at the other end, whose own terms are 43 A: unconverged at KKT
    4.3e-9 while the diode counted only if its current was not zero."""
    net, _ = stress.stress_circuit(5, 20_000, 16.0)
    sol = rg.solve(net, tol=1e-9)
    assert sol.converged
    check_kirchhoff(net, sol, rtol=1e-8)


def test_a_floating_voltage_source_tree_is_rooted_at_its_node_of_most_conductance():
    """A 6e3-node lattice over 16 decades with a floating source between a node of 1e-4 S and
    one of 7.6e7 S, 2.3 V apart. Rooted at the first, the variable's KCL had drive and diagonal
    terms of 1.6e8 A cancelling to milliamperes, and their rounding (2.9e-8 A) stayed at the
    light node, which the independent check found off by more than 1e-8 A though certified.
    Rooted at the heavy node, the large terms carry no offset."""
    net, _ = stress.stress_circuit(121, 6000, 16.0)
    c = net.compile()
    assert c.node_offset[3094] == 0.0 and c.node_offset[576] != 0.0 and c.node_var[576] == c.node_var[3094]
    sol = stress.solve_as(net, "warm", np.random.default_rng(10_121))
    check_kirchhoff(net, sol, rtol=1e-8)


def test_power_balance_of_a_certified_answer_at_the_limit_of_float64():
    """16 decades, a 1 kA-scale source into a 1e-8 S node: potentials reach 1.9e5 V beside 1e8 S
    resistors, where an ulp of a potential is worth milliamperes. The answer is certified (each
    node balanced within its rounding) and the independent check's power balance allows what
    those imbalances let through (Tellegen), which is far more than its ordinary tolerance."""
    from circuits import dense_diode_network

    rng = np.random.default_rng(31180)
    num_nodes, decades = int(rng.integers(2, 60)), float(rng.choice([12.0, 16.0]))
    net = dense_diode_network(rng, num_nodes, decades)
    sol = rg.solve(net, tol=1e-9)
    assert sol.converged and np.abs(sol.potentials).max() > 1e5
    check_kirchhoff(net, sol, rtol=1e-8)
    ra, rb, g = net.arrays("resistor")
    pa, _, volts = net.arrays("voltage_source")
    ca, cb, amps = net.arrays("current_source")
    v = sol.potentials
    imbalance = abs(float(np.sum(g * (v[ra] - v[rb]) ** 2)) - float(volts @ sol.voltage_source_currents + amps @ (v[cb] - v[ca])))
    iscale = max(1.0, float(np.abs(np.r_[sol.resistor_currents, sol.diode_currents, sol.voltage_source_currents, amps]).max()))
    assert imbalance > 1e-8 * iscale * np.abs(v).max() * ra.size      # beyond the ordinary tolerance


def test_a_weakly_tied_node_is_held_to_tol_of_the_potentials_not_only_of_the_largest_current():
    """16 decades, 3 free variables: a 6e7 S resistor carries 1.3e8 A, while a pair of nodes tied by
    9.6 mS sits near 680 V. Coordinate descent alone left the pair at 679.151 V, 6.4 mA out of
    balance (5e-11 of the largest current: certified at tol 1e-9); the exact answer is 679.813 V.
    The certificate's ``drift`` (the imbalance over the cluster's conductance, in volts) counts."""
    from circuits import dense_diode_network

    rng = np.random.default_rng(30580)
    num_nodes, decades = int(rng.integers(2, 60)), float(rng.choice([12.0, 16.0]))
    net = dense_diode_network(rng, num_nodes, decades)
    sol = rg.solve(net, tol=1e-9)
    exact = rg.solve(net, tol=1e-14)
    assert sol.converged and exact.converged
    assert abs(exact.potentials[3] - 679.8129) < 1e-4
    np.testing.assert_allclose(sol.potentials, exact.potentials, atol=1e-9 * 680)
    # The answer certified before, and what the report says of it now.
    c = net.compile()
    before = exact.potentials.copy()
    before[[3, 5]] = 679.151014860842
    x = c.variables(before)
    report = kkt_report(c, x, sol.diode_currents)
    assert report.kcl_excess / report.current_scale < 1e-9 < report.scaled
    assert report.drift > 0.5


@pytest.mark.parametrize("seed", range(40))
def test_loop_currents_are_split_with_the_least_negative_current(seed):
    """Random directed multigraphs of conducting diodes (antiparallel pairs, directed loops, arcs
    between them) with a spanning forest's currents: the split keeps every node's balance, and
    its total negative current is the least any split has (an LP over the arcs themselves);
    within strongly connected parts of the graph no current stays negative."""
    from scipy.sparse.csgraph import connected_components
    import scipy.sparse as sp
    from resgraph.forest import spanning_forest, tree_flows
    from resgraph.kkt import _balance_loops
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    arcs = int(rng.integers(n, 4 * n))
    tail, head = rng.integers(0, n, arcs), rng.integers(0, n, arcs)
    keep = tail != head
    tail, head = tail[keep], head[keep]
    forest = spanning_forest(n, tail, head, np.array([0]))
    excess = rng.normal(size=n)
    for root in np.flatnonzero(forest.parent_edge < 0):       # trees other than 0's balance
        if root != 0:
            members = forest.root == root
            excess[members] -= excess[members].mean()
    flow, _ = tree_flows(forest, tail, head, excess, tail.size)
    balanced = _balance_loops(n, tail, head, flow)
    divergence = lambda f: np.bincount(tail, f, n) - np.bincount(head, f, n)   # noqa: E731
    np.testing.assert_allclose(divergence(balanced), divergence(flow), atol=1e-12)
    least = least_negative_total(n, tail, head, flow)
    assert -balanced[balanced < 0].sum() <= least + 1e-8
    _, component = connected_components(sp.csr_matrix((np.ones(tail.size), (tail, head)), shape=(n, n)),
                                        directed=True, connection="strong")
    assert np.all(balanced[component[tail] == component[head]] >= 0)


def test_currents_the_split_between_components_changes_only_by_rounding_keep_their_values():
    """Stress seed 6 (5e3 nodes, 16 decades, largest current 3.8e7 A), from a warm start: the
    split recomputes every current between components of conducting diodes; where one changed
    only by rounding, rerouting that 2e-9 A through a node tied by 5e-5 S drifted it 4.6e-5 V
    and the answer was not certified."""
    net, _ = stress.stress_circuit(6, 5000, 16.0)
    sol = stress.solve_as(net, "warm", np.random.default_rng(10_006))
    assert sol.converged
    check_kirchhoff(net, sol, rtol=1e-8)
