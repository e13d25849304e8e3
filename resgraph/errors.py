"""Exceptions raised by resgraph.

Every error derives from :class:`ResgraphError`. Errors caused by an invalid circuit derive from
:class:`NetworkError` and name the offending element (kind and insertion index, and its nodes).
"""
from __future__ import annotations


class ResgraphError(Exception):
    """Base class of every exception raised by resgraph."""


class NetworkError(ResgraphError, ValueError):
    """The circuit is invalid: it has no (unique) steady state, or an element is malformed."""


class InvalidElementError(NetworkError):
    """An element has a bad value: a non-positive, NaN or infinite conductance, a NaN voltage..."""


class NodeIndexError(NetworkError, IndexError):
    """An element refers to a node outside ``0 .. num_nodes - 1``."""


class KirchhoffVoltageError(NetworkError):
    """A loop of voltage sources whose voltages do not sum to zero (Kirchhoff's voltage law)."""


class InfeasibleDiodeError(NetworkError):
    """Diodes contradict the voltage sources (or each other): no potentials satisfy them all."""


class FloatingNodeError(NetworkError):
    """A part of the circuit has no resistive path to a fixed potential, so no unique steady state."""


class ColouringError(NetworkError):
    """A user-supplied colouring gives two coupled variables the same colour."""


class BackendError(ResgraphError):
    """Unknown backend, or a backend whose requirements (library, device) are missing."""


class DataError(ResgraphError):
    """A data set is missing, corrupt, or could not be downloaded."""
