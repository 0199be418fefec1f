"""Graph pictures: a layered layout on networkx and an SVG renderer, or Graphviz `dot -Tsvg`.

In:  a Graph (ember.ir), optional `groups` {printed node name: group name} (fusion groups: nodes of
     one group share a fill colour) and `marks` {printed node name: (kind, note)} with kind
     'break' (red, plus a "graph break" box under the node), 'fallback' (orange, runs eagerly) or
     'note' (dashed outline, e.g. a fusion not taken).
Out: `render(graph, groups, marks, engine)` -> (svg text, engine used). The SVG is self-contained
     (no external fonts, scripts or images) so it can be inlined into an offline HTML page.

Layout (engine "networkx"): layers by topological generation, with inputs and constants moved down
to just above their first user (so a weight used late does not drag a long edge); then barycentre
sweeps order each layer to reduce edge crossings (keeping the order with the fewest crossings), and
x positions follow the mean of each node's neighbours with overlaps pushed apart. Everything is
iterative (no recursion) and deterministic: ties break by topological position.

Engine "dot" uses Graphviz when `shutil.which("dot")` finds it; "auto" picks dot when installed,
networkx otherwise. Graphs over MAX_NODES nodes are not drawn (the text form stays the reference).
"""
from __future__ import annotations

import html
import shutil
import subprocess
import textwrap

import networkx as nx

from ...ir.dot import _PALETTE   # the same colours as the DOT export
from ...ir.graph import PLACEHOLDER, Graph
from ...ir.text import format_type

__all__ = ["render", "layout", "graph_model", "group_colours", "short_group", "dot_source", "MAX_NODES",
           "dot_available"]

MAX_NODES = 1500
CHAR_W = 7.3          # px per character at the 12px monospace font below
LINE_H = 14
PAD_X, PAD_Y = 10, 6
GAP_X, GAP_Y = 22, 46
MARK_COLOURS = {"break": "#d62728", "fallback": "#ff7f0e", "note": "#7f7f7f"}


class _Box:
    __slots__ = ("key", "lines", "fill", "stroke", "dash", "kind", "title", "w", "h", "x", "y", "order")

    def __init__(self, key, lines, kind, title, order, fill="#ffffff", stroke="#444444", dash=False):
        self.key, self.lines, self.kind, self.title, self.order = key, lines, kind, title, order
        self.fill, self.stroke, self.dash = fill, stroke, dash
        self.x = self.y = 0.0
        self.fit()

    def fit(self) -> None:
        """Size the box to its text."""
        self.w = max(60.0, max(len(s) for s in self.lines) * CHAR_W + 2 * PAD_X)
        self.h = len(self.lines) * LINE_H + 2 * PAD_Y


def dot_available() -> bool:
    return shutil.which("dot") is not None


def group_colours(graph: Graph, groups: dict) -> dict:
    """{group name: fill colour}, by first appearance in topological order (stable run to run)."""
    colours: dict = {}
    for n in graph.nodes():
        g = groups.get(n.name)
        if g is not None and g not in colours:
            colours[g] = _PALETTE[len(colours) % len(_PALETTE)]
    return colours


def short_group(name: str) -> str:
    """k3_sub_exp_sum_div -> k3 (the full name is in the tooltip and the legend)."""
    return str(name).split("_", 1)[0]


