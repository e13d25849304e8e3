"""The SPD solver of the active-set polish: direct Cholesky with numeric refactorisation, reuse of
an old factor as a CG preconditioner, the guard against refactorising onto another pattern, and
the multigrid path where a factor would fill too much."""
import numpy as np
import pytest
import scipy.sparse as sp

from resgraph.csr import changed_lower_rows, lower_row_fingerprints, row_excess
from resgraph.linalg import SPDSolver
from resgraph.schur import SchurCholesky


def lattice_matrix(side: int, rng: np.random.Generator, decades: float = 0.0,
                   anchors: int | None = None) -> sp.csr_matrix:
    """Weighted Laplacian of a side x side lattice plus a small positive diagonal, or plus 1 S at
    ``anchors`` random nodes only (a circuit held by a few sources); conductances uniform in
    0.5-2 S, or log-uniform over ``decades`` decades."""
    idx = np.arange(side * side).reshape(side, side)
    a = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    b = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    g = 10.0 ** rng.uniform(-decades / 2, decades / 2, a.size) if decades else rng.uniform(0.5, 2.0, a.size)
    n = side * side
    off = sp.csr_matrix((np.r_[g, g], (np.r_[a, b], np.r_[b, a])), shape=(n, n))
    diag = np.asarray(off.sum(axis=1)).ravel()
    if anchors is None:
        diag += rng.uniform(0.01, 0.1, n)
    else:
        diag[rng.choice(n, anchors, replace=False)] += 1.0
    matrix = (sp.diags(diag) - off).tocsr()
    matrix.sort_indices()
    return matrix


def clamp_rows(matrix: sp.csr_matrix, fixed: np.ndarray) -> sp.csr_matrix:
    """Identity rows and columns at ``fixed``, the sparsity pattern kept (as the polish does)."""
    n = matrix.shape[0]
    rows = np.repeat(np.arange(n), np.diff(matrix.indptr))
    is_fixed = np.zeros(n, bool)
    is_fixed[fixed] = True
    data = np.where(is_fixed[rows] | is_fixed[matrix.indices], 0.0, matrix.data)
    data[(rows == matrix.indices) & is_fixed[rows]] = 1.0
    return sp.csr_matrix((data, matrix.indices.copy(), matrix.indptr.copy()), shape=(n, n))


def test_row_kernels_see_the_upper_triangle_explicit_zeros_included():
    rng = np.random.default_rng(0)
    base = lattice_matrix(5, rng)
    clamped = clamp_rows(base, np.array([3, 7]))
    upper_base, upper_clamped = np.triu(base.toarray()), np.triu(clamped.toarray())
    columns_changed = np.count_nonzero(np.any(upper_base != upper_clamped, axis=0))
    assert changed_lower_rows(clamped.indptr, clamped.indices, clamped.data, base.data) == columns_changed
    counts, column_sums, value_sums = lower_row_fingerprints(clamped.indptr, clamped.indices, clamped.data)
    # Explicit zeros count: every stored entry of the clamped rows is still there.
    assert np.array_equal(counts, np.count_nonzero(np.triu(base.toarray() != 0), axis=0))
    assert np.allclose(value_sums, upper_clamped.sum(axis=0))
    rows = np.arange(25)[:, None] * np.ones((1, 25), int)
    assert np.array_equal(column_sums, np.where(np.triu(base.toarray() != 0), rows, 0).sum(axis=0))


def test_sequence_of_clamped_systems_is_solved_exactly():
    """Systems that differ in a few rows (refactorised or preconditioned) and in many rows."""
    rng = np.random.default_rng(1)
    base = lattice_matrix(24, rng)          # 576 unknowns: above the dense limit, mesh-like
    n = base.shape[0]
    solver = SPDSolver(mesh_like=True)
    guess = np.zeros(n)
    for fixed_count in (0, 3, 3, 200, 0):
        matrix = clamp_rows(base, rng.choice(n, fixed_count, replace=False))
        rhs = rng.normal(size=n)
        y = solver.solve(matrix, rhs, guess, rtol=1e-12)
        assert np.linalg.norm(matrix @ y - rhs) <= 1e-10 * np.linalg.norm(rhs)
        guess = y


