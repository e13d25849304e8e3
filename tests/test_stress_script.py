"""Benchmark scripts on small inputs. stress.py: every draw is solved and passes the KCL check (or is
rejected with the library's error), in each of its solve modes."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))

import stress  # noqa: E402


def test_stress_script_on_small_circuits(capsys):
    assert stress.main(["--seeds", "0", "10", "--size", "900"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out
    solved = [line for line in out.splitlines() if line.endswith(": ok")]
    assert len(solved) >= 5
    assert {mode for mode in stress.MODES if f": {mode}," in out} >= {"cold", "warm", "float32"}


def test_lattice_floor_script_prints_every_piece(capsys):
    """benchmarks/lattice_floor.py on a small lattice: one row per piece, each a positive time."""
    import lattice_floor

    lattice_floor.main(["--size", "400", "--regimes", "off", "--repeat", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "ms |" not in line]
    assert len(rows) == 13
    assert all(float(row.split(" | ")[1]) > 0 for row in rows)


def test_stress_script_over_twelve_decades(capsys):
    """``--decades 12``: conductances log-uniform over 1e-6..1e6 S, the rest of each circuit as
    drawn; every valid one solved and checked."""
    assert stress.main(["--seeds", "0", "8", "--size", "900", "--decades", "12"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out and "g over 12 decades" in out
    assert len([line for line in out.splitlines() if line.endswith(": ok")]) >= 4
    net, _ = stress.stress_circuit(3, 900, 12.0)
    conductance = net.arrays("resistor")[2]
    assert conductance.min() < 1e-5 and conductance.max() > 1e5