def graph_model(graph: Graph, groups: dict | None = None, marks: dict | None = None):
    """Boxes (in topological order) and edges (src key, dst key, argument index, of how many)."""
    groups, marks = groups or {}, marks or {}
    colours = group_colours(graph, groups)
    boxes: list[_Box] = []
    edges: list[tuple] = []
    for i, n in enumerate(graph.nodes()):
        name = n.name
        if n.op == PLACEHOLDER:
            kind_of = n.meta.get("kind")
            lines = [name, format_type(n.type, n.device), "input" if kind_of in (None, "input") else str(kind_of)]
            box = _Box(name, lines, "input", f"{name}: {format_type(n.type, n.device)} (graph input)", i,
                       fill="#f2f2f2")
        else:
            lines = [f"{name} = {n.op}", format_type(n.type, n.device)]
            if n.meta.get("source"):
                lines.append(str(n.meta["source"]))
            from ...ir.text import format_node
            try:
                title = format_node(n)
            except Exception:
                title = f"{name} = {n.op}(...)"
            box = _Box(name, lines, "op", title, i)
        g = groups.get(name)
        if g is not None:
            box.fill = colours[g]
            box.lines[0] += f"  [{short_group(g)}]"
            box.fit()
            box.title += f"\nfusion group {g}"
        m = marks.get(name)
        if m is not None:
            kind, note = m
            box.stroke = MARK_COLOURS.get(kind, "#444444")
            box.dash = kind == "note"
            box.title += f"\n{kind}: {note}"
        boxes.append(box)
        for a, x in enumerate(n._inputs):
            edges.append((x.name, name, a, len(n._inputs)))
    order = len(boxes)
    for name, (kind, note) in marks.items():
        if kind == "break" and any(b.key == name for b in boxes):
            key = f"break:{name}"
            wrapped = textwrap.wrap(note, 44)
            if len(wrapped) > 3:
                wrapped = wrapped[:2] + [wrapped[2][:41] + "..."]
            boxes.append(_Box(key, ["graph break"] + wrapped, "break", f"graph break: {note}", order,
                              fill="#fde0dd", stroke=MARK_COLOURS["break"]))
            edges.append((name, key, 0, 1))
            order += 1
    if graph.outputs or graph.mutations:
        lines = ["return"] + ([f"{len(graph.mutations)} mutation(s)"] if graph.mutations else [])
        boxes.append(_Box("return", lines, "output", "graph outputs", order, fill="#e8e8e8"))
        for i, x in enumerate(graph.outputs):
            edges.append((x.name, "return", i, len(graph.outputs)))
        for ph, v in graph.mutations:
            edges.append((v.name, "return", -1, 1))
    return boxes, edges, colours


