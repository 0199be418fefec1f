"""Reports: the JSON written into dump folders, and the text tables `ember-ir` prints from them.

In:  a finished DumpSession (graph_report) or DumpRun (run_report); or a dump directory on disk
     (load). Out: plain dicts (report.json) and text: summary_table (one row per graph, totals,
     breaks and fallbacks with their lines), graph_text (one graph's stages, timings, records).

report.json of a graph folder:
    ember_dump, fn, folder, status ('compiled' | 'break'), backend, device, compile_s,
    graph / backward: {file, inputs, ops, op_counts}, kernels (count or null), kernel_names,
    fusion {which: {graph, groups: [{name, kind, nodes}]}}, records [Record.as_dict() + folder],
    counts {breaks, fallbacks, recompiles, specializations, fusions}, guards [str],
    timings {stage: seconds}, cache {hits, misses, ...} (during this compile),
    stages [{stage, which, file, kind, bytes, ...}], missing [{stage, reason}], layout.
report.json of a run (the dump directory): ember_dump, kind='run', root, graphs [summary rows],
    records (all of the run), cache (process totals).
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["graph_report", "graph_summary", "run_report", "timings_text", "summary_table", "graph_text",
           "load", "ReportError"]

COUNTED = ("breaks", "fallbacks", "recompiles", "specializations", "fusions")


class ReportError(Exception):
    """A directory that is not an ember dump (one-line message)."""


def _rec_dict(rec, folder) -> dict:
    d = rec.as_dict()
    d["folder"] = folder
    return d


def graph_report(session, cg, cf, status: str) -> dict:
    recs = getattr(session, "records", [])
    counts = {k: sum(1 for r in recs if r.kind == k) for k in COUNTED}
    compile_s = None
    if cg is not None:
        compile_s = cg.stats.get("compile_time_s")
    if compile_s is None:
        compile_s = sum(v for k, v in session.timings.items() if not k.startswith(("dump:", "pass:")) and ":" not in k)
    kn = session.kernel_names
    data = {
        "ember_dump": 1,
        "fn": session.fn,
        "folder": session.folder,
        "status": status,
        "backend": getattr(session, "backend", None),
        "device": str(getattr(getattr(cg, "device", None), "type", "cpu")) if cg is not None else None,
        "compile_s": compile_s,
        "graph": session.graph_info.get("forward"),
        "backward": session.graph_info.get("backward"),
        "kernels": sum(len(v) for v in kn.values()) if kn else None,
        "kernel_names": kn,
        "fusion": session.fusion_info,
        "records": [_rec_dict(r, session.folder) for r in recs],
        "counts": counts,
        "guards": getattr(session, "guards", []),
        "timings": dict(session.timings),
        "cache": dict(getattr(session, "cache_delta", {}), **({"module_from": session.cache_source}
                                                              if session.cache_source else {})),
        "stages": session._sorted_stages(),
        "missing": [{"stage": k, "reason": v} for k, v in session.missing_.items()],
        "layout": getattr(session, "layout", None),
    }
    return data


def graph_summary(data: dict) -> dict:
    """One row of the run table."""
    g, b = data.get("graph") or {}, data.get("backward") or {}
    return {"folder": data["folder"], "fn": data["fn"], "status": data["status"],
            "backend": data.get("backend"), "ops": g.get("ops"), "bwd_ops": b.get("ops") if b else None,
            "kernels": data.get("kernels"), **{k: data["counts"][k] for k in COUNTED},
            "compile_s": data.get("compile_s"), "cache_hits": _hits(data.get("cache") or {}),
            "missing": len(data.get("missing", [])),
            "missing_reasons": list(dict.fromkeys(m["reason"] for m in data.get("missing", [])))}


def _hits(cache: dict):
    """Disk-cache hits during the compile, plus compiled modules served from the in-memory cache."""
    if "hits" not in cache:
        return None
    return cache["hits"] + sum(1 for v in (cache.get("module_from") or {}).values() if v == "memory")


def run_report(run) -> dict:
    from .writer import _cache_stats
    return {"ember_dump": 1, "kind": "run", "root": str(run.root), "graphs": list(run.summaries),
            "records": [_rec_dict(r, folder) for r, folder in run.records],
            "cache": _cache_stats()}


def timings_text(timings: dict, compile_s: float | None = None) -> str:
    lines = [f"{'stage':<32} {'ms':>10}"]
    for k, v in timings.items():
        lines.append(f"{k:<32} {v * 1000:>10.3f}")
    if compile_s is not None:
        lines.append(f"{'compile (total)':<32} {compile_s * 1000:>10.3f}")
    return "\n".join(lines)


# ====================================================================================== loading
def load(path) -> dict:
    """report.json of a dump directory or of one graph folder (ReportError if there is none)."""
    p = Path(path)
    if not p.exists():
        raise ReportError(f"{path}: no such file or directory")
    f = p / "report.json" if p.is_dir() else p
    if not f.is_file():
        raise ReportError(f"{path}: not an ember dump (no report.json); make one with `ember-ir run SCRIPT --out DIR` "
                          f"or EMBER_DUMP=DIR")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReportError(f"{f}: unreadable report ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or "ember_dump" not in data:
        raise ReportError(f"{f}: not an ember dump report")
    return data


# ======================================================================================== tables
def _cell(v, fmt=None):
    if v is None:
        return "-"
    return fmt.format(v) if fmt else str(v)


def _table(headers, rows, right=()) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers)] + [line(r) for r in rows]


def summary_table(run: dict) -> str:
    """The table `ember-ir run` / `ember-ir show DIR` print."""
    graphs = run.get("graphs", [])
    out = [f"ember dump: {run.get('root', '?')}  ({len(graphs)} graph(s))"]
    headers = ["#", "graph", "status", "backend", "ops", "bwd ops", "kernels", "breaks", "fallbacks",
               "recompiles", "compile ms", "cache hits"]
    rows = []
    tot = {"ops": 0, "bwd_ops": 0, "kernels": None, "breaks": 0, "fallbacks": 0, "recompiles": 0,
           "compile_s": 0.0, "cache_hits": None}
    for i, g in enumerate(graphs):
        rows.append([str(i), g["folder"], g["status"], _cell(g.get("backend")), _cell(g.get("ops")),
                     _cell(g.get("bwd_ops")), _cell(g.get("kernels")), _cell(g.get("breaks")),
                     _cell(g.get("fallbacks")), _cell(g.get("recompiles")),
                     _cell(g.get("compile_s") and g["compile_s"] * 1000, "{:.1f}"), _cell(g.get("cache_hits"))])
        for k in ("ops", "bwd_ops", "breaks", "fallbacks", "recompiles", "compile_s"):
            tot[k] += g.get(k) or 0
        for k in ("kernels", "cache_hits"):
            if g.get(k) is not None:
                tot[k] = (tot[k] or 0) + g[k]
    # records not tied to a traced graph (e.g. the recompile limit) still count
    loose = [r for r in run.get("records", []) if r.get("folder") is None]
    for r in loose:
        if r["kind"] in ("breaks", "fallbacks", "recompiles"):
            tot[r["kind"]] += 1
    rows.append(["", "total", "", "", str(tot["ops"]), str(tot["bwd_ops"]), _cell(tot["kernels"]), str(tot["breaks"]),
                 str(tot["fallbacks"]), str(tot["recompiles"]), f"{tot['compile_s'] * 1000:.1f}",
                 _cell(tot["cache_hits"])])
    out += _table(headers, rows, right={0, 4, 5, 6, 7, 8, 9, 10, 11})
    recs = run.get("records", [])
    for kind, title in (("breaks", "graph breaks"), ("fallbacks", "eager fallbacks"), ("recompiles", "recompiles"),
                        ("specializations", "specialisations"), ("fusions", "fusions not taken")):
        sel = [r for r in recs if r["kind"] == kind]
        if sel:
            out.append("")
            out.append(f"{title}:")
            for r in sel:
                out.append(f"  [{r['code']}] {r.get('fn') or '?'} at {r.get('source', '?')}: {r['reason']}")
                if r.get("node"):
                    out.append(f"      node: {r['node']}")
                if r.get("hint"):
                    out.append(f"      hint: {r['hint']}")
    n_missing = sum(g.get("missing") or 0 for g in graphs)
    if n_missing:
        out.append("")
        reasons = {}
        for g in graphs:
            for r in g.get("missing_reasons") or []:
                reasons[r] = reasons.get(r, 0) + 1
        out.append(f"{n_missing} stage(s) not written (`ember-ir show DIR/<graph>` lists them):")
        for r, k in reasons.items():
            out.append(f"  {k} graph(s): {r}")
    return "\n".join(out)


def graph_text(data: dict) -> str:
    """One graph folder: what is in it, timings, records, what is missing and why."""
    g = data.get("graph") or {}
    out = [f"{data['folder']}: {data['fn']}  status {data['status']}  backend {data.get('backend') or '-'}  "
           f"compile {(data.get('compile_s') or 0) * 1000:.1f} ms"]
    if g:
        out.append(f"  forward: {g.get('ops')} ops, {g.get('inputs')} inputs ({g.get('file')})")
        if g.get("op_counts"):
            out.append("    " + ", ".join(f"{k}×{v}" for k, v in g["op_counts"].items()))
    b = data.get("backward")
    if b:
        out.append(f"  backward: {b.get('ops')} ops ({b.get('file')})")
    if data.get("kernels") is not None:
        out.append(f"  kernels: {data['kernels']}")
    out.append("  stages:")
    for s in data.get("stages", []):
        extra = f"  {s['seconds'] * 1000:.2f} ms" if s.get("seconds") is not None else ""
        out.append(f"    {s['file']:<28} {s['which']:<9} {s['stage']}{extra}")
    if data.get("timings"):
        out.append("  timings (ms): " + ", ".join(f"{k} {v * 1000:.2f}" for k, v in data["timings"].items()))
    for r in data.get("records", []):
        out.append(f"  [{r['code']}] {r['kind']} at {r.get('source', '?')}: {r['reason']}")
        if r.get("node"):
            out.append(f"      node: {r['node']}")
        if r.get("hint"):
            out.append(f"      hint: {r['hint']}")
    if data.get("missing"):
        out.append("  not written:")
        for m in data["missing"]:
            out.append(f"    {m['stage']}: {m['reason']}")
    return "\n".join(out)