def test_changes_count_changed_columns_within_and_across_patterns():
    rng = np.random.default_rng(2)
    base = lattice_matrix(20, rng)
    solver = SPDSolver(mesh_like=True)
    solver.solve(base, np.ones(base.shape[0]), np.zeros(base.shape[0]))   # factorises
    assert solver._changes(base) == (0, True)
    # Clamping node 5 changes its row and column: in the upper triangle, the entries (4, 5),
    # (5, 5), (5, 6) and (5, 25) of columns 5, 6 and 25.
    assert solver._changes(clamp_rows(base, np.array([5]))) == (3, True)
    other = (base + sp.csr_matrix(([-0.1, -0.1], ([0, 399], [399, 0])), shape=base.shape)).tocsr()
    assert solver._changes(other) == (1, False)    # column 399 gained (0, 399)


def test_refactorisation_after_a_pattern_change_is_fresh():
    """A system whose pattern differs from the factorised one must not reuse its symbolic
    analysis."""
    rng = np.random.default_rng(3)
    first = lattice_matrix(18, rng)
    n = first.shape[0]
    # 150 long-range resistors: too many changes for CG preconditioned by the old factor.
    a, b = rng.choice(n, 150), rng.choice(n, 150)
    a, b = a[a != b], b[a != b]
    g = np.ones(a.size)
    extra = sp.csr_matrix((np.r_[-g, -g, g, g], (np.r_[a, b, a, b], np.r_[b, a, a, b])), shape=first.shape)
    second = (first + extra).tocsr()
    second.sort_indices()
    solver = SPDSolver(mesh_like=True)
    solver.solve(first, np.ones(n), np.zeros(n))
    # Whether the changes outweigh a refactorisation is decided on measured seconds; here they
    # must, whatever the machine's timing (a loaded machine once made the factorisation look
    # 300 times as costly as a solve).
    solver._iteration_seconds, solver._setup_seconds = 1.0, 0.0
    rhs = rng.normal(size=n)
    y = solver.solve(second, rhs, np.zeros(n))
    assert solver._changes(second) == (0, True)    # it was factorised afresh
    assert np.linalg.norm(second @ y - rhs) <= 1e-10 * np.linalg.norm(rhs)


