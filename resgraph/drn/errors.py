"""Exceptions specific to deep resistive networks (all derive from :class:`resgraph.ResgraphError`)."""
from __future__ import annotations

from ..errors import ResgraphError


class DRNError(ResgraphError, ValueError):
    """A bad argument to the DRN API: wrong shape, dtype, size, preset name or hyperparameter."""


class NudgingError(DRNError):
    """A unit's total conductance is not positive, so its phase has no steady state.

    This happens in the ``-beta`` phase of centred equilibrium propagation when an output unit's
    input conductances sum to ``beta`` or less (the nudging resistor then has negative conductance
    ``-beta``), or when every conductance touching a unit has been clipped to zero.
    """


class ConvergenceError(DRNError):
    """Relaxation did not reach the requested KKT residual within the allowed iterations."""
