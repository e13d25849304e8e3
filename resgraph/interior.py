"""An interior-point method for the QP, to find the conducting set where active-set steps cannot.

Where many diodes join free variables, the polish's active-set iteration can cycle, and the
primal active-set method that cannot (:func:`resgraph.polish._descend`) moves one diode at a
time: hundreds of solves (a 1.6e3-node circuit with 1e3 such diodes: 283 solves, 5.3 s). A
primal-dual interior-point method (Mehrotra's predictor-corrector) needs a few dozen, however
many diodes switch, and its systems are conductance matrices again: each Newton step solves

    (Q + G' D G) dx = rhs,     D = lam / t   (siemens),

the network with every diode replaced by a resistor of conductance ``D`` (its current over its
reverse voltage, ``lam`` amperes, ``t`` volts). Their sparsity pattern is fixed, so one analysis
of a sparse Cholesky factorisation (:mod:`resgraph.schur`) serves every step. Where that factor
would fill in too much (random circuits thick with diodes, from a few 1e4 nodes on), CG with the
polish's preconditioners solves them instead (:class:`resgraph.linalg.SPDSolver`): a 3e4-node
circuit with 3.3e4 diodes had no other way than the primal active-set method, 12066 solves in
276 s. As the method converges, the conducting diodes' ``D`` grows without bound, beyond what
CG can resolve against the resistors; those beyond ``CG_TIE_RANGE`` times their variables'
conductance are therefore held at their voltage change instead (tied, contracted as the polish
contracts its conducting diodes, :mod:`resgraph.clusters`), their change of current following
from KCL. Solves of benchmark circuits of that kind (``benchmarks/networks.py``, ``diodes``,
``on``), measured end to end: 3e4 nodes 14 s, 7e4 38 s, 1e5 58 s (with ``D`` capped at 1e8
times instead of tied: 11 s, and no answer at 7e4 and 1e5 after minutes).
Its answer is not exact: it only names the conducting set (diodes whose current, relative to
the currents in play, exceeds their voltage, relative to the potentials), from which the
polish's iteration then finishes exactly and certifies.

Sign conventions as in :mod:`resgraph.kkt`: ``G x <= w`` row by row (``x[anode] - x[cathode]``,
volts), ``t = w - G x >= 0`` each diode's reverse voltage, ``lam >= 0`` its current, anode to
cathode.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from .cholesky import DenseFill, NotPositiveDefinite
from .clusters import Clusters
from .compiled import CompiledNetwork
from .kkt import current_scale
from .linalg import SPDSolver, rescue_bytes
from .schur import SchurCholesky

#: Newton steps at most.
MAX_STEPS = 80
#: Fraction of the way to the boundary (``t`` or ``lam`` reaching zero) a step may go.
STEP_TO_BOUNDARY = 0.99
#: The method stops once the duality gap per diode (watts), the KCL residual (amperes) and the
#: reverse-bias violation (volts) are this far below the currents and potentials in play.
GAP_RTOL = 1e-15
#: The factor of the Newton systems may hold this many entries per variable at most (the
#: diodes' edges fill it beyond the polish's systems: 85-430 a row on 1e3-2.3e3-node random
#: circuits with one to two diodes per node, 3-20 ms a factorisation), and its factorisation
#: no more memory than a rescue of the polish's (:func:`resgraph.linalg.rescue_bytes`); beyond,
#: the systems are solved by CG (:class:`resgraph.linalg.SPDSolver`) to ``CG_RTOL``.
MAX_FILL = 2_000
#: Those CG solves' residual relative to the currents at a typical variable (root mean square).
CG_RTOL = 1e-10
#: With CG, diodes whose ``D`` exceeds this many times their variables' total conductance are
#: held at a fixed voltage in the Newton systems instead (``D`` taken as unbounded), so CG meets
#: no wider contrast. Capped at 1e8 times, the conducting diodes' ``D`` (which grows without
#: bound) left CG's residuals above target from rounding, and the method stalled on a 7e4-node
#: circuit thick with diodes from its 13th step. Tied beyond 1e4, a 1e5-node one stalled on the
#: tie's own error (a tied diode's voltage misses its change of current over ``D``); beyond 1e5
#: and 1e6 it names the conducting set in 41 and 33 steps (the latter: 42 s in all).
CG_TIE_RANGE = 1e6
#: The method also stops where neither the gap nor the residuals (the largest of them, relative)
#: has fallen below ``STALL_FALL`` times its least for ``STALL_STEPS`` steps: inexact directions
#: (CG, or rounding) have taken it as far as they can.
STALL_FALL = 0.5
STALL_STEPS = 10
#: Floating-point operations a second that no factorisation reaches (this 2-core machine:
#: 0.4-33e9 measured, 20e9 on a 1e4-node circuit thick with diodes), for a lower bound of a
#: Newton step's time known from the analysis alone.
PEAK_FLOPS = 1e11


@dataclass
class InteriorResult:
    x: np.ndarray            # free variables' potentials, volts (feasible only to the method's accuracy)
    conducting: np.ndarray   # bool per diode: the conducting set it names
    steps: int


class NewtonSystem:
    """``Q + G' D G`` for any diode conductances ``D`` (siemens), on one sparsity pattern
    analysed once (see :func:`newton_system`)."""

    def __init__(self, c: CompiledNetwork) -> None:
        n = c.num_free
        self.diodes = np.flatnonzero(c.diode_is_constraint)
        anode, cathode = self._anode, self._cathode = c.diode_anode_var[self.diodes], c.diode_cathode_var[self.diodes]
        q = c.q_matrix.tocoo()
        inner = (anode < n) & (cathode < n)
        # A diode to a fixed potential adds to one diagonal entry, one between variables to four.
        own = np.where(anode < n, anode, cathode)
        rows = np.r_[q.row, own, cathode[inner], anode[inner], cathode[inner]]
        cols = np.r_[q.col, own, cathode[inner], cathode[inner], anode[inner]]
        keys, self._position = np.unique(rows.astype(np.int64) * n + cols, return_inverse=True)
        self._q_data = q.data
        self._inner = inner
        indptr = np.r_[0, np.cumsum(np.bincount(keys // n, minlength=n))]
        self.matrix = sp.csr_matrix((np.zeros(keys.size), keys % n, indptr), shape=(n, n))
        #: The factorisation, or None where CG (``_cg``) solves the systems.
        self.factor: SchurCholesky | None = None
        self._cg: SPDSolver | None = None
        try:
            self.factor = SchurCholesky(self.matrix, min(MAX_FILL, rescue_bytes() / 8 / max(n, 1)))
            if self.factor.footprint > rescue_bytes():
                raise DenseFill(f"a factorisation would take {self.factor.footprint} bytes")
        except DenseFill:
            self.factor, self._cg = None, SPDSolver(False, factorise=False)
        self._tie(np.zeros(self.diodes.size, bool))
        total = np.append(c.sweep.total_conductance, 0.0)
        #: Per diode, the larger total conductance of its two variables (siemens).
        self.strength = np.maximum(total[anode], total[cathode])

    def factorise(self, conductance: np.ndarray) -> None:
        """Factorise with ``conductance`` (siemens) per diode; raises
        :class:`~resgraph.cholesky.NotPositiveDefinite`. Where CG solves the systems, the diodes
        whose conductance exceeds ``CG_TIE_RANGE`` times their variables' total become ``tied``
        (see :meth:`solve`) and theirs is not used."""
        if self.factor is None:
            self._tie(conductance > CG_TIE_RANGE * self.strength)
        d, inner = np.where(self.tied, 0.0, conductance), self._inner
        values = np.r_[self._q_data, d, d[inner], -d[inner], -d[inner]]
        self.matrix.data = np.bincount(self._position, values, self.matrix.nnz)
        if self.factor is not None:
            self.factor.factorise(self.matrix)
        else:
            self._reduced = self._clusters.matrix(self.matrix)

    def solve(self, rhs: np.ndarray, drop: np.ndarray, guess: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """``(dx, flow)``: the solution of the last factorised system for ``rhs`` (amperes; the
        ``tied`` diodes' terms left out), with every ``tied`` diode of a spanning forest of them
        holding ``dx[anode] - dx[cathode] = drop`` (volts); and the changes of current (anode to
        cathode, amperes) that KCL then leaves to the ``tied`` diodes, along the forest. Those
        closing loops keep theirs: around a loop of conducting diodes the optimum's currents are
        free (any circulation; where such a diode was instead a resistor as stiff as the tie, the
        forest's changes reached 2400 times the diodes' currents and blocked the steps). CG
        starts from ``guess`` (volts; default zero)."""
        if self.factor is not None:
            return self.factor.solve(rhs), np.zeros(drop.size)
        clusters, tied = self._clusters, self._tied_index
        base = clusters.offsets(drop[tied])
        start = clusters.start(np.zeros_like(rhs) if guess is None else guess, base)
        y = self._cg.solve(self._reduced, clusters.drive(self.matrix, rhs, base), start, CG_RTOL, np.inf)
        dx = clusters.potentials(y, base)
        flow = np.zeros(drop.size)
        flow[tied] = clusters.flows(self.matrix, rhs, dx, tied.size)
        return dx, flow

    def _tie(self, tied: np.ndarray) -> None:
        """Hold the diodes ``tied`` (bool per diode; :attr:`tied`) at fixed voltages in the
        systems (see :meth:`solve`)."""
        self.tied = tied
        self._tied_index = np.flatnonzero(tied)
        self._clusters = Clusters(self._anode[self._tied_index], self._cathode[self._tied_index], self.matrix.shape[0])

    def least_step_seconds(self) -> float:
        """Seconds a Newton step takes at least: its factorisation's flops at ``PEAK_FLOPS``
        (none known for CG)."""
        return 0.0 if self.factor is None else self.factor.flops / PEAK_FLOPS

    def step_seconds(self) -> float:
        """Seconds a Newton step takes, measured: a factorisation (with CG: the matrix alone) and
        two solves, after a first factorisation (which also allocates the factor's memory: up to 3x slower)."""
        self.factorise(self.strength)
        began = time.perf_counter()
        self.factorise(2.0 * self.strength)
        rhs, drop = np.ones(self.matrix.shape[0]), np.zeros(self.diodes.size)
        self.solve(rhs, drop)
        self.solve(rhs, drop)
        return time.perf_counter() - began


def newton_system(c: CompiledNetwork) -> NewtonSystem | None:
    """The analysed Newton system of ``c``; None where there is no diode to decide."""
    if not np.any(c.diode_is_constraint):
        return None
    return NewtonSystem(c)


def interior_point(c: CompiledNetwork, x: np.ndarray, system: NewtonSystem,
                   on_step: Callable[[int, float], None] | None = None) -> InteriorResult | None:
    """Run the interior-point method from potentials ``x`` (free variables, volts) on ``c``'s
    :func:`newton_system`; None where the first system is numerically not positive definite. It
    stops where the gap and residuals meet ``GAP_RTOL``, after ``MAX_STEPS``, or where a system
    is numerically not positive definite (conductances ``D`` of conducting diodes beyond what
    float64 resolves against the others). ``on_step(step, gap)`` is called before each Newton
    step (the gap per diode relative to the currents and potentials in play)."""
    n = c.num_free
    idx = system.diodes
    anode, cathode, w = c.diode_anode_var[idx], c.diode_cathode_var[idx], c.diode_offset[idx]
    q, source = c.q_matrix, c.sweep.source

    def g(v):                                      # G v, volts per diode
        vf = np.append(v, 0.0)
        return vf[anode] - vf[cathode]

    def g_transpose(u):                            # G' u, amperes per variable
        return (np.bincount(anode, u, n + 1) - np.bincount(cathode, u, n + 1))[:n]

    def direction(d, dual, primal, target, guess=None):
        """Newton step towards KCL, ``G x + t = w`` and ``lam t = target`` (watts per diode)."""
        r = lam * t - target
        # A tied diode holds G dx + primal = r / lam, the others' relation in the limit of D
        # without bound, and carries what KCL leaves to it.
        tied = system.tied
        dx, flow = system.solve(-dual - g_transpose(np.where(tied, 0.0, d * primal - r / t)), r / lam - primal, guess)
        dlam = np.where(tied, flow, d * (g(dx) + primal) - r / t)
        return dx, dlam, -(r + t * dlam) / lam

    def longest(dlam, dt):
        """The longest step keeping ``lam`` and ``t`` non-negative, at most 1."""
        worst = float(np.min(np.r_[dlam / lam, dt / t]))
        return 1.0 if worst >= -1.0 else -1.0 / worst

    x = np.array(x, np.float64)
    vscale = max(1.0, float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(w))))
    # Each diode starts as a resistor as strong as its variables (D = lam / t), a tenth of the
    # potentials' scale from conducting.
    t = np.maximum(w - g(x), 0.1 * vscale)
    lam = system.strength * t
    least, stalled = np.inf, 0
    for step in range(1, MAX_STEPS + 1):
        dual = q @ x - source + g_transpose(lam)            # KCL residual, amperes
        primal = g(x) + t - w                               # volts
        mu = float(lam @ t) / idx.size
        iscale = max(current_scale(c, x), float(np.max(lam)))
        vscale = max(1.0, float(np.max(np.abs(x), initial=0.0)))
        gap = mu / (iscale * vscale)
        # Progress: the gap and the residuals together (from an infeasible start the gap can
        # rise while the residuals fall).
        error = max(gap, float(np.max(np.abs(dual), initial=0.0)) / iscale, float(np.max(np.abs(primal))) / vscale)
        if error <= GAP_RTOL:
            break
        stalled = 0 if error < STALL_FALL * least else stalled + 1
        least = min(least, error)
        if stalled >= STALL_STEPS:
            break
        if on_step is not None:
            on_step(step, gap)
        d = lam / t
        try:
            system.factorise(d)
            # Mehrotra: the affine step (target 0) forecasts how far the gap can fall; the
            # corrector aims at a share of it, with the affine step's second-order term.
            dx, dlam, dt = direction(d, dual, primal, np.zeros(idx.size))
            alpha = longest(dlam, dt)
            sigma = (float((lam + alpha * dlam) @ (t + alpha * dt)) / idx.size / mu) ** 3 if mu > 0 else 0.0
            dx, dlam, dt = direction(d, dual, primal, sigma * mu - dlam * dt, dx)
        except NotPositiveDefinite:
            # (A factorisation's pivot, or a multigrid's coarse diagonal, not positive.)
            if step == 1:
                return None
            break
        alpha = min(1.0, STEP_TO_BOUNDARY * longest(dlam, dt))
        x += alpha * dx
        lam += alpha * dlam
        t += alpha * dt
    conducting = np.zeros(c.diode_offset.size, bool)
    # Conducting: a current larger, relative to the currents in play, than its voltage, relative
    # to the potentials. (The branches' currents: around directed loops of conducting diodes the
    # method's currents grow without bound, the optimal currents being unbounded there; relative
    # to them, a 1e4-node circuit's 5073 conducting diodes were named 609.)
    conducting[idx] = lam / current_scale(c, x) > t / vscale
    return InteriorResult(x, conducting, step)
