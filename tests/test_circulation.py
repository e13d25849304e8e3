"""The least negative split of current around loops (``resgraph.circulation``) against an LP."""
import numpy as np
import pytest

from circuits import least_negative_total, random_arcs
from resgraph.circulation import least_negative_flow


@pytest.mark.parametrize("seed", range(60))
def test_the_split_keeps_the_balances_and_is_least_negative(seed):
    """Random directed multigraphs (loops both ways, parallel and antiparallel arcs, several
    components); currents drawn with many equal values and zeros so that pivots tie and
    degenerate (Bland's rule must still end)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    tail, head = random_arcs(rng, n, 4 * n)
    flow = rng.integers(-3, 4, tail.size).astype(float) if seed % 2 else rng.normal(size=tail.size)
    split = least_negative_flow(n, tail, head, flow)
    divergence = lambda f: np.bincount(tail, f, n) - np.bincount(head, f, n)   # noqa: E731
    np.testing.assert_allclose(divergence(split), divergence(flow), atol=1e-12)
    least = least_negative_total(n, tail, head, flow) if tail.size else 0.0
    assert abs(-split[split < 0].sum() - least) <= 1e-9 * max(1.0, np.abs(flow).sum())


def test_a_directed_loop_carries_no_negative_current():
    """Three arcs round a loop, one carrying 1 A against it: circulation cancels it."""
    split = least_negative_flow(3, np.array([0, 1, 2]), np.array([1, 2, 0]), np.array([0.0, 0.0, -1.0]))
    np.testing.assert_array_equal(split, [1.0, 1.0, 0.0])


def test_against_a_path_of_no_loop_the_current_stays():
    """A tree has one split only: the current against an arc stays."""
    split = least_negative_flow(3, np.array([0, 1]), np.array([1, 2]), np.array([-2.0, 1.0]))
    np.testing.assert_array_equal(split, [-2.0, 1.0])
