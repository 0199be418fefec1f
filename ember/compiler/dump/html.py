"""index.html pages of a dump: self-contained (inline CSS and SVG, no scripts, fonts or links out).

In:  a graph folder and its report dict (graph_page), or a run report (run_page).
Out: HTML text. A graph page shows the summary, the explain records, each graph drawn as SVG
(captured forward with breaks/fallbacks marked, the graph fusion ran on coloured by fusion group,
the backward graph), fusion groups, timings per stage as bars, the guards, the stages not written
and why, and the text of every stage (inline, with a link to the file beside it). The page says
which layout engine drew the pictures.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from ...ir.text import parse_module
from . import svg

__all__ = ["graph_page", "run_page", "MAX_INLINE_BYTES"]

MAX_INLINE_BYTES = 400_000      # larger stage files are linked, not inlined

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#2b2d42;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px;font-weight:600} header .sub{color:#c9cbe0;font-size:13px;margin-top:4px}
main{padding:12px 24px 40px}
h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{border:1px solid #e2e2e2;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:10px;flex-wrap:wrap;margin-top:12px}
.card{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:8px 14px;min-width:84px}
.card .v{font-size:20px;font-weight:600} .card .k{font-size:11px;color:#666;text-transform:uppercase}
.card.bad .v{color:#d62728} .card.warn .v{color:#e57200}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;font-weight:600}
.badge.compiled{background:#d8f0d2;color:#236b12} .badge.break{background:#fde0dd;color:#a50f15}
.rec-breaks td.code{color:#d62728;font-weight:600} .rec-fallbacks td.code{color:#e57200;font-weight:600}
code,pre,.mono{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:12px}
pre{background:#fff;border:1px solid #e2e2e2;padding:8px;overflow:auto;max-height:520px;margin:4px 0 10px}
.figs{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0;max-width:100%} figcaption{font-weight:600;font-size:14px;margin:6px 0}
.graph{background:#fff;border:1px solid #e2e2e2;border-radius:6px;overflow:auto;max-height:900px;padding:6px}
.legend{font-size:12px;margin:2px 0 6px} .sw{display:inline-block;width:12px;height:12px;border:1px solid #999;
vertical-align:middle;margin-right:4px}
.bar{background:#7b8cde;height:10px;border-radius:2px;display:inline-block}
details{margin:4px 0} summary{cursor:pointer;font-weight:600;font-size:13px}
.muted{color:#777;font-size:12px} .missing td:first-child{font-family:monospace}
"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _page(title: str, sub: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{_e(title)}</h1><div class=\"sub\">{sub}</div></header><main>\n"
            + "\n".join(body) + "\n</main></body></html>\n")


def _cards(items) -> str:
    out = ['<div class="cards">']
    for k, v, cls in items:
        out.append(f'<div class="card {cls}"><div class="v">{_e("-" if v is None else v)}</div>'
                   f'<div class="k">{_e(k)}</div></div>')
    out.append("</div>")
    return "".join(out)


def _records_table(recs, with_folder=False) -> str:
    head = "<tr><th>code</th><th>kind</th>" + ("<th>graph</th>" if with_folder else "") + \
           "<th>where</th><th>reason</th><th>node</th><th>hint</th></tr>"
    rows = []
    for r in recs:
        folder = ""
        if with_folder:
            f = r.get("folder")
            folder = f'<td><a href="{_e(f)}/index.html">{_e(f)}</a></td>' if f else "<td>-</td>"
        rows.append(f'<tr class="rec-{_e(r["kind"])}"><td class="code">{_e(r["code"])}</td><td>{_e(r["kind"])}</td>'
                    f'{folder}<td class="mono">{_e(r.get("source", "?"))}</td><td>{_e(r["reason"])}</td>'
                    f'<td class="mono">{_e(r.get("node") or "")}</td><td>{_e(r.get("hint") or "")}</td></tr>')
    return f"<table>{head}{''.join(rows)}</table>"


_NODE_RE = re.compile(r"^\s*(%[A-Za-z0-9_.?]+)\s*=\s*([A-Za-z0-9_.]+)\(")
_MARK_KIND = {"breaks": "break", "fallbacks": "fallback", "fusions": "note"}


def _marks_for(data: dict, file: str, graph) -> dict:
    """{node name: (kind, note)} for the records that name a node of this graph file."""
    which_of = {s["file"]: s["which"] for s in data.get("stages", [])}
    captured = {w: (data.get(k) or {}).get("file") for w, k in (("forward", "graph"), ("backward", "backward"))}
    fusion_graph = {w: (f or {}).get("graph") for w, f in (data.get("fusion") or {}).items()}
    marks = {}
    for r in data.get("records", []):
        kind = _MARK_KIND.get(r["kind"])
        m = _NODE_RE.match(r.get("node") or "")
        if kind is None or m is None:
            continue
        target = (r.get("extra") or {}).get("graph")
        if target in ("forward", "backward") or target is None:
            w = target or "forward"
            target = captured.get(w) if kind == "break" else (fusion_graph.get(w) or captured.get(w))
        if target != file or which_of.get(file) is None:
            continue
        name, op = m.group(1), m.group(2)
        try:
            node = graph.find(name)
        except KeyError:
            continue
        if node.op == op:
            note = f"[{r['code']}] at {r.get('source') or '?'}: {r['reason']}"
            marks[name] = (kind, note)
    return marks


def _legend(graph, groups: dict) -> str:
    colours = svg.group_colours(graph, groups)
    if not colours:
        return ""
    items = "".join(f'<span class="sw" style="background:{c}"></span><span class="mono">{_e(svg.short_group(g))}</span> '
                    f'<span class="muted">{_e(g)}</span> &nbsp; ' for g, c in colours.items())
    return f'<div class="legend">{items}</div>'


def _draw(folder: Path, data: dict, file: str, which: str, engine: str):
    text = (folder / file).read_text(encoding="utf-8")
    graph = parse_module(text, check=False)[0]
    groups = {}
    fi = (data.get("fusion") or {}).get(which)
    if fi and fi.get("graph") == file:
        for grp in fi["groups"]:
            for n in grp["nodes"]:
                groups[n] = grp["name"]
    marks = _marks_for(data, file, graph)
    pic, used = svg.render(graph, groups, marks, engine)
    return _legend(graph, groups) + pic, used


def _num(x, fmt: str = ".2f") -> str:
    return "" if x is None else format(x, fmt)


def _profile_table(prof: list) -> str:
    """report.json["profile"] rows (ember.profiler): heaviest first, a bar of self time each."""
    top = max(r["self_us"] for r in prof) or 1.0
    rows = []
    for r in sorted(prof, key=lambda r: -r["self_us"]):
        rate = r.get("gflops") if r["kind"] != "kernel" else None
        rows.append(f'<tr><td class="mono">{_e(r["name"])}</td><td>{_e(r["kind"])}</td>'
                    f'<td class="num">{r["calls"]}</td><td class="num">{r["self_us"] / max(r["calls"], 1):.1f}</td>'
                    f'<td class="num">{_num(r.get("gbps"))}</td><td class="num">{_num(rate)}</td>'
                    f'<td><span class="bar" style="width:{max(1, int(300 * r["self_us"] / top))}px"></span></td></tr>')
    return ("<table><tr><th>kernel / library call</th><th>kind</th><th>calls</th><th>us per call</th>"
            "<th>GB/s</th><th>GFLOP/s</th><th></th></tr>" + "".join(rows) + "</table>")


def graph_page(folder: Path, data: dict, engine: str = "auto") -> tuple[str, str]:
    """(index.html text, the layout engine that drew the graphs)."""
    folder = Path(folder)
    c = data.get("counts", {})
    g = data.get("graph") or {}
    b = data.get("backward") or {}
    status = data["status"]
    comp = data.get("compile_s")
    sub = (f'<span class="badge {_e(status)}">{_e(status)}</span> &nbsp; backend {_e(data.get("backend") or "-")}'
           f' &nbsp;·&nbsp; device {_e(data.get("device") or "-")}'
           f' &nbsp;·&nbsp; compile {(comp or 0) * 1000:.1f} ms &nbsp;·&nbsp; <a style="color:#c9cbe0" '
           f'href="../index.html">all graphs</a>')
    body = [_cards([("ops", g.get("ops"), ""), ("backward ops", b.get("ops") if b else None, ""),
                    ("kernels", data.get("kernels"), ""),
                    ("breaks", c.get("breaks", 0), "bad" if c.get("breaks") else ""),
                    ("fallbacks", c.get("fallbacks", 0), "warn" if c.get("fallbacks") else ""),
                    ("recompiles", c.get("recompiles", 0), "warn" if c.get("recompiles") else ""),
                    ("cache hits", (data.get("cache") or {}).get("hits"), "")])]
    if data.get("records"):
        body += ["<h2>Breaks, fallbacks, recompiles, fusion records</h2>", _records_table(data["records"])]

    # pictures
    drawings = []
    for which, key, title in (("forward", "graph", "Forward graph as captured"),
                              ("backward", "backward", "Backward graph as captured")):
        info = data.get(key)
        fi = (data.get("fusion") or {}).get(which)
        if fi and fi.get("graph") and (not info or fi["graph"] != info.get("file")):
            drawings.append((f"{which.capitalize()} graph after passes, coloured by fusion group", fi["graph"], which))
        if info and info.get("file"):
            drawings.append((title, info["file"], which))
    engines = []
    pics = []
    for title, file, which in drawings:
        try:
            pic, used = _draw(folder, data, file, which, engine)
        except Exception as e:
            pic, used = f'<p class="muted">not drawn: {_e(type(e).__name__)}: {_e(e)}</p>', None
        if used:
            engines.append(used)
        pics.append(f'<figure><figcaption>{_e(title)} <span class="muted">(<a href="#f-{_e(file)}">{_e(file)}'
                    f'</a>)</span></figcaption><div class="graph">{pic}</div></figure>')
    used = engines[0] if engines else "none"
    body.append(f'<p class="muted">Pictures drawn with: {_e(used)}. Hover a node for its full IR line; '
                f'red outline = graph break, orange = eager fallback, dashed = fusion not taken.</p>')
    body.append('<div class="figs">' + "".join(pics) + "</div>")

    fusion = data.get("fusion") or {}
    if fusion:
        body.append("<h2>Fusion groups</h2>")
        for which, fi in fusion.items():
            rows = "".join(f'<tr><td class="mono">{_e(x["name"])}</td><td>{_e(x["kind"])}</td>'
                           f'<td class="mono">{_e(" ".join(x["nodes"]))}</td></tr>' for x in fi["groups"])
            body.append(f"<p>{_e(which)} ({_e(fi.get('graph') or '-')}): {len(fi['groups'])} group(s)</p>"
                        f"<table><tr><th>group</th><th>kind</th><th>nodes</th></tr>{rows}</table>")

    prof = data.get("profile") or []
    if prof:
        body += ["<h2>Profile (ember.profiler, the last recording)</h2>", _profile_table(prof)]

    timings = data.get("timings") or {}
    if timings:
        top = max(timings.values()) or 1.0
        rows = "".join(f'<tr><td class="mono">{_e(k)}</td><td class="num">{v * 1000:.3f}</td>'
                       f'<td><span class="bar" style="width:{max(1, int(300 * v / top))}px"></span></td></tr>'
                       for k, v in timings.items())
        body += ["<h2>Time per stage</h2>",
                 f"<table><tr><th>stage</th><th>ms</th><th></th></tr>{rows}</table>"]

    if data.get("guards"):
        body += ["<h2>Guards</h2>", "<pre>" + _e("\n".join(data["guards"])) + "</pre>"]
    if data.get("missing"):
        rows = "".join(f"<tr><td>{_e(m['stage'])}</td><td>{_e(m['reason'])}</td></tr>" for m in data["missing"])
        body += ["<h2>Stages not written</h2>", f'<table class="missing"><tr><th>stage</th><th>why</th></tr>{rows}</table>']

    stages = data.get("stages", [])
    rows = "".join(f'<tr><td class="mono"><a href="#f-{_e(s["file"])}">{_e(s["file"])}</a></td><td>{_e(s["which"])}</td>'
                   f'<td>{_e(s["stage"])}</td><td class="num">{s.get("bytes", 0)}</td>'
                   f'<td><a href="{_e(s["file"])}">raw</a></td></tr>' for s in stages)
    body += ["<h2>Stages</h2>", f"<table><tr><th>file</th><th>graph</th><th>stage</th><th>bytes</th><th></th></tr>"
             f"{rows}</table>"]
    for s in stages:
        if s["kind"] in ("html", "json"):
            continue
        f = folder / s["file"]
        try:
            size = f.stat().st_size
            content = f.read_text(encoding="utf-8", errors="replace") if size <= MAX_INLINE_BYTES else None
        except OSError as e:
            content, size = f"(unreadable: {e})", 0
        inner = (f"<pre>{_e(content)}</pre>" if content is not None else
                 f'<p class="muted">{size} bytes: too large to inline; <a href="{_e(s["file"])}">open the file</a></p>')
        body.append(f'<details id="f-{_e(s["file"])}"><summary class="mono">{_e(s["file"])}</summary>{inner}</details>')
    title = f"ember · {data['fn']} · {data['folder']}"
    return _page(title, sub, body), used


def run_page(run: dict) -> str:
    """The dump directory's index.html: one row per graph, all records, cache counters."""
    graphs = run.get("graphs", [])
    rows = []
    for i, g in enumerate(graphs):
        cs = g.get("compile_s")
        rows.append(f'<tr><td class="num">{i}</td><td class="mono"><a href="{_e(g["folder"])}/index.html">'
                    f'{_e(g["folder"])}</a></td><td><span class="badge {_e(g["status"])}">{_e(g["status"])}</span></td>'
                    f'<td>{_e(g.get("backend") or "-")}</td>'
                    + "".join(f'<td class="num">{_e("-" if g.get(k) is None else g.get(k))}</td>'
                              for k in ("ops", "bwd_ops", "kernels", "breaks", "fallbacks", "recompiles"))
                    + f'<td class="num">{"-" if cs is None else f"{cs * 1000:.1f}"}</td>'
                    f'<td class="num">{_e("-" if g.get("cache_hits") is None else g["cache_hits"])}</td>'
                    f'<td class="num">{_e(g.get("missing", 0))}</td></tr>')
    recs = run.get("records", [])
    cache = run.get("cache") or {}
    body = [_cards([("graphs", len(graphs), ""),
                    ("breaks", sum(1 for r in recs if r["kind"] == "breaks"),
                     "bad" if any(r["kind"] == "breaks" for r in recs) else ""),
                    ("fallbacks", sum(1 for r in recs if r["kind"] == "fallbacks"), ""),
                    ("recompiles", sum(1 for r in recs if r["kind"] == "recompiles"), ""),
                    ("cache hits", cache.get("hits"), ""), ("cache misses", cache.get("misses"), "")]),
            "<h2>Graphs</h2>",
            "<table><tr><th>#</th><th>graph</th><th>status</th><th>backend</th><th>ops</th><th>bwd ops</th>"
            "<th>kernels</th><th>breaks</th><th>fallbacks</th><th>recompiles</th><th>compile ms</th>"
            "<th>cache hits</th><th>stages not written</th></tr>" + "".join(rows) + "</table>"]
    if recs:
        body += ["<h2>Breaks, fallbacks, recompiles, fusion records</h2>", _records_table(recs, with_folder=True)]
    return _page("ember dump", _e(run.get("root", "")), body)
