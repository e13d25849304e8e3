"""Exact steady state from an approximate one: a primal-dual active-set method.

Coordinate descent stalls when a conducting diode joins two free nodes: each node is optimal on
its own, the pair is not. The polish treats the set of conducting diodes as unknown and iterates
(Hintermueller, Ito & Kunisch's primal-dual active set method, a semismooth Newton method):

1. contract every active diode (zero voltage across it): nodes tied by active diodes form one
   cluster, clusters tied to a fixed potential are fixed;
2. solve the linear network on the clusters exactly (KCL at every cluster);
3. compute the diode currents from KCL along a spanning forest of each cluster;
4. reverse-violated diodes switch on, diodes carrying negative current switch off (currents on
   loops of active diodes are split to avoid negative values where possible, see
   :func:`resgraph.kkt.diode_currents`).

While the active set is still changing the solves are loose (``ROUGH_RTOL``, then ``LOOSE_RTOL``):
they only steer it, until it stops changing or stops settling (``LOOSE_PATIENCE``).
On these M-matrix problems it typically settles in a handful of solves, and the polish stops only
when the KKT conditions hold after a tight solve, so the answer is the true optimum. An active
set that passes with diodes carrying currents negative beyond rounding (within ``tol`` of the
largest current: over many decades they can hold a weakly tied island off its potential) is
tried again without them, for as long as the answer still passes, and the last that passes kept.

With many diodes between free nodes the iteration can cycle (a 286-node random circuit with 255
of them: 18 steps switching 2-87 diodes each, then a state seen before, at every retry), or
crawl (a 2.3e3-node one with 4e3: 45 steps switching 2-50 each). Then an interior-point method
(:mod:`resgraph.interior`) names the conducting set, a few dozen Newton steps however many diodes
switch, and the iteration starts again from it (1-9 steps on such circuits). It takes over once
the iteration has cost what the method would (:class:`_Handover`), or at once where the
iteration cycles (where its next set was seen before it first switches only the diode furthest
from its condition, and cycles only if that set was seen too). Where the restarted iteration
does not settle either, a primal active-set method can take over from the polish's feasible
start (:func:`_descend`): it keeps every diode satisfied, lowers the dissipation at every step
and so never revisits a working set, and ends at the optimum. It takes a solve per diode that
joins or leaves its working set, where the iteration from a better start often settles in a few:
``solve`` asks for it from its second polish on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .cholesky import NotPositiveDefinite
from .compiled import CompiledNetwork
from .clusters import Clusters
from .interior import NewtonSystem, interior_point, newton_system
from .kkt import ROUNDING_ALLOWANCE, KKTReport, constraint_slack, current_scale, diode_currents, kkt_report
from .linalg import SPDSolver

#: Relative accuracy of the linear solves while the active set is still changing, and at the end.
LOOSE_RTOL = 1e-6
#: Rougher still on meshes while many diodes switch, until a step changes no more than
#: ``ROUGH_UNTIL`` times as many as the first, or no fewer than the last.
ROUGH_RTOL = 1e-4
ROUGH_UNTIL = 0.02
TIGHT_RTOL = 1e-11
#: Tighter still, in turn, where a tight answer leaves a cluster's potential off by more than
#: ``tol`` of the potentials (see :func:`_held_in_volts`).
DRIFT_RTOLS = (1e-14, 1e-17)
#: A system is solved again where the currents in play at its answer are this many times below
#: those measured at its start (see :func:`_solve_with_active`).
RESCALE = 10.0
#: Below this many variables every solve is tight: a second, loose stage would cost more.
LOOSE_MIN_SIZE = 20_000
#: Loose steps that may pass without fewer diodes switching than ever before; then the solves
#: turn tight. Near the end, loose answers can flip diodes close to their threshold back and
#: forth for ever: a 5e4-node random circuit over 12 decades ran 50 loose steps switching 4-9
#: diodes each, then (after more sweeps) 41 more, where tight steps settle it.
LOOSE_PATIENCE = 3
#: Steps the primal active-set method (:func:`_descend`) may take per diode between free
#: variables or to a fixed potential, beyond a first ``DESCENT_STEPS``: each step adds the diodes
#: that block it or drops those carrying negative current.
DESCENT_STEPS_PER_DIODE = 4
DESCENT_STEPS = 50
#: Exact steps of the iteration before the interior-point method (:mod:`resgraph.interior`) may
#: take over to name the conducting set, from which the iteration starts again (see
#: :class:`_Handover`), and the Newton steps it is expected to take (14-40 measured).
INTERIOR_AFTER = 10
INTERIOR_STEPS = 30


@dataclass
class PolishResult:
    x: np.ndarray
    currents: np.ndarray      # per diode, amperes
    iterations: int
    converged: bool
    report: KKTReport | None = None    # the certificate of (x, currents), where already measured


def _solve_with_active(c: CompiledNetwork, x: np.ndarray, active: np.ndarray, prefer: np.ndarray,
                       solver: SPDSolver, rtol: float) -> tuple[np.ndarray | None, tuple | None]:
    """Minimise the dissipation with every ``active`` diode held at zero voltage. Returns the
    potentials and, where no active diode is ``prefer``-red, the forest of the active diodes
    (:func:`resgraph.forest.forest_of_touched`'s result, which their currents reuse); ``(None,
    None)`` where the system is numerically indefinite (conductances over more decades than
    float64 resolves: a node's total conductance rounds to its largest term), which has no exact
    answer to give.

    Each cluster of variables joined by active diodes is one unknown, every system of a polish the
    same size and layout (:class:`resgraph.clusters.Clusters`). Where active diodes close a loop
    whose offsets (voltage sources) do not sum to zero, not all of them can be at zero voltage:
    those of a spanning forest are, ``prefer``-red ones first.
    """
    idx = np.flatnonzero(active)
    clusters = Clusters(c.diode_anode_var[idx], c.diode_cathode_var[idx], c.num_free, prefer[idx])
    base = clusters.offsets(c.diode_offset[idx])
    q = c.q_matrix
    reduced = clusters.matrix(q)
    # x = y[root] + base on free clusters, base on fixed ones; the drive sums over each cluster.
    rhs = clusters.drive(q, c.sweep.source, base)
    guess = clusters.start(x, base)
    # The currents in play, measured only where CG needs them (a factorised system does not).
    # Measured at a start far from the answer (no sweeps before the polish, potentials far from
    # 0 V) they can be orders of magnitude too high, and CG's target with them: then the system
    # is solved again from the answer, where they are measured anew (a random 1e4-node circuit
    # floating at 1e5 V: 5e5 A at the start, 1 A at the answer, KKT 1.4e-8 after one solve).
    used = []

    def scale() -> float:
        used.append(current_scale(c, x))
        return used[-1]

    for _ in range(2):
        try:
            y = solver.solve(reduced, rhs, guess, rtol, scale)
        except NotPositiveDefinite:
            return None, None
        if not np.all(np.isfinite(y)):
            return None, None
        x = clusters.potentials(y, base)
        if not used or current_scale(c, x) * RESCALE >= used[-1]:
            break
        guess = y
    return x, None if np.any(prefer[idx]) else clusters.touched_forest


def polish(c: CompiledNetwork, x: np.ndarray, tol: float, active_tol: float,
           max_iterations: int = 200, on_step: Callable[[int, int, bool], None] | None = None,
           descend: bool = True, on_newton: Callable[[int, float], None] | None = None) -> PolishResult:
    """Run the active-set iteration from ``x``; diodes within ``active_tol`` volts of conducting
    start active. ``tol`` is the relative KKT tolerance deciding when the active set is right.
    ``on_step(iteration, switched, exact)`` is called after each step (diodes switched; whether
    its system was solved exactly); ``on_newton(step, gap)`` before each Newton step of the
    interior-point method. Where the iteration cycles, runs out of steps, or has cost what the
    interior-point method (:mod:`resgraph.interior`) would (:class:`_Handover`), that method's
    conducting set starts it again; where that does not settle either, ``descend`` hands over
    to the primal active-set method (:func:`_descend`); without, the result is unconverged
    (coordinate descent can then go on, and a later polish from its new point may settle in
    fewer steps)."""
    factor = c.cholesky      # (None on expanders, and on meshes that would fill too much)
    solver = SPDSolver(c.mesh_like, factor, factorise=factor is not None)
    active = c.diode_is_constraint & (constraint_slack(c, x) <= active_tol)
    handover = _Handover(c)
    result = _iterate(c, x, active, tol, solver, max_iterations, handover, 0, on_step)
    if result.converged:
        return result
    system = handover.system()
    # The method starts from the network's feasible start, not from ``x``: from coordinate
    # descent's point its first reverse voltages, a tenth of the potentials' scale, were far
    # from any diode's (3.3e3 V on a 1.6e3-node circuit), and it stalled 17 V from the optimum
    # naming 106 of 818 conducting diodes.
    interior = None if system is None else interior_point(c, c.feasible_start, system, on_newton)
    if interior is not None:
        result = _iterate(c, interior.x, interior.conducting, tol, solver, max_iterations, None,
                          result.iterations + interior.steps, on_step)
        if result.converged:
            return result
    if not descend:
        return result
    return _descend(c, x, tol, active_tol, solver, result.iterations, on_step)


class _Handover:
    """When the iteration hands over to the interior-point method: once it has taken
    ``INTERIOR_AFTER`` exact steps and as long as the method would take (its Newton step,
    measured, times ``INTERIOR_STEPS``), so that neither costs more than twice the better
    choice; at once where it cycles even switching one diode at a time."""

    def __init__(self, c: CompiledNetwork) -> None:
        self._c = c
        self._began = time.perf_counter()
        self._analysed = False
        self._system: NewtonSystem | None = None
        self._seconds: float | None = None       # the method's forecast time

    def system(self) -> NewtonSystem | None:
        """The analysed Newton system (:func:`resgraph.interior.newton_system`), made once."""
        if not self._analysed:
            self._system, self._analysed = newton_system(self._c), True
        return self._system

    def due(self, exact: int) -> bool:
        """Whether the iteration, after ``exact`` exact steps, should hand over now."""
        if exact < INTERIOR_AFTER:
            return False
        elapsed = time.perf_counter() - self._began
        if self._seconds is None:
            system = self.system()
            if system is None:
                self._seconds = np.inf
            elif elapsed < INTERIOR_STEPS * system.least_step_seconds():
                # Not due whatever the measurement would say, which costs two factorisations
                # (a 1e4-node circuit thick with diodes: 3 s, where its iteration takes 3.3 s).
                return False
            else:
                self._seconds = INTERIOR_STEPS * system.step_seconds()
        return elapsed >= self._seconds


def _iterate(c: CompiledNetwork, x: np.ndarray, active: np.ndarray, tol: float, solver: SPDSolver,
             max_iterations: int, handover: _Handover | None, iteration: int,
             on_step: Callable[[int, int, bool], None] | None) -> PolishResult:
    """The active-set iteration from ``x`` with the diodes ``active`` conducting, numbering its
    steps on from ``iteration``; unconverged where it cycles, runs ``max_iterations`` steps, or
    the ``handover`` says so after an exact step (the loose ones, on large networks, steer it
    first)."""
    con = c.diode_is_constraint
    total = np.append(c.sweep.total_conductance, 0.0)
    conductance = np.maximum(total[c.diode_anode_var], total[c.diode_cathode_var])
    seen: set[bytes] = set()
    lam = np.zeros(con.size)
    prefer = np.zeros(con.size, bool)
    loose = c.num_free >= LOOSE_MIN_SIZE
    # A first, rougher part of the loose stage on meshes, where every CG iteration is a multigrid
    # cycle; on expanders Jacobi-CG iterations are cheap, and rough steps there made the active
    # set wander (a 1.2e5-node random circuit with 1e4 diodes between free nodes: 7 -> 19 steps).
    rough = loose and c.mesh_like
    first_changes = previous_changes = fewest = None
    patience = LOOSE_PATIENCE
    exact = 0
    passed = None
    for iteration in range(iteration + 1, iteration + max_iterations + 1):
        if not loose:
            # (Only exactly solved states: an inexact one may lead elsewhere when solved exactly.)
            seen.add(_state(active, prefer))
        rtol = (ROUGH_RTOL if rough else LOOSE_RTOL) if loose else TIGHT_RTOL
        solved, touched_forest = _solve_with_active(c, x, active, prefer, solver, rtol)
        if solved is None:
            # Numerically indefinite: coordinate descent's answer stands, and the certificate
            # says how good it is.
            return PolishResult(x, lam, iteration, False)
        x = solved
        lam, rounding = diode_currents(c, x, active, touched_forest, rounding=True)
        slack = constraint_slack(c, x)
        vscale = max(1.0, float(np.max(np.abs(x), initial=0.0)))
        iscale = max(1.0, float(np.max(np.abs(lam), initial=0.0)))
        # Switch on reverse-violated diodes; keep conducting ones whose current is not negative
        # and that are at zero voltage (an active diode closing a loop of active diodes may not be).
        # An active diode left reverse-violated by such a loop is preferred in the next forest.
        # A diode joins when it is violated by more than the certificate allows in volts, or
        # would carry more than it allows in amperes (a small-conductance diode can do the first
        # without the second, and then no later state would pass the certificate).
        violated = slack < -tol * vscale
        # A current negative by no more than its rounding (see kkt.KKTReport) does not count.
        update = con & np.where(active, (lam >= -tol * iscale - rounding) & (slack <= tol * vscale),
                                violated | (-conductance * slack > tol * iscale))
        prefer |= active & violated
        changes = int(np.count_nonzero(update != active))
        if on_step is not None:
            on_step(iteration, changes, not loose)
        if loose:
            # Inexact steps steer the active set; once it stops changing, solve it exactly.
            if rough:
                # Rough solves until the changes are few or stop shrinking: near the end they
                # would flip diodes close to their threshold back and forth.
                first_changes = changes if first_changes is None else first_changes
                rough = changes > ROUGH_UNTIL * first_changes and (previous_changes is None or changes < previous_changes)
                previous_changes = changes
            patience = LOOSE_PATIENCE if fewest is None or changes < fewest else patience - 1
            fewest = changes if fewest is None else min(fewest, changes)
            loose = changes > 0 and patience > 0
            active = update
            continue
        if _passes(c, x, lam, rounding, active, tol):
            # Diodes carrying negative current beyond rounding, within tol of the largest
            # current, hold their ends at zero voltage where the optimum may not: where dropping
            # them also passes, that answer is the better one (again while some are left: the
            # active set shrinks each time).
            passed = (x, lam, active)
            negative = active & (lam < -rounding)
            if negative.any():
                active = active & ~negative
                continue
        if passed is not None:
            # This step's answer, or the one before a tidying step that did not pass.
            x, lam, active = passed
            x, lam, report = _held_in_volts(c, x, np.where(active, lam, 0.0), active, prefer, solver, tol)
            return PolishResult(x, lam, iteration, True, report)
        exact += 1
        if _state(update, prefer) in seen:
            # A state seen before: the iteration would cycle. Switch only the diode furthest
            # from its condition instead (amperes: a negative current, or the current its
            # reverse voltage would drive through its variables), unless that was seen too.
            changed = np.flatnonzero(update != active)
            if changed.size == 0:
                break
            amperes = np.where(active, -lam, -conductance * slack)[changed]
            update = active.copy()
            update[changed[np.argmax(amperes)]] ^= True
            if _state(update, prefer) in seen:
                break
        active = update
        if handover is not None and handover.due(exact):
            break
    return PolishResult(x, lam, iteration, False)


def _state(active: np.ndarray, prefer: np.ndarray) -> bytes:
    """The iteration's state (its active set, and the diodes preferred in its forests) as a key."""
    return np.packbits(np.r_[active, prefer]).tobytes()


def _passes(c: CompiledNetwork, x: np.ndarray, currents: np.ndarray, rounding: np.ndarray, active: np.ndarray,
            tol: float) -> bool:
    """Whether the diodes meet the KKT conditions at ``x`` to ``tol``: none reverse-violated by
    more than ``tol`` of the largest potential, the ``active`` ones at zero voltage to that and
    carrying no current more negative than ``tol`` of the largest beyond its ``rounding``."""
    slack = constraint_slack(c, x)
    vscale = max(1.0, float(np.max(np.abs(x), initial=0.0)))
    iscale = max(1.0, float(np.max(np.abs(currents), initial=0.0)))
    return bool(not np.any(c.diode_is_constraint & (slack < -tol * vscale))
                and np.all(currents[active] >= -tol * iscale - rounding[active])
                and np.all(slack[active] <= tol * vscale))


def _held_in_volts(c: CompiledNetwork, x: np.ndarray, lam: np.ndarray, active: np.ndarray, prefer: np.ndarray,
                   solver: SPDSolver, tol: float) -> tuple[np.ndarray, np.ndarray, KKTReport]:
    """The answer for the right active set, solved again more tightly (``DRIFT_RTOLS``) while a
    cluster's potential is further than ``tol`` of the potentials from where its KCL would put it
    (:attr:`resgraph.kkt.KKTReport.drift`): a solve's target is set by the currents in play, and a
    weakly tied node can be off by much more than that in volts (a 5e3-node random circuit over
    16 decades: 7.3e-9 of the potentials at 1e-11 of its currents). Kept only while the diodes'
    currents and voltages still pass as they did. Returns the potentials, currents and their
    certificate (which ``solve`` then need not measure again)."""
    report = kkt_report(c, x, lam)
    for rtol in DRIFT_RTOLS:
        if report.drift <= tol * report.voltage_scale:
            break
        solved, touched_forest = _solve_with_active(c, x, active, prefer, solver, rtol)
        if solved is None:
            break
        currents, rounding = diode_currents(c, solved, active, touched_forest, rounding=True)
        if not _passes(c, solved, currents, rounding, active, tol):
            break
        x, lam = solved, np.where(active, currents, 0.0)
        report = kkt_report(c, x, lam)
    return x, lam, report


def _dissipation(c: CompiledNetwork, x: np.ndarray) -> tuple[float, float]:
    """``E(x) = 1/2 x' Q x - source' x`` (watts, up to a constant), what the polish minimises,
    and how far rounding reaches into it (``ROUNDING_ALLOWANCE`` times its terms' magnitudes)."""
    q = c.q_matrix
    magnitude = 0.5 * np.abs(x) @ (abs(q) @ np.abs(x)) + np.abs(c.sweep.source) @ np.abs(x)
    return float(0.5 * x @ (q @ x) - c.sweep.source @ x), float(ROUNDING_ALLOWANCE * magnitude)


def _descend(c: CompiledNetwork, x: np.ndarray, tol: float, active_tol: float, solver: SPDSolver,
             iterations: int, on_step: Callable[[int, int, bool], None] | None) -> PolishResult:
    """A primal active-set method from the feasible point ``x`` (potentials that satisfy every
    diode to within ``active_tol`` volts: coordinate descent's, or the compiled feasible start).

    The working set starts as the diodes at their limit. Each step solves for the optimum with
    the working set at zero voltage and moves towards it as far as every other diode allows:
    when one blocks, it joins the working set; when the optimum is reached, the diodes of the
    working set carrying negative current leave it (where none does, the KKT conditions hold).
    Every step keeps every diode satisfied and lowers the dissipation (the optimum of a relaxed
    working set is no worse than the point itself, which satisfies it), so no working set comes
    back with the point at its optimum: the method ends (here after at most ``DESCENT_STEPS``
    steps and ``DESCENT_STEPS_PER_DIODE`` per diode)."""
    con = c.diode_is_constraint
    slack = constraint_slack(c, x)
    if np.any(con & (slack < -active_tol)):
        return PolishResult(x, np.zeros(slack.size), iterations, False)
    working = con & (slack <= active_tol)
    keep = np.zeros(slack.size, bool)
    lam = np.zeros(slack.size)
    lowest, seen = np.inf, set()
    for _ in range(DESCENT_STEPS + DESCENT_STEPS_PER_DIODE * int(np.count_nonzero(con))):
        iterations += 1
        target, touched_forest = _solve_with_active(c, x, working, keep, solver, TIGHT_RTOL)
        if target is None:
            break
        # Along x + step (target - x) a diode off the working set nears its limit at ``rate``
        # volts per unit step.
        direction = np.append(target - x, 0.0)
        rate = direction[c.diode_anode_var] - direction[c.diode_cathode_var]
        blocking = con & ~working & (rate > 0)
        room = np.full(slack.size, np.inf)
        room[blocking] = np.maximum(constraint_slack(c, x)[blocking], 0.0) / rate[blocking]
        step = min(1.0, float(room.min(initial=np.inf)))
        if step < 1.0:
            x = x + step * (target - x)
            joined = blocking & (room <= step)
            working |= joined
            if on_step is not None:
                on_step(iterations, int(np.count_nonzero(joined)), True)
            continue
        x = target
        # At its optimum for a working set the dissipation is no higher than at the last (equal
        # after steps of zero length): where it rises beyond rounding (conductances over more
        # decades than float64 resolves), or a working set comes back, the method is not getting
        # anywhere.
        dissipation, rounding_reach = _dissipation(c, x)
        key = np.packbits(working).tobytes()
        if dissipation > lowest + rounding_reach or key in seen:
            break
        lowest = min(lowest, dissipation)
        seen.add(key)
        lam, rounding = diode_currents(c, x, working, touched_forest, rounding=True)
        iscale = max(1.0, float(np.max(np.abs(lam), initial=0.0)))
        leaving = working & (lam < -tol * iscale - rounding)
        if on_step is not None:
            on_step(iterations, int(np.count_nonzero(leaving)), True)
        if not leaving.any():
            lam = np.where(working, lam, 0.0)
            if not _passes(c, x, lam, rounding, working, tol):
                return PolishResult(x, lam, iterations, False)
            x, lam, report = _held_in_volts(c, x, lam, working, keep, solver, tol)
            return PolishResult(x, lam, iterations, True, report)
        working &= ~leaving
    return PolishResult(x, lam, iterations, False)
