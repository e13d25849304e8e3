"""Building a circuit: :class:`Network`.

Conventions (SI units throughout):

* nodes are ``0 .. num_nodes - 1``; node 0 is ground, held at 0 V;
* a resistor ``(a, b, conductance)`` in siemens carries ``conductance * (v[a] - v[b])`` amperes
  from ``a`` to ``b``;
* an ideal diode ``(anode, cathode)`` enforces ``v[anode] <= v[cathode]`` and conducts a
  non-negative current from anode to cathode (it is *on* when that current is positive);
* a voltage source ``(plus, minus, voltage)`` holds ``v[plus] - v[minus] = voltage`` volts;
* a current source ``(a, b, current)`` drives ``current`` amperes through itself from ``a`` to
  ``b``: drawn out of node ``a`` and injected into node ``b``.

Elements keep their insertion order; solutions report per-element quantities in that order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from .errors import InvalidElementError, NetworkError, NodeIndexError

if TYPE_CHECKING:
    import networkx as nx

    from .compiled import CompiledNetwork
    from .qp import QP

#: Element kinds, their two terminals and the name of their value.
KINDS = {
    "resistor": ("a", "b", "conductance"),
    "diode": ("anode", "cathode", None),
    "voltage_source": ("plus", "minus", "voltage"),
    "current_source": ("a", "b", "current"),
}


class _Elements:
    """Append-friendly storage of one element kind: two node arrays and a value array."""

    def __init__(self) -> None:
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending: list[tuple[int, int, float]] = []
        self.count = 0

    def append(self, a: int, b: int, value: float) -> int:
        self._pending.append((a, b, value))
        self.count += 1
        return self.count - 1

    def extend(self, a: np.ndarray, b: np.ndarray, value: np.ndarray) -> None:
        self._flush()
        self._chunks.append((a, b, value))
        self.count += a.size

    def _flush(self) -> None:
        if self._pending:
            a, b, v = zip(*self._pending)
            self._chunks.append((np.array(a, np.int64), np.array(b, np.int64), np.array(v, np.float64)))
            self._pending = []

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._flush()
        if len(self._chunks) != 1:
            parts = self._chunks or [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))]
            self._chunks = [tuple(np.concatenate(p) for p in zip(*parts))]
        return self._chunks[0]


def _check_nodes(kind: str, first: int, num_nodes: int, **terminals: np.ndarray) -> None:
    for terminal, nodes in terminals.items():
        bad = np.flatnonzero((nodes < 0) | (nodes >= num_nodes))
        if bad.size:
            i = int(bad[0])
            raise NodeIndexError(
                f"{kind} #{first + i}: {terminal} node {int(nodes[i])} is out of range "
                f"0..{num_nodes - 1}" + (f" ({bad.size} {kind}s are out of range)" if bad.size > 1 else ""))


def _as_index_array(kind: str, terminal: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidElementError(f"{kind}s: {terminal} must be a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise InvalidElementError(f"{kind}s: {terminal} node indices must be integers, got {arr.dtype}")
    return arr.astype(np.int64)


def _as_value_array(kind: str, name: str, values: Any, size: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(size, float(arr))
    if arr.shape != (size,):
        raise InvalidElementError(f"{kind}s: {name} has shape {arr.shape}, expected ({size},)")
    return arr


class Network:
    """An ideal nonlinear resistive network, built incrementally or from arrays.

    Node 0 is ground (0 V). See the module docstring for sign conventions. A network compiles
    (:meth:`compile`) to an immutable :class:`~resgraph.compiled.CompiledNetwork`, cached until
    the next change.
    """

    def __init__(self, num_nodes: int) -> None:
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)) or num_nodes < 1:
            raise InvalidElementError(f"num_nodes must be a positive integer (node 0 is ground), got {num_nodes!r}")
        self.num_nodes = int(num_nodes)
        self._elements = {kind: _Elements() for kind in KINDS}
        self._compiled: CompiledNetwork | None = None

    # ------------------------------------------------------------------ incremental building
    def _add(self, kind: str, a: int, b: int, value: float) -> int:
        first, second, value_name = KINDS[kind]
        index = self._elements[kind].count
        for terminal, node in ((first, a), (second, b)):
            if isinstance(node, bool) or not isinstance(node, (int, np.integer)):
                raise InvalidElementError(f"{kind} #{index}: {terminal} node must be an integer, got {node!r}")
            if not 0 <= node < self.num_nodes:
                raise NodeIndexError(f"{kind} #{index}: {terminal} node {node} is out of range 0..{self.num_nodes - 1}")
        if value_name is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InvalidElementError(f"{kind} #{index} ({a} -> {b}): {value_name} must be a number, got {value!r}") from None
        _check_values(kind, index, np.array([a]), np.array([b]), np.array([value]))
        self._compiled = None
        return self._elements[kind].append(int(a), int(b), value)

    def add_resistor(self, a: int, b: int, conductance: float) -> int:
        """Add a resistor of ``conductance`` siemens (> 0, finite) between ``a`` and ``b``; returns its index."""
        return self._add("resistor", a, b, conductance)

    def add_diode(self, anode: int, cathode: int) -> int:
        """Add an ideal diode enforcing ``v[anode] <= v[cathode]``; returns its index."""
        return self._add("diode", anode, cathode, 0.0)

    def add_voltage_source(self, plus: int, minus: int, voltage: float) -> int:
        """Add an ideal voltage source holding ``v[plus] - v[minus] = voltage`` volts; returns its index."""
        return self._add("voltage_source", plus, minus, voltage)

    def add_current_source(self, a: int, b: int, current: float) -> int:
        """Add a current source driving ``current`` amperes from node ``a`` through itself into ``b``."""
        return self._add("current_source", a, b, current)

    # ------------------------------------------------------------------ vectorised building
    @classmethod
    def from_arrays(cls, num_nodes: int, resistors=None, diodes=None, voltage_sources=None,
                    current_sources=None) -> "Network":
        """Build a network from element arrays, for millions of elements.

        ``resistors=(a, b, conductance)``, ``diodes=(anode, cathode)``,
        ``voltage_sources=(plus, minus, voltage)``, ``current_sources=(a, b, current)``; each
        entry is a 1-D array (a value may be a scalar shared by all elements of its kind).
        """
        net = cls(num_nodes)
        net.add_arrays(resistors=resistors, diodes=diodes, voltage_sources=voltage_sources,
                       current_sources=current_sources)
        return net

    def add_arrays(self, resistors=None, diodes=None, voltage_sources=None, current_sources=None) -> None:
        """Append elements given as arrays (see :meth:`from_arrays`)."""
        given = {"resistor": resistors, "diode": diodes, "voltage_source": voltage_sources,
                 "current_source": current_sources}
        staged = []
        for kind, spec in given.items():
            if spec is None:
                continue
            first, second, value_name = KINDS[kind]
            expected = 2 if value_name is None else 3
            if len(spec) != expected:
                raise InvalidElementError(
                    f"{kind}s must be given as ({first}, {second}{', ' + value_name if value_name else ''}),"
                    f" got a sequence of {len(spec)}")
            a = _as_index_array(kind, first, spec[0])
            b = _as_index_array(kind, second, spec[1])
            if a.size != b.size:
                raise InvalidElementError(f"{kind}s: {first} has {a.size} entries but {second} has {b.size}")
            value = np.zeros(a.size) if value_name is None else _as_value_array(kind, value_name, spec[2], a.size)
            start = self._elements[kind].count
            _check_nodes(kind, start, self.num_nodes, **{first: a, second: b})
            _check_values(kind, start, a, b, value)
            staged.append((kind, a, b, value))
        for kind, a, b, value in staged:   # all validated: nothing is half-added on error
            self._elements[kind].extend(a, b, value)
        self._compiled = None

    # ------------------------------------------------------------------ access
    def arrays(self, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(first_nodes, second_nodes, values)`` of one element kind, in insertion order."""
        if kind not in KINDS:
            raise NetworkError(f"unknown element kind {kind!r}; one of {', '.join(KINDS)}")
        return self._elements[kind].arrays()

    @property
    def num_resistors(self) -> int:
        return self._elements["resistor"].count

    @property
    def num_diodes(self) -> int:
        return self._elements["diode"].count

    @property
    def num_voltage_sources(self) -> int:
        return self._elements["voltage_source"].count

    @property
    def num_current_sources(self) -> int:
        return self._elements["current_source"].count

    def __repr__(self) -> str:
        return (f"Network(num_nodes={self.num_nodes}, resistors={self.num_resistors}, "
                f"diodes={self.num_diodes}, voltage_sources={self.num_voltage_sources}, "
                f"current_sources={self.num_current_sources})")

    # ------------------------------------------------------------------ derived forms
    def compile(self, colouring: np.ndarray | None = None) -> "CompiledNetwork":
        """Compile to the immutable solver form (cached when ``colouring`` is None).

        ``colouring`` optionally assigns a colour (non-negative int) to every node; nodes of the
        same colour are updated together, so no resistor or diode may join two free nodes of one
        colour (:class:`~resgraph.ColouringError` otherwise). Nodes tied together by voltage
        sources move as one variable, which takes the colour of its lowest-numbered node.
        """
        from .compiled import compile_network

        if colouring is not None:
            return compile_network(self, colouring)
        if self._compiled is None:
            self._compiled = compile_network(self, None)
        return self._compiled

    def to_qp(self) -> "QP":
        """The steady state as a convex QP over the free variables, in OSQP's form.

        See :class:`resgraph.qp.QP`: minimise ``1/2 x'Px + q'x`` subject to ``l <= A x <= u``;
        ``qp.potentials(x)`` maps a solution back to node potentials.
        """
        from .qp import network_qp

        return network_qp(self.compile())

    def to_networkx(self) -> "nx.MultiDiGraph":
        """The circuit as a ``networkx.MultiDiGraph``: one edge per element, first -> second
        terminal, with attributes ``kind``, ``index`` and ``conductance``/``voltage``/``current``."""
        import networkx as nx

        graph = nx.MultiDiGraph(ground=0)
        graph.add_nodes_from(range(self.num_nodes))
        for kind, (_, _, value_name) in KINDS.items():
            a, b, value = self.arrays(kind)
            for i in range(a.size):
                attrs = {"kind": kind, "index": i}
                if value_name is not None:
                    attrs[value_name] = float(value[i])
                graph.add_edge(int(a[i]), int(b[i]), **attrs)
        return graph

    @classmethod
    def from_networkx(cls, graph: "nx.Graph", ground: Any = 0, nodes: Iterable | None = None) -> "Network":
        """Build a network from a networkx graph.

        Every edge is an element: attribute ``kind`` (default ``"resistor"``) and its value
        attribute (``conductance``, ``voltage`` or ``current``). Diodes and sources are directed
        (first -> second terminal), so they need a directed graph. ``ground`` names the node held
        at 0 V; ``nodes`` fixes the order of the others (default: graph order). Returns the
        network; ``Network.node_labels`` maps indices back to labels.
        """
        labels = list(graph.nodes if nodes is None else nodes)
        if ground not in graph:
            raise NodeIndexError(f"ground node {ground!r} is not in the graph")
        labels = [ground] + [n for n in labels if n != ground]
        index = {label: i for i, label in enumerate(labels)}
        if len(index) != graph.number_of_nodes():
            raise NetworkError(f"`nodes` lists {len(index)} nodes but the graph has {graph.number_of_nodes()}")
        cols: dict[str, list[list]] = {kind: [[], [], []] for kind in KINDS}
        edges = graph.edges(keys=True, data=True) if graph.is_multigraph() else graph.edges(data=True)
        for edge in edges:
            u, v, data = edge[0], edge[1], edge[-1]
            kind = data.get("kind", "resistor")
            if kind not in KINDS:
                raise InvalidElementError(f"edge {u!r} -> {v!r}: unknown kind {kind!r}; one of {', '.join(KINDS)}")
            value_name = KINDS[kind][2]
            if kind != "resistor" and not graph.is_directed():
                raise InvalidElementError(f"edge {u!r} -> {v!r}: a {kind} is directed; use a DiGraph or MultiDiGraph")
            if value_name is not None and value_name not in data:
                raise InvalidElementError(f"edge {u!r} -> {v!r}: {kind} needs a {value_name!r} attribute")
            if u not in index or v not in index:
                raise NodeIndexError(f"edge {u!r} -> {v!r}: node not listed in `nodes`")
            cols[kind][0].append(index[u])
            cols[kind][1].append(index[v])
            cols[kind][2].append(data.get(value_name, 0.0) if value_name else 0.0)
        net = cls(len(labels))
        net.add_arrays(**{f"{kind}s" if kind != "diode" else "diodes":
                          (c[0], c[1]) if KINDS[kind][2] is None else tuple(c)
                          for kind, c in cols.items() if c[0]})
        net.node_labels = labels
        return net


def _check_values(kind: str, first: int, a: np.ndarray, b: np.ndarray, value: np.ndarray) -> None:
    """Reject malformed element values, naming the first offending element."""
    def fail(mask: np.ndarray, why: str) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            more = f" ({bad.size} {kind}s in all)" if bad.size > 1 else ""
            raise InvalidElementError(f"{kind} #{first + i} ({int(a[i])} -> {int(b[i])}): {why}, got {float(value[i])!r}{more}")

    if kind == "resistor":
        fail(~(value > 0) | ~np.isfinite(value), "conductance must be positive and finite (siemens)")
    elif kind == "voltage_source":
        fail(~np.isfinite(value), "voltage must be finite (volts)")
        fail((a == b) & (value != 0), "a voltage source from a node to itself can only hold 0 V")
    elif kind == "current_source":
        fail(~np.isfinite(value), "current must be finite (amperes)")
