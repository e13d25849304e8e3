"""A coarse step for coordinate descent: every unclamped variable shifted by one amount.

Coordinate descent removes local errors in a few sweeps but a smooth, global one slowly. On a
network held at fixed potentials in only a few places (eight voltage sources among a million
nodes) the slowest mode of the conductance matrix is nearly constant away from those places, and
sweeps stall on it: the residual of a 1e6-node random circuit with no diode conducting stayed at
7e-5 for 200 sweeps. Before each batch of sweeps, :func:`shift_step` moves every variable that no
diode holds (the *free* ones) by the same amount ``alpha`` volts, the exact minimiser of the
dissipation along that direction, clipped so that no diode is crossed; the sweeps then smooth
what the shift disturbs near the fixed potentials. Measured (``benchmarks/omega_sweep.py``-style
trajectories, numba, 1e6-node random circuits): residual 1e-10 after 20 sweeps instead of 7e-5
after 200 with no diode conducting, 1e-9 after about 100 sweeps instead of 1e-7 after 400 with
clamps conducting.

Array-module generic: it runs where the potentials live, on the backend's ``optima`` kernel, and
reads back one small vector.
"""
from __future__ import annotations


def shift_terms(backend, graph, x):
    """The step's direction and sums from ``backend.optima``: ``(d, sums)`` with ``d`` 1 on the
    free variables and 0 elsewhere (``x``'s dtype, on the device) and ``sums`` on the host:
    ``[slope, curvature, room_up, room_down]``, the dissipation's decrease per volt along ``d``
    (amperes), its curvature ``d'Q d`` (siemens), and how far the free variables can move up and
    down before a diode stops one of them (volts)."""
    xp = backend.xp
    target, lower, upper = backend.optima(graph, x)
    total = graph.total_conductance
    pull = total * (target - x)            # amperes into each variable: source - (Q x)
    free = ((x > lower) | (pull > 0)) & ((x < upper) | (pull < 0))
    d = free.astype(x.dtype)
    shifted_target = backend.optima(graph, x + d)[0]
    # The curvature d'Q d from the change of the imbalance, pull(x) - pull(x + d) = Q d, which is
    # total * (target - shifted_target + 1) on the free variables: no matrix product needed.
    sums = xp.stack((xp.dot(d, pull), xp.dot(d, total * (target - shifted_target + 1)),
                     xp.min(xp.where(free, upper - x, xp.inf)), xp.max(xp.where(free, lower - x, -xp.inf))))
    return d, backend.to_host(sums).tolist()


def shift_step(backend, graph, x) -> float:
    """Shift the free variables of ``x`` (in place) by the optimal common amount; returns it (V).

    ``graph`` is the :class:`resgraph.compiled.SweepArrays` and ``x`` the potentials, both on
    ``backend``'s device. A variable is free unless it sits on a diode bound that its current
    imbalance pushes against. The step never increases the dissipation and keeps every diode
    constraint: bounds from diodes to fixed potentials and from diodes to other variables are both
    honoured, the latter conservatively (as if the other variable stayed put). The direction and
    sums come from the backend's fused ``shift_terms`` kernel where it has one, else from
    :func:`shift_terms`.
    """
    if x.size == 0:
        return 0.0
    if backend.shift_terms is not None:
        d, (slope, curvature, room_up, room_down) = backend.shift_terms(graph, x)
    else:
        d, (slope, curvature, room_up, room_down) = shift_terms(backend, graph, x)
    if not curvature > 0:
        return 0.0
    alpha = min(max(slope / curvature, room_down), room_up)
    if alpha != 0.0:
        x += x.dtype.type(alpha) * d
    return alpha
