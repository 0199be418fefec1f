"""Graph and Node: the graph IR's data structure, on a networkx.MultiDiGraph.

In:  the tracer (and passes) build a Graph with `placeholder()` for inputs and `add()` for op nodes,
     then `set_outputs()` and `add_mutation()`.
Out: a DAG whose nodes are `Node` objects; `nodes()` gives a deterministic topological order, the
     text form (`str(graph)`, see text.py) and DOT (dot.py) are views of it, verify.py checks it.

Storage. `Graph.nx` is a `networkx.MultiDiGraph` whose nodes are the Node objects themselves and
whose edges run producer -> consumer, one edge per argument, with key = attr "arg" = the argument
index (so `x * x` has two edges, keys 0 and 1). Each Node also keeps its ordered argument list, so
`node.inputs` needs no edge sorting; the Graph's methods keep both in step. Change structure through
the Graph's methods only (add / set_input / replace_all_uses / erase), not through `nx` directly:
they also refresh the cached topological order and the printed names.

Determinism. Node ids are handed out in creation order and never reused; the topological order is
networkx's lexicographical topological sort keyed by id, so the same program always yields the same
order and the same printed names (%0, %1, ... for op nodes; sanitized unique names for inputs).
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

import networkx as nx

from . import ops
from .ops import TType
from .sizes import as_size, sym_str

__all__ = ["Node", "Graph", "PLACEHOLDER", "sanitize_name"]

PLACEHOLDER = "placeholder"


class Node:
    """One value in a Graph: a graph input (op == "placeholder") or an op applied to earlier nodes.

    Nodes hash and compare equal by identity (so they can be networkx nodes and dict keys) and
    order by `id` (creation order). Create them with Graph.placeholder / Graph.add, never directly.
    """

    __slots__ = ("graph", "id", "op", "attrs", "type", "device", "meta", "_inputs", "_name")

    def __init__(self, graph: "Graph", id: int, op: str, inputs: list["Node"], attrs: dict,
                 type: TType, device: str, meta: dict, name: str | None = None):
        self.graph = graph
        self.id = id
        self.op = op
        self.attrs = attrs
        self.type = type
        self.device = device
        self.meta = meta
        self._inputs = inputs
        self._name = name          # only placeholders carry a fixed name

    # --- views -------------------------------------------------------------------------------
    @property
    def inputs(self) -> list["Node"]:
        """The ordered arguments (a copy: change them with Graph.set_input)."""
        return list(self._inputs)

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    @property
    def is_placeholder(self) -> bool:
        return self.op == PLACEHOLDER

    @property
    def users(self) -> list["Node"]:
        """Nodes that take this one as an argument, each once, in id order."""
        return self.graph.users(self)

    @property
    def name(self) -> str:
        """The printed name: "%x" for an input, "%<n>" (topological position) for an op node."""
        if self._name is not None:
            return "%" + self._name
        return self.graph._printed_name(self)

    def __repr__(self) -> str:
        return f"<Node {self.name} = {self.op} : {_type_str(self.type)}>"

    # Order by creation id (sorting nodes gives a stable order); equality stays identity.
    def __lt__(self, other: "Node") -> bool:
        return self.id < other.id

    def __le__(self, other: "Node") -> bool:
        return self.id <= other.id

    def __gt__(self, other: "Node") -> bool:
        return self.id > other.id

    def __ge__(self, other: "Node") -> bool:
        return self.id >= other.id

    __hash__ = object.__hash__


def _type_str(t: TType) -> str:
    return f"{t.dtype.short}[{','.join(sym_str(n) for n in t.shape)}]"


def _as_ttype(t) -> TType:
    """Normalise a (shape, dtype) pair to a TType whose shape holds Python ints (and SymInts)."""
    shape, dtype = t
    return TType(tuple(as_size(n) for n in shape), dtype)


_NAME_BAD = re.compile(r"[^A-Za-z0-9_.]")


def sanitize_name(name: str) -> str:
    """Make a name printable after '%': letters, digits, '_' and '.', not starting with a digit
    or '.' (so it can never clash with the %0, %1 numbering of op nodes)."""
    s = _NAME_BAD.sub("_", str(name))
    if not s or not (s[0].isalpha() or s[0] == "_"):
        s = "_" + s
    return s


class Graph:
    """A dataflow graph: inputs (placeholders), op nodes, ordered outputs and input mutations.

    `mutations` lists (placeholder, value) pairs: after a call, `value` is written back into the
    storage of the input `placeholder` (in-place updates of parameters, optimizer state, buffers).
    Two graphs are == when they print the same text (same structure, types, attributes, devices,
    source lines); other meta is not compared.
    """

    def __init__(self, name: str = "forward"):
        self.name = sanitize_name(name)
        self.nx = nx.MultiDiGraph()
        self._inputs: list[Node] = []
        self._outputs: list[Node] = []
        self._mutations: list[tuple[Node, Node]] = []
        self._next_id = 0
        self._input_names: set[str] = set()
        # Caches, dropped on every structural change (see _changed).
        self._order: list[Node] | None = None
        self._numbers: dict[Node, int] | None = None

    # --- building -----------------------------------------------------------------------------
    def placeholder(self, name: str, type: TType, device: str = "cpu", meta: dict | None = None) -> Node:
        """Add a graph input. `name` becomes its printed name (sanitized, made unique with a
        suffix _1, _2, ...) and, unless meta already has one, meta["name"]."""
        meta = dict(meta or {})
        meta.setdefault("name", name)
        unique = self._unique_input_name(sanitize_name(name))
        node = Node(self, self._new_id(), PLACEHOLDER, [], {}, _as_ttype(type), device, meta, unique)
        self._input_names.add(unique)
        self._inputs.append(node)
        self.nx.add_node(node)
        self._changed()
        return node

    def add(self, op: str, inputs: Iterable[Node], attrs: dict | None = None, type: TType | None = None,
            device: str | None = None, meta: dict | None = None) -> Node:
        """Append `op(*inputs, **attrs)` and return its node.

        type None: computed by the op's shape/dtype rule (ops.infer; its ShapeError propagates).
        device None: the first input's device, or "cpu" for ops without inputs.
        """
        if op == PLACEHOLDER:
            raise ValueError("use Graph.placeholder() to add graph inputs")
        inputs = list(inputs)
        for i, x in enumerate(inputs):
            self._check_member(x, f"{op}: argument {i}")
        attrs = dict(attrs or {})
        if type is None:
            type = ops.infer(op, [x.type for x in inputs], attrs)
        if device is None:
            device = inputs[0].device if inputs else "cpu"
        node = Node(self, self._new_id(), op, inputs, attrs, _as_ttype(type), device, dict(meta or {}))
        self.nx.add_node(node)
        for i, x in enumerate(inputs):
            self.nx.add_edge(x, node, key=i, arg=i)
        self._changed()
        return node

    # Passes read better with "insert" when they splice a node into an existing graph; ids keep
    # growing, and the topological order places the node correctly anyway.
    insert = add

    def set_outputs(self, outputs: Iterable[Node]) -> None:
        """Set the ordered graph outputs (a node may appear more than once)."""
        outputs = list(outputs)
        for i, x in enumerate(outputs):
            self._check_member(x, f"output {i}")
        self._outputs = outputs

    def add_mutation(self, placeholder: Node, value: Node) -> None:
        """Record that `value` is written back into input `placeholder`'s storage after the call."""
        self._check_member(placeholder, "mutation target")
        self._check_member(value, "mutation value")
        if not placeholder.is_placeholder:
            raise ValueError(f"mutation target {placeholder.name} is not a graph input")
        self._mutations.append((placeholder, value))

    # --- reading ------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[Node]:
        """The placeholders, in the order they were added (a copy)."""
        return list(self._inputs)

    @property
    def outputs(self) -> list[Node]:
        """The ordered outputs (a copy: change them with set_outputs)."""
        return list(self._outputs)

    @outputs.setter
    def outputs(self, value: Iterable[Node]) -> None:
        self.set_outputs(value)

    @property
    def mutations(self) -> list[tuple[Node, Node]]:
        """(placeholder, value) pairs, in the order they were added (a copy)."""
        return list(self._mutations)

    def nodes(self) -> list[Node]:
        """All nodes in deterministic topological order (ties broken by creation id).
        Raises networkx.NetworkXUnfeasible if the graph has a cycle."""
        if self._order is None:
            self._order = list(nx.lexicographical_topological_sort(self.nx, key=lambda n: n.id))
        return list(self._order)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes())

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def __contains__(self, node: object) -> bool:
        return isinstance(node, Node) and node.graph is self and self.nx.has_node(node)

    def users(self, n: Node) -> list[Node]:
        """Nodes that take `n` as an argument, each once, in id order (outputs/mutations not included)."""
        return sorted(self.nx.successors(n), key=lambda u: u.id)

    def find(self, name: str) -> Node:
        """The node printed as `name` ("%x", "x" or "%3")."""
        name = name if name.startswith("%") else "%" + name
        for n in self.nodes():
            if n.name == name:
                return n
        raise KeyError(f"no node named {name} in graph {self.name}")

    # --- rewriting ----------------------------------------------------------------------------
    def set_input(self, node: Node, index: int, new: Node) -> None:
        """Make argument `index` of `node` be `new` (keeps edges and argument list in step)."""
        self._check_member(node, "node")
        self._check_member(new, "new argument")
        old = node._inputs[index]
        self.nx.remove_edge(old, node, key=index)
        node._inputs[index] = new
        self.nx.add_edge(new, node, key=index, arg=index)
        self._changed()

    def replace_all_uses(self, old: Node, new: Node) -> None:
        """Redirect every use of `old` to `new`: arguments of its users, outputs and mutation values.

        `new` itself is skipped as a user, so `replace_all_uses(x, relu(x))` splices relu after x.
        Mutation targets name an input's storage rather than use a value, and stay as they are.
        """
        self._check_member(old, "old")
        self._check_member(new, "new")
        if old is new:
            return
        for user in self.users(old):
            if user is new:
                continue
            for i, x in enumerate(user._inputs):
                if x is old:
                    self.set_input(user, i, new)
        self._outputs = [new if x is old else x for x in self._outputs]
        self._mutations = [(ph, new if v is old else v) for ph, v in self._mutations]
        self._changed()

    def erase(self, n: Node) -> None:
        """Remove `n`. It must have no users and not be an output or part of a mutation."""
        self._check_member(n, "node")
        users = self.users(n)
        if users:
            raise ValueError(f"cannot erase {n.name}: still used by {', '.join(u.name for u in users)}")
        if any(x is n for x in self._outputs):
            raise ValueError(f"cannot erase {n.name}: it is a graph output")
        if any(n is ph or n is v for ph, v in self._mutations):
            raise ValueError(f"cannot erase {n.name}: it is part of a mutation")
        if n.is_placeholder:
            self._inputs.remove(n)
            self._input_names.discard(n._name)
        self.nx.remove_node(n)
        self._changed()

    # --- whole-graph operations ---------------------------------------------------------------
    def copy(self) -> tuple["Graph", dict[Node, Node]]:
        """A deep structural copy (same ids, names, attrs, meta dicts copied) and the map old -> new."""
        g = Graph(self.name)
        g._next_id = self._next_id
        mapping: dict[Node, Node] = {}
        for n in self.nodes():
            new = Node(g, n.id, n.op, [mapping[x] for x in n._inputs], dict(n.attrs), n.type, n.device,
                       dict(n.meta), n._name)
            mapping[n] = new
            g.nx.add_node(new)
            for i, x in enumerate(new._inputs):
                g.nx.add_edge(x, new, key=i, arg=i)
        g._inputs = [mapping[x] for x in self._inputs]
        g._input_names = set(self._input_names)
        g._outputs = [mapping[x] for x in self._outputs]
        g._mutations = [(mapping[ph], mapping[v]) for ph, v in self._mutations]
        return g, mapping

    def subgraph(self, nodes: Iterable[Node], name: str | None = None, with_io: bool = False):
        """Extract `nodes` into a new Graph.

        Values the selection uses from outside become placeholders (named like the outside value:
        its input name, its meta name hint, or "t<n>" for %<n>), in the order first used.
        Selected nodes used outside the selection (by other nodes, graph outputs or mutations)
        become the outputs, in topological order. Mutations are not carried over.
        The selection should be convex (no path leaves it and comes back), or fusing it back
        would make a cycle; this is not checked here.

        Returns the Graph; with_io=True returns (graph, outside_inputs, outside_outputs): the
        outer nodes matching the new graph's inputs and outputs one to one.
        """
        chosen = set(nodes)
        for x in chosen:
            self._check_member(x, "subgraph node")
        g = Graph(name or self.name)
        mapping: dict[Node, Node] = {}
        outside_inputs: list[Node] = []
        for n in self.nodes():
            if n not in chosen:
                continue
            if n.is_placeholder:
                mapping[n] = g.placeholder(n._name, n.type, n.device, dict(n.meta))
                outside_inputs.append(n)
                continue
            args = []
            for x in n._inputs:
                if x not in mapping:  # an outside value: becomes an input of the subgraph
                    hint = x._name or x.meta.get("name") or "t" + x.name[1:]
                    mapping[x] = g.placeholder(hint, x.type, x.device, {"name": hint})
                    outside_inputs.append(x)
                args.append(mapping[x])
            mapping[n] = g.add(n.op, args, dict(n.attrs), n.type, n.device, dict(n.meta))
        used_outside = {x for x in self._outputs} | {v for _, v in self._mutations}
        outside_outputs = [n for n in self.nodes() if n in chosen and
                           (n in used_outside or any(u not in chosen for u in self.users(n)))]
        g.set_outputs(mapping[n] for n in outside_outputs)
        return (g, outside_inputs, outside_outputs) if with_io else g

    def __str__(self) -> str:
        from .text import print_graph  # text.py imports this module; import late to avoid a cycle
        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self._inputs)} inputs, {len(self)} nodes, {len(self._outputs)} outputs>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return str(self) == str(other)

    __hash__ = None  # mutable, compared by value

    # --- internals ----------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _changed(self) -> None:
        self._order = None
        self._numbers = None

    def _check_member(self, x: object, what: str) -> None:
        if not isinstance(x, Node):
            raise TypeError(f"{what}: expected a Node, got {type(x).__name__}")
        if x.graph is not self or not self.nx.has_node(x):
            raise ValueError(f"{what}: node #{x.id} ({x.op}) is not in graph {self.name}")

    def _unique_input_name(self, base: str) -> str:
        name, k = base, 0
        while name in self._input_names:
            k += 1
            name = f"{base}_{k}"
        return name

    def _printed_name(self, n: Node) -> str:
        """%<position among op nodes in topological order>. A graph with a cycle has no
        topological order; then ids order the numbering so that errors can still name nodes."""
        if self._numbers is None:
            try:
                order = self.nodes()
            except nx.NetworkXUnfeasible:
                order = sorted(self.nx.nodes, key=lambda x: x.id)
            numbered = (x for x in order if x._name is None)
            self._numbers = {x: i for i, x in enumerate(numbered)}
        i = self._numbers.get(n)
        return f"%{i}" if i is not None else f"%?{n.id}"  # %?: not (or no longer) in this graph