def test_multigrid_path_reuses_and_rebuilds_to_the_requested_accuracy(monkeypatch):
    """Beyond FACTOR_LIMIT the solver builds an AMG hierarchy, reuses it as CG preconditioner for
    systems that differ in a few rows (budget from its measured convergence rate) and rebuilds it
    when many rows changed; every answer meets its tolerance, loose and tight alike."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "FACTOR_LIMIT", 100)
    rng = np.random.default_rng(4)
    base = lattice_matrix(30, rng)
    n = base.shape[0]
    solver = SPDSolver(mesh_like=True)
    guess = np.zeros(n)
    for fixed_count, rtol in ((0, 1e-6), (3, 1e-6), (300, 1e-6), (300, 1e-12), (0, 1e-12)):
        matrix = clamp_rows(base, rng.choice(n, fixed_count, replace=False))
        rhs = rng.normal(size=n)
        y = solver.solve(matrix, rhs, guess, rtol=rtol)
        scale = max(np.linalg.norm(rhs), np.linalg.norm(matrix.diagonal() * guess))
        assert np.linalg.norm(matrix @ y - rhs) <= rtol * scale
        assert solver._factor is None          # never factorised: the multigrid path
        guess = y


def test_a_system_whose_factor_fills_too_much_goes_to_multigrid(monkeypatch):
    """Past ``DIRECT_LIMIT`` unknowns, a factor with more than ``FILL_LIMIT`` entries per row is
    not computed: that system and the later ones of the polish take AMG-preconditioned CG."""
    import resgraph.linalg as linalg
    rng = np.random.default_rng(8)
    base = lattice_matrix(30, rng)
    n = base.shape[0]
    monkeypatch.setattr(linalg, "FILL_LIMIT", 5)         # a 30 x 30 lattice's factor: about 20
    solver = SPDSolver(mesh_like=True)
    for fixed_count in (0, 3):
        matrix = clamp_rows(base, rng.choice(n, fixed_count, replace=False))
        rhs = rng.normal(size=n)
        y = solver.solve(matrix, rhs, np.zeros(n), rtol=1e-12)
        assert np.linalg.norm(matrix @ y - rhs) <= 1e-12 * np.linalg.norm(rhs)
        assert solver._factor is None and solver._hierarchy is not None
    monkeypatch.setattr(linalg, "FILL_LIMIT", 64)
    fresh = SPDSolver(mesh_like=True)
    fresh.solve(base, np.ones(n), np.zeros(n))
    assert fresh._factor is not None and 5 < fresh._factor.fill <= 64


def test_every_row_is_balanced_to_rtol_of_a_typical_rows_currents(monkeypatch):
    """The accuracy target is per row: on 1e4 unknowns a 2-norm target relative to the whole
    vector lets single rows keep residuals ~100 times larger (the polish then certified 1e5-node
    circuits whose worst node kept 1e-8 A of a 0.02 A node's currents unbalanced)."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "FACTOR_LIMIT", 100)      # the multigrid-preconditioned CG path
    rng = np.random.default_rng(5)
    matrix = lattice_matrix(100, rng)
    n = matrix.shape[0]
    # Potentials near 1 V everywhere with small differences (as in a polish), warm-started.
    exact = 1.0 + 0.01 * rng.normal(size=n)
    rhs = matrix @ exact
    guess = exact + 1e-3 * rng.normal(size=n)
    rtol = 1e-9
    y = SPDSolver(mesh_like=True).solve(matrix, rhs, guess, rtol=rtol)
    typical = max(np.sqrt(np.mean(rhs ** 2)), np.sqrt(np.mean((matrix.diagonal() * guess) ** 2)))
    assert np.abs(matrix @ y - rhs).max() <= rtol * typical


def test_many_clamped_rows_re_form_the_kept_multigrid_hierarchy(monkeypatch):
    """Rows turned into identity rows (same pattern) keep the AMG splittings and interpolations:
    the coarse levels are re-formed as Galerkin products of the new matrix, and the answer still
    meets its tolerance. A changed pattern (merged clusters) gets a fresh hierarchy."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "FACTOR_LIMIT", 100)
    rng = np.random.default_rng(6)
    base = lattice_matrix(40, rng)
    n = base.shape[0]
    solver = SPDSolver(mesh_like=True)
    first = solver.solve(base, rng.normal(size=n), np.zeros(n), rtol=1e-12)
    kept = solver._hierarchy
    clamped = clamp_rows(base, rng.choice(n, 400, replace=False))
    rhs = rng.normal(size=n)
    y = solver.solve(clamped, rhs, first, rtol=1e-12)
    assert solver._hierarchy is kept and solver._regalerkined
    levels = kept.levels
    assert levels[0].A is clamped
    for fine, coarse in zip(levels[:-1], levels[1:]):
        galerkin = (fine.R @ fine.A @ fine.P).toarray()
        assert np.allclose(coarse.A.toarray(), galerkin, rtol=0, atol=1e-12 * np.abs(galerkin).max())
    scale = max(np.linalg.norm(rhs), np.linalg.norm(clamped.diagonal() * first))
    assert np.linalg.norm(clamped @ y - rhs) <= 1e-12 * scale
    # Long-range resistors change the pattern: a new hierarchy.
    a, b = rng.choice(n, 300), rng.choice(n, 300)
    a, b = a[a != b], b[a != b]
    g = np.ones(a.size)
    wired = (clamped + sp.csr_matrix((np.r_[-g, -g, g, g], (np.r_[a, b, a, b], np.r_[b, a, a, b])),
                                     shape=clamped.shape)).tocsr()
    z = solver.solve(wired, rhs, y, rtol=1e-12)
    assert solver._hierarchy is not kept
    assert np.linalg.norm(wired @ z - rhs) <= 1e-12 * max(np.linalg.norm(rhs), np.linalg.norm(wired.diagonal() * y))


def test_multigrid_hierarchy_gets_the_second_pass_where_conductances_span_decades(monkeypatch):
    """Classical coarsening crawls on a lattice held at a few nodes whose conductances spread over
    six decades; the
    probe of the first hierarchy switches to the second coarsening pass, and the answer meets
    its tolerance. A uniform lattice keeps the first settings."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "FACTOR_LIMIT", 100)
    rng = np.random.default_rng(7)
    uniform, wide = (lattice_matrix(100, rng, decades, anchors=5) for decades in (0.0, 6.0))
    for matrix, slow in ((uniform, False), (wide, True)):
        solver = SPDSolver(mesh_like=True)
        rhs = rng.normal(size=matrix.shape[0])
        y = solver.solve(matrix, rhs, np.zeros(matrix.shape[0]), rtol=1e-10)
        assert solver._second_pass == slow
        assert np.linalg.norm(matrix @ y - rhs) <= 1e-10 * np.linalg.norm(rhs)


def test_unchanged_matrix_goes_on_with_its_preconditioner(monkeypatch):
    """When the kept preconditioner was built from this very matrix, running out of the reuse
    budget (here forced by an overstated rate) must not rebuild it: a rebuild would make the
    same hierarchy. CG goes on with it to the requested accuracy."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "FACTOR_LIMIT", 100)
    monkeypatch.setattr(linalg, "REUSE_ITERATIONS", (1, 1))
    rng = np.random.default_rng(8)
    matrix = lattice_matrix(60, rng, anchors=5)
    n = matrix.shape[0]
    solver = SPDSolver(mesh_like=True)
    rough = solver.solve(matrix, rng.normal(size=n), np.zeros(n), rtol=1e-4)
    kept = solver._hierarchy
    solver._decades = 100.0                 # the budget is now 1 + 1 iterations
    rhs = rng.normal(size=n)
    y = solver.solve(matrix, rhs, rough, rtol=1e-12)
    assert solver._hierarchy is kept
    assert np.linalg.norm(matrix @ y - rhs) <= 1e-12 * max(np.linalg.norm(rhs), np.linalg.norm(matrix.diagonal() * rough))


def random_graph_matrix(n: int, rng: np.random.Generator, decades: float) -> sp.csr_matrix:
    """Weighted Laplacian of a random graph (mean degree about 4, connected) with conductances
    log-uniform over ``decades`` decades, plus 1 S at four nodes (a circuit held by a few
    sources): an expander, whose systems go to CG."""
    a = np.r_[np.arange(1, n), rng.integers(0, n, n)]
    b = np.r_[rng.integers(0, np.arange(1, n)), rng.integers(0, n, n)]
    keep = a != b
    a, b = a[keep], b[keep]
    g = 10.0 ** rng.uniform(-decades / 2, decades / 2, a.size)
    off = sp.csr_matrix((np.r_[g, g], (np.r_[a, b], np.r_[b, a])), shape=(n, n))
    diag = np.asarray(off.sum(axis=1)).ravel()
    diag[rng.choice(n, 4, replace=False)] += 1.0
    matrix = (sp.diags(diag) - off).tocsr()
    matrix.sort_indices()
    return matrix


def test_a_stalled_expander_system_is_solved_with_a_support_graph(monkeypatch):
    """Where CG with the aggregation multigrid misses its target (here it gets no iterations),
    CG preconditioned by a support graph solves the expander's system, and starts the later
    ones, skipping the strengths that filled in."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "SUPPORT_AFTER", 0)
    monkeypatch.setattr(linalg, "EXPANDER_ITERATIONS", 1)      # Jacobi hands over at once
    monkeypatch.setattr(linalg, "FILL_LIMIT", 12)    # the strongest support (16.8 a row) fills in
    rng = np.random.default_rng(11)
    base = random_graph_matrix(2000, rng, decades=12.0)
    n = base.shape[0]
    solver = SPDSolver(mesh_like=False, factorise=False)
    built, tried, original = [], [], linalg.SupportPreconditioner

    def counted(matrix, max_fill, strengths):
        tried.append(strengths)
        built.append(original(matrix, max_fill, strengths))
        return built[-1]

    monkeypatch.setattr(linalg, "SupportPreconditioner", counted)
    for fixed_count in (0, 5):
        matrix = clamp_rows(base, rng.choice(n, fixed_count, replace=False))
        # (Currents of the conductances' scale: the node-wise target, 1e-11 of a typical node's
        # currents, lies above what rounding lets a residual reach.)
        rhs = matrix @ rng.normal(size=n)
        y = solver.solve(matrix, rhs, np.zeros(n), rtol=1e-11, scale=np.inf)
        assert np.linalg.norm(matrix @ y - rhs) <= 1e-11 * np.linalg.norm(rhs) / np.sqrt(n)
        assert solver._support and not solver._rescued and solver._factor is None
    assert len(built) == 2
    # The second skips the strength that filled in for the first.
    assert built[0].strength == linalg.STRENGTHS[1]
    assert tried == [linalg.STRENGTHS, linalg.STRENGTHS[1:]]


def test_a_system_at_the_rounding_floor_is_settled_row_by_row(monkeypatch):
    """Where rounding's floor sets CG's target (here the scale asks for far less than rounding
    allows), a residual at that floor in norm may sit on a row of small terms: CG with the
    support graph goes on until every row is within ``SETTLED_ULPS`` of its own terms'
    rounding."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "SUPPORT_AFTER", 0)
    monkeypatch.setattr(linalg, "EXPANDER_ITERATIONS", 1)      # Jacobi hands over at once
    rng = np.random.default_rng(13)
    matrix = random_graph_matrix(3000, rng, decades=12.0)
    rhs = matrix @ rng.normal(size=matrix.shape[0])
    solver = SPDSolver(mesh_like=False, factorise=False)
    y = solver.solve(matrix, rhs, np.zeros(rhs.size), rtol=1e-11, scale=1e-6)
    assert solver._support and not solver._rescued
    eps = np.finfo(float).eps
    rows = np.abs(rhs) + abs(matrix) @ np.abs(y)       # each row's terms' magnitudes
    residual = np.abs(matrix @ y - rhs)
    # (Two more eps for summing in another order than the solver's kernel.)
    assert np.all(residual <= (linalg.SETTLED_ULPS + 2) * eps * rows)
    assert np.linalg.norm(residual) > 1e3 * 1e-11 * 1e-6      # (the floor did set the target)
    signed, excess = row_excess(matrix.indptr, matrix.indices, matrix.data, rhs, y, linalg.SETTLED_ULPS * eps)
    np.testing.assert_allclose(signed, matrix @ y - rhs, rtol=0, atol=2 * eps * rows.max())
    np.testing.assert_allclose(excess, residual - linalg.SETTLED_ULPS * eps * rows, rtol=0, atol=2 * eps * rows.max())


def test_a_stalled_expander_system_is_factorised_when_affordable(monkeypatch):
    """Where CG with the aggregation multigrid misses its target and so does CG with a support
    graph (here they get no iterations), the expander's system is factorised, exactly, and so
    are the later ones; where the factorisation would take more memory than ``rescue_bytes()``
    it is not, and CG's answer stands."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "AMG_ITERATIONS", 0)
    monkeypatch.setattr(linalg, "SUPPORT_AFTER", 0)
    monkeypatch.setattr(linalg, "EXPANDER_ITERATIONS", 1)      # Jacobi hands over at once
    rng = np.random.default_rng(11)
    base = random_graph_matrix(600, rng, decades=12.0)
    n = base.shape[0]
    solver = SPDSolver(mesh_like=False, factorise=False)
    for fixed_count in (0, 5):
        matrix = clamp_rows(base, rng.choice(n, fixed_count, replace=False))
        rhs = rng.normal(size=n)
        y = solver.solve(matrix, rhs, np.zeros(n), rtol=1e-11)
        assert np.linalg.norm(matrix @ y - rhs) <= 1e-9 * np.linalg.norm(rhs)
        assert solver._rescued and solver._factor is not None
    exact = SchurCholesky(base)
    footprint = exact.footprint
    rhs = rng.normal(size=n)
    monkeypatch.setattr(linalg, "rescue_bytes", lambda: footprint - 1)      # a byte short: refused
    refused = SPDSolver(mesh_like=False, factorise=False)
    y = refused.solve(base, rhs, np.zeros(n), rtol=1e-11)
    assert refused._factor is None and not refused._rescued
    assert np.linalg.norm(base @ y - rhs) > 1e-9 * np.linalg.norm(rhs)     # (CG had no iterations)
    monkeypatch.setattr(linalg, "rescue_bytes", lambda: footprint)          # just enough
    fits = SPDSolver(mesh_like=False, factorise=False)
    y = fits.solve(base, rhs, np.zeros(n), rtol=1e-11)
    exact.factorise(base)
    assert fits._rescued and np.array_equal(y, exact.solve(rhs))


def test_a_stalled_mesh_system_is_solved_with_a_support_graph(monkeypatch):
    """On a mesh whose factor exceeds ``FILL_LIMIT`` (it goes to AMG-CG), conductances over 12
    decades stall AMG-CG; CG with a support graph takes over, and solves the later systems,
    with no factorisation."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "FILL_LIMIT", 8)
    rng = np.random.default_rng(5)
    base = lattice_matrix(60, rng, decades=12.0)
    n = base.shape[0]
    solver = SPDSolver(mesh_like=True)
    for fixed_count in (0, 5, 10):
        matrix = clamp_rows(base, rng.choice(n, fixed_count, replace=False))
        rhs = matrix @ rng.normal(size=n)
        y = solver.solve(matrix, rhs, np.zeros(n), rtol=1e-11, scale=np.inf)
        assert np.linalg.norm(matrix @ y - rhs) <= 1e-11 * np.linalg.norm(rhs) / np.sqrt(n)
        assert solver._hierarchy is not None and solver._support
        assert not solver._rescued and solver._factor is None


@pytest.mark.parametrize("support_after", [10, 200])
def test_a_mesh_system_on_which_amg_would_crawl_goes_to_a_support_graph(monkeypatch, support_after):
    """On a mesh going to AMG-CG (its factor exceeds ``FILL_LIMIT``), a system with a new
    pattern needs a new hierarchy; where the rate seen so far (here 0.13 decades an iteration,
    about 90 iterations to the target) forecasts more than ``SUPPORT_AFTER`` iterations, a
    support graph takes it instead, and no hierarchy is built; otherwise one is."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "FILL_LIMIT", 8)
    monkeypatch.setattr(linalg, "SUPPORT_AFTER", support_after)
    built = []
    original = linalg.SPDSolver._build_hierarchy

    def counted(self, matrix):
        built.append(matrix)
        return original(self, matrix)

    rng = np.random.default_rng(5)
    base = lattice_matrix(60, rng, decades=6.0)
    n = base.shape[0]
    # Whether a kept hierarchy is tried first depends on the seconds a build and an iteration
    # take: one solve first, so that loading the JIT cache and PyAMG is not counted in the first
    # build (from a fresh clone that made CG with the first hierarchy look cheaper than building
    # another, and none was built).
    SPDSolver(mesh_like=True).solve(base, base @ rng.normal(size=n), np.zeros(n), rtol=1e-11, scale=np.inf)
    monkeypatch.setattr(linalg.SPDSolver, "_build_hierarchy", counted)
    solver = SPDSolver(mesh_like=True)
    for step in range(3):
        matrix = base
        if step:      # a few long-range couplings of 1 S: a new pattern
            a, b = rng.integers(0, n, 20), rng.integers(0, n, 20)
            a, b = a[a != b], b[a != b]
            wires = sp.csr_matrix((np.ones(a.size), (a, b)), shape=(n, n))
            wires = wires + wires.T
            matrix = (base + sp.diags(np.asarray(wires.sum(axis=1)).ravel()) - wires).tocsr()
            matrix.sort_indices()
        rhs = matrix @ rng.normal(size=n)
        y = solver.solve(matrix, rhs, np.zeros(n), rtol=1e-11, scale=np.inf)
        assert np.linalg.norm(matrix @ y - rhs) <= 1e-11 * np.linalg.norm(rhs) / np.sqrt(n)
    crawls = 12 / solver._decades > support_after
    assert crawls == (support_after == 10)
    assert solver._support == crawls and not solver._rescued
    assert len(built) == (1 if crawls else 3)


def test_a_stalled_mesh_system_is_factorised_beyond_the_fill_limit(monkeypatch):
    """On a mesh whose factor exceeds ``FILL_LIMIT`` (it goes to AMG-CG), a system on which CG
    stalls, with AMG and with a support graph (here they get no iterations), is factorised
    within ``rescue_bytes()``, exactly, and so are the later ones."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "AMG_ITERATIONS", 0)
    monkeypatch.setattr(linalg, "FILL_LIMIT", 8)
    rng = np.random.default_rng(12)
    base = random_graph_matrix(600, rng, decades=12.0)
    n = base.shape[0]
    assert SchurCholesky(base).fill > linalg.FILL_LIMIT
    solver = SPDSolver(mesh_like=True)
    for fixed_count in (0, 5):
        matrix = clamp_rows(base, rng.choice(n, fixed_count, replace=False))
        rhs = rng.normal(size=n)
        y = solver.solve(matrix, rhs, np.zeros(n), rtol=1e-11)
        exact = SchurCholesky(matrix)
        exact.factorise(matrix)
        assert solver._rescued and np.array_equal(y, exact.solve(rhs))


def test_the_rescue_budget_is_a_share_of_physical_memory(monkeypatch):
    import os

    import resgraph.linalg as linalg
    pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    assert linalg.rescue_bytes() == int(linalg.RESCUE_MEMORY_SHARE * pages * page)

    def unknown(name):
        raise ValueError(name)
    monkeypatch.setattr(os, "sysconf", unknown)
    assert linalg.rescue_bytes() == int(linalg.RESCUE_MEMORY_SHARE * linalg.ASSUMED_MEMORY)


def test_rows_that_cg_cannot_settle_are_refined_alone(monkeypatch):
    """Conductances over 14 decades: CG with a support graph meets rounding's floor in norm
    (the noise of rows with large terms) while rows with small terms are still off, and aiming
    lower gains nothing; the rows still off are then refined alone, and every row settles
    (before, with no factorisation to fall back on, 5.5e-10 to 4e-9 A stayed beyond their
    allowances). Which of the four systems needs the refinement depends on the machine's
    rounding (three on one, two on an AMD EPYC)."""
    import resgraph.linalg as linalg
    monkeypatch.setattr(linalg, "SUPPORT_AFTER", 0)
    monkeypatch.setattr(linalg, "EXPANDER_ITERATIONS", 1)      # Jacobi hands over at once
    monkeypatch.setattr(linalg, "rescue_bytes", lambda: 0)       # no factorisation to fall back on
    refined = []
    original = linalg._refine_unsettled

    def counted(*args):
        refined.append(True)
        return original(*args)

    monkeypatch.setattr(linalg, "_refine_unsettled", counted)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        matrix = random_graph_matrix(5000, rng, decades=14.0)
        rhs = 1e3 * (matrix @ rng.normal(size=5000))
        solver = SPDSolver(mesh_like=False, factorise=False)
        y = solver.solve(matrix, rhs, np.zeros(rhs.size), rtol=1e-11, scale=1.0)
        _, excess = row_excess(matrix.indptr, matrix.indices, matrix.data, rhs, y,
                               linalg.SETTLED_ULPS * np.finfo(float).eps)
        assert solver._support and not solver._rescued
        assert excess.max() <= 1e-11
    assert refined


@pytest.mark.parametrize("seed", range(4))
def test_compiled_jacobi_cg_takes_scipys_steps(seed):
    """``linalg._jacobi_cg`` against ``scipy.sparse.linalg.cg`` with the same preconditioner on a
    random grounded graph Laplacian: the same iterate when both reach the target, and after
    ``budget`` iterations where it stops there."""
    import scipy.sparse.linalg as sla
    from resgraph.linalg import _jacobi_cg
    rng = np.random.default_rng(seed)
    n = 400
    a, b = rng.integers(0, n, 4 * n), rng.integers(0, n, 4 * n)
    keep = a != b
    g = 10.0 ** rng.uniform(-2, 2, keep.sum())
    off = sp.coo_matrix((-g, (a[keep], b[keep])), shape=(n, n))
    off = (off + off.T).tocsr()
    matrix = (off + sp.diags(-np.asarray(off.sum(axis=1)).ravel() + 1e-2 * rng.random(n))).tocsr()
    rhs, start = rng.normal(size=n), rng.normal(size=n)
    inverse = 1.0 / matrix.diagonal()
    initial = float(np.linalg.norm(matrix @ start - rhs))
    target = 1e-10 * np.linalg.norm(rhs)
    expected = sla.cg(matrix, rhs, x0=start, rtol=0.0, atol=target, M=sp.diags(inverse), maxiter=5000)[0]
    y, stopped = _jacobi_cg(matrix.indptr, matrix.indices, matrix.data, inverse, rhs, start, target, 5000,
                                   10**6, 10**6, 1.0, initial)
    assert not stopped and np.linalg.norm(matrix @ y - rhs) < 1.01 * target
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    after = sla.cg(matrix, rhs, x0=start, rtol=0.0, atol=target, M=sp.diags(inverse), maxiter=12)[0]
    y, stopped = _jacobi_cg(matrix.indptr, matrix.indices, matrix.data, inverse, rhs, start, target, 5000,
                                   10**6, 12, 1.0, initial)
    assert stopped
    np.testing.assert_allclose(y, after, rtol=0, atol=1e-9 * np.abs(after).max())


def test_compiled_jacobi_cg_solves_a_system_at_a_subnormal_scale():
    """A polish restarted where every current is zero: no drive and a start near 1e-151 V, so
    the residual's squares in CG's dot products are subnormal. They lost their digits and fell
    to zero (a ZeroDivisionError, met on a 2.4e3-node circuit thick with diodes); CG keeps
    them scaled and ends at the target."""
    from resgraph.linalg import _jacobi_cg
    rng = np.random.default_rng(0)
    matrix = lattice_matrix(8, rng)
    start = 1e-151 * rng.uniform(-1.0, 1.0, 64)
    rhs, target = np.zeros(64), 1e-163
    y, stopped = _jacobi_cg(matrix.indptr, matrix.indices, matrix.data, 1.0 / matrix.diagonal(), rhs, start, target,
                            5000, 25, 5000, 2.0, float(np.linalg.norm(matrix @ start)))
    assert not stopped and np.linalg.norm(matrix @ y) < target
    y, stopped = _jacobi_cg(matrix.indptr, matrix.indices, matrix.data, 1.0 / matrix.diagonal(), rhs, np.zeros(64),
                            target, 5000, 25, 5000, 2.0, 0.0)
    assert not stopped and not y.any()
