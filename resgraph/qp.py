"""The steady state as an explicit convex QP, for any QP solver.

Over the free variables ``x`` (see :mod:`resgraph.compiled`)::

    minimise 1/2 x' P x + q' x   subject to   l <= A x <= u

with ``P = Q`` (upper triangle, CSC, as OSQP takes it), ``q = -source`` and one row of ``A`` per
diode constraint: ``x[anode] - x[cathode] <= w``. The dual value of row ``i`` is the current
through diode ``qp.diode_index[i]`` (amperes, anode -> cathode).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .compiled import CompiledNetwork


@dataclass(frozen=True)
class QP:
    P: sp.csc_matrix
    q: np.ndarray
    A: sp.csc_matrix
    l: np.ndarray
    u: np.ndarray
    diode_index: np.ndarray   # diode of each constraint row
    compiled: CompiledNetwork

    def potentials(self, x: np.ndarray) -> np.ndarray:
        """Node potentials (volts) from a solution ``x`` of the QP."""
        return self.compiled.potentials(x)


def network_qp(c: CompiledNetwork) -> QP:
    n = c.num_free
    rows = np.flatnonzero(c.diode_is_constraint)
    a, k = c.diode_anode_var[rows], c.diode_cathode_var[rows]
    r = np.arange(rows.size)
    entries = [(r[a < n], a[a < n], 1.0), (r[k < n], k[k < n], -1.0)]
    A = sp.csc_matrix((np.concatenate([np.full(e[0].size, e[2]) for e in entries]),
                       (np.concatenate([e[0] for e in entries]), np.concatenate([e[1] for e in entries]))),
                      shape=(rows.size, n))
    P = sp.triu(c.q_matrix, format="csc")
    return QP(P=P, q=-c.sweep.source.copy(), A=A, l=np.full(rows.size, -np.inf),
              u=c.diode_offset[rows].copy(), diode_index=rows, compiled=c)