# =================================================================================== layout
def layout(boxes: list[_Box], edges: list[tuple]):
    """Set box.x / box.y (centres). Returns (width, height, routes): routes[i] lists the (x, y)
    points where edge i crosses the layers between its ends (its virtual nodes)."""
    if not boxes:
        return 0.0, 0.0, []
    by_key = {b.key: b for b in boxes}
    g = nx.DiGraph()
    for b in boxes:
        g.add_node(b.key)
    for s, d, _, _ in edges:
        g.add_edge(s, d)
    rank = {}
    for li, gen in enumerate(nx.topological_generations(g)):
        for k in gen:
            rank[k] = li
    # sources (inputs, constants) sit just above their first user
    for k in sorted(g.nodes, key=lambda k: by_key[k].order):
        if g.in_degree(k) == 0 and g.out_degree(k) > 0:
            rank[k] = max(0, min(rank[s] for s in g.successors(k)) - 1)

    # long edges get a virtual node per layer crossed (Sugiyama), so they are routed around boxes
    order = {b.key: b.order for b in boxes}
    preds: dict = {k: [] for k in by_key}
    succs: dict = {k: [] for k in by_key}
    virtual: list[list[str]] = []
    width_of = {k: b.w for k, b in by_key.items()}
    for i, (s, d, _, _) in enumerate(edges):
        chain = []
        for li in range(rank[s] + 1, rank[d]):
            v = f"\0v{i}_{li}"
            rank[v] = li
            order[v] = order[s] + 0.5
            width_of[v] = 6.0
            preds[v], succs[v] = [], []
            chain.append(v)
        path = [s] + chain + [d]
        for a, b in zip(path, path[1:]):
            if b not in succs[a]:
                succs[a].append(b)
                preds[b].append(a)
        virtual.append(chain)

    n_layers = max(rank.values()) + 1
    layers: list[list[str]] = [[] for _ in range(n_layers)]
    for k in sorted(rank, key=lambda k: (order[k], k)):
        layers[rank[k]].append(k)

    pos = {}
    for layer in layers:
        m = max(len(layer) - 1, 1)
        for i, k in enumerate(layer):
            pos[k] = i / m

    def crossings():
        total = 0
        for li in range(n_layers - 1):
            idx = {k: i for i, k in enumerate(layers[li + 1])}
            here = {k: i for i, k in enumerate(layers[li])}
            es = sorted((here[s], idx[d]) for s in layers[li] for d in succs[s] if d in idx)
            for i in range(len(es)):      # O(E^2) per layer pair; fine at the sizes drawn
                a0, a1 = es[i]
                for j in range(i + 1, len(es)):
                    if a0 < es[j][0] and a1 > es[j][1]:
                        total += 1
        return total

    n_edges = sum(len(v) for v in succs.values())
    sweeps = 8 if n_edges < 4000 else 0
    best, best_layers = (crossings() if sweeps else 0), [list(x) for x in layers]
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        nbrs = preds if down else succs
        for li in (range(1, n_layers) if down else range(n_layers - 2, -1, -1)):
            layer = layers[li]

            def key(k):
                ps = [pos[x] for x in nbrs[k]]
                return (sum(ps) / len(ps) if ps else pos[k], order[k])
            layer.sort(key=key)
            m = max(len(layer) - 1, 1)
            for i, k in enumerate(layer):
                pos[k] = i / m
        c = crossings()
        if c < best:
            best, best_layers = c, [list(x) for x in layers]
        if best == 0:
            break
    layers = best_layers

    # x: pack each layer, then pull nodes toward their neighbours' mean x, keeping the order
    x = {}
    for layer in layers:
        total = sum(width_of[k] for k in layer) + GAP_X * (len(layer) - 1)
        cur = -total / 2
        for k in layer:
            x[k] = cur + width_of[k] / 2
            cur += width_of[k] + GAP_X

    def place(layer, nbrs):
        if not layer:
            return
        want = []
        for k in layer:
            ps = [x[p] for p in nbrs[k]]
            want.append(sum(ps) / len(ps) if ps else x[k])
        got = list(want)
        for i in range(1, len(layer)):        # push right to remove overlaps
            gap = GAP_X if not (layer[i - 1][0] == "\0" and layer[i][0] == "\0") else 6
            sep = (width_of[layer[i - 1]] + width_of[layer[i]]) / 2 + gap
            got[i] = max(got[i], got[i - 1] + sep)
        shift = sum(w - g_ for w, g_ in zip(want, got)) / len(layer)   # then recentre the block
        for i, k in enumerate(layer):
            x[k] = got[i] + shift

    for _ in range(4):
        for li in range(1, n_layers):
            place(layers[li], preds)
        for li in range(n_layers - 2, -1, -1):
            place(layers[li], succs)
    for li in range(1, n_layers):
        place(layers[li], preds)

    ys = {}
    y = 12.0
    for li, layer in enumerate(layers):
        h = max((by_key[k].h for k in layer if k in by_key), default=0)
        for k in layer:
            ys[k] = y + h / 2
        y += h + GAP_Y
    left = min(x[k] - width_of[k] / 2 for k in x)
    for k, b in by_key.items():
        b.x = x[k] - left + 12
        b.y = ys[k]
    routes = [[(x[v] - left + 12, ys[v]) for v in chain] for chain in virtual]
    width = max(x[k] + width_of[k] / 2 for k in x) - left + 24
    height = y - GAP_Y + 12
    return width, height, routes


