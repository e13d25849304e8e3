"""``solve(..., progress=True)``: a progress bar on stderr through the sweeps and the polish."""
import numpy as np

import resgraph as rg
from circuits import diode_lattice


def test_the_bar_shows_sweeps_polish_steps_and_the_certificate(capsys):
    net = diode_lattice(np.random.default_rng(3), 40)
    sol = rg.solve(net, tol=1e-9, progress=True)
    err = capsys.readouterr().err
    assert sol.converged and sol.sweeps > 0 and sol.polish_iterations > 0
    assert "1,600 unknowns" in err and f"{sol.sweeps} sweeps" in err
    assert "polish step 1" in err     # (the sweeps' checks redraw at most every 0.1 s)
    assert f"polish step {sol.polish_iterations} (exact)" in err
    assert "converged, KKT" in err


def test_no_bar_unless_asked(capsys):
    rg.solve(diode_lattice(np.random.default_rng(3), 20), tol=1e-9)
    assert capsys.readouterr().err == ""


def test_the_bar_says_when_the_answer_is_not_converged(capsys):
    sol = rg.solve(diode_lattice(np.random.default_rng(3), 20), tol=1e-9, polish=False, max_sweeps=10,
                   progress=True)
    assert not sol.converged
    assert "NOT converged" in capsys.readouterr().err


def test_the_bar_shows_the_interior_point_methods_steps(capsys, monkeypatch):
    """A circuit on which the active-set iteration cycles: the interior-point method that takes
    over shows its Newton steps and their gap."""
    import resgraph.polish as polish
    from circuits import dense_diode_network
    monkeypatch.setattr(polish, "INTERIOR_STEPS", 0)    # (hand over as soon as allowed)
    rng = np.random.default_rng(183)
    net = dense_diode_network(rng, int(rng.integers(20, 300)), 6.0)
    sol = rg.solve(net, tol=1e-9, progress=True)
    err = capsys.readouterr().err
    assert sol.converged
    assert "interior-point step 1: gap" in err
