"""The least negative split of current around loops (``resgraph.circulation``) against an LP."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from resgraph.circulation import least_negative_flow


def _lp_least_negative(num_nodes, tail, head, flow):
    """The least total negative current with ``flow``'s node balances: HiGHS on the arcs'
    positive and negative parts."""
    arcs = tail.size
    incidence = sp.csr_matrix((np.r_[np.ones(arcs), -np.ones(arcs)],
                               (np.r_[tail, head], np.r_[np.arange(arcs), np.arange(arcs)])), shape=(num_nodes, arcs))
    result = linprog(np.r_[np.zeros(arcs), np.ones(arcs)], A_eq=sp.hstack([incidence, -incidence]).tocsr(),
                     b_eq=incidence @ flow, bounds=(0, None), method="highs",
                     options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    assert result.status == 0
    return float(result.fun)


@pytest.mark.parametrize("seed", range(60))
def test_the_split_keeps_the_balances_and_is_least_negative(seed):
    """Random directed multigraphs (loops both ways, parallel and antiparallel arcs, several
    components); currents drawn with many equal values and zeros so that pivots tie and
    degenerate (Bland's rule must still end)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    arcs = int(rng.integers(1, 4 * n))
    tail, head = rng.integers(0, n, arcs), rng.integers(0, n, arcs)
    keep = tail != head
    tail, head = tail[keep], head[keep]
    flow = rng.integers(-3, 4, tail.size).astype(float) if seed % 2 else rng.normal(size=tail.size)
    split = least_negative_flow(n, tail, head, flow)
    divergence = lambda f: np.bincount(tail, f, n) - np.bincount(head, f, n)   # noqa: E731
    np.testing.assert_allclose(divergence(split), divergence(flow), atol=1e-12)
    least = _lp_least_negative(n, tail, head, flow) if tail.size else 0.0
    assert abs(-split[split < 0].sum() - least) <= 1e-9 * max(1.0, np.abs(flow).sum())


def test_a_directed_loop_carries_no_negative_current():
    """Three arcs round a loop, one carrying 1 A against it: circulation cancels it."""
    split = least_negative_flow(3, np.array([0, 1, 2]), np.array([1, 2, 0]), np.array([0.0, 0.0, -1.0]))
    np.testing.assert_array_equal(split, [1.0, 1.0, 0.0])


def test_against_a_path_of_no_loop_the_current_stays():
    """A tree has one split only: the current against an arc stays."""
    split = least_negative_flow(3, np.array([0, 1]), np.array([1, 2]), np.array([-2.0, 1.0]))
    np.testing.assert_array_equal(split, [-2.0, 1.0])