# ================================================================================ rendering
def _svg_networkx(boxes, edges, colours) -> str:
    w, h, routes = layout(boxes, edges)
    by_key = {b.key: b for b in boxes}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ember-graph" width="{w:.0f}" height="{h:.0f}" '
           f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
           f'font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>']
    for (s, d, arg, n_args), route in zip(edges, routes):
        a, b = by_key[s], by_key[d]
        # spread the ends of several arguments over the target's top edge
        dx = 0.0 if n_args <= 1 or arg < 0 else (arg - (n_args - 1) / 2) * min(14.0, b.w / (n_args + 1))
        x2, y2 = b.x + dx, b.y - b.h / 2
        pts = [(a.x, a.y + a.h / 2)] + route + [(x2, y2)]
        d_attr = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
        for (px, py), (qx, qy) in zip(pts, pts[1:]):     # vertical tangents at every layer crossing
            my = (qy - py) / 2
            d_attr += f" C{px:.1f},{py + my:.1f} {qx:.1f},{qy - my:.1f} {qx:.1f},{qy:.1f}"
        dash = ' stroke-dasharray="4 3"' if arg < 0 or b.kind == "break" else ""
        out.append(f'<path d="{d_attr}" fill="none" stroke="#888" stroke-width="1.2" '
                   f'marker-end="url(#arrow)"{dash}/>')
        if n_args > 1 and arg >= 0 and b.kind != "output":
            out.append(f'<text x="{x2 + 3:.1f}" y="{y2 - 4:.1f}" font-size="9" fill="#888">{arg}</text>')
    for b in boxes:
        x0, y0 = b.x - b.w / 2, b.y - b.h / 2
        rx = b.h / 2 if b.kind == "input" else 5
        sw = 2.5 if b.stroke in MARK_COLOURS.values() else 1
        dash = ' stroke-dasharray="5 3"' if b.dash else ""
        out.append(f'<g class="node {b.kind}" data-name="{html.escape(b.key)}"><title>{html.escape(b.title)}</title>'
                   f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="{rx:.1f}" '
                   f'fill="{b.fill}" stroke="{b.stroke}" stroke-width="{sw}"{dash}/>')
        for i, line in enumerate(b.lines):
            ty = y0 + PAD_Y + LINE_H * (i + 1) - 3
            weight = ' font-weight="bold"' if i == 0 else ""
            colour = "#555" if i > 0 else "#000"
            out.append(f'<text x="{b.x:.1f}" y="{ty:.1f}" text-anchor="middle" fill="{colour}"{weight}>'
                       f'{html.escape(line)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_source(boxes, edges, name="graph") -> str:
    """The same picture as Graphviz DOT source."""
    lines = [f"digraph {_q(name)} {{", "  rankdir=TB; nodesep=0.25; ranksep=0.45;",
             '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=10];',
             '  edge [color="#888888", arrowsize=0.7];']
    ids = {b.key: f"n{i}" for i, b in enumerate(boxes)}
    for b in boxes:
        shape = "ellipse" if b.kind == "input" else "box"
        style = "rounded,filled" + (",dashed" if b.dash else "")
        pen = 2.5 if b.stroke in MARK_COLOURS.values() else 1
        lines.append(f'  {ids[b.key]} [label={_q(chr(10).join(b.lines))}, tooltip={_q(b.title)}, shape={shape}, '
                     f'style={_q(style)}, fillcolor={_q(b.fill)}, color={_q(b.stroke)}, penwidth={pen}];')
    for s, d, arg, n_args in edges:
        attrs = []
        if n_args > 1 and arg >= 0:
            attrs.append(f'headlabel="{arg}", labelfontsize=8, labelfontcolor="#888888"')
        if arg < 0 or d.startswith("break:"):
            attrs.append("style=dashed")
        lines.append(f"  {ids[s]} -> {ids[d]}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _svg_dot(boxes, edges, name) -> str:
    proc = subprocess.run([shutil.which("dot") or "dot", "-Tsvg"], input=dot_source(boxes, edges, name),
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "dot failed")
    svg = proc.stdout
    start = svg.find("<svg")            # drop the XML prolog and DOCTYPE: the SVG is inlined
    return svg[start:] if start >= 0 else svg


def render(graph: Graph, groups: dict | None = None, marks: dict | None = None, engine: str = "auto"):
    """(svg text, engine used): engine "auto" | "dot" | "networkx". The engine string says what
    drew it ("graphviz dot", "networkx layered layout", or why nothing was drawn)."""
    n = len(graph)
    if n > MAX_NODES:
        return (f'<p class="too-big">graph has {n} nodes (more than {MAX_NODES}): not drawn; '
                f'see its text</p>', "not drawn (too large)")
    boxes, edges, colours = graph_model(graph, groups, marks)
    if engine in ("auto", "dot") and dot_available():
        try:
            return _svg_dot(boxes, edges, graph.name), "graphviz dot"
        except Exception as e:
            if engine == "dot":
                raise
            note = f"networkx layered layout (graphviz dot failed: {e})"
            return _svg_networkx(boxes, edges, colours), note
    if engine == "dot":
        raise RuntimeError("Graphviz `dot` is not installed")
    return _svg_networkx(boxes, edges, colours), "networkx layered layout"
