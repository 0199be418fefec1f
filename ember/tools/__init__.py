"""ember.tools: the inspect tooling — dump folders, reports, pictures and the `ember-ir` CLI.

    EMBER_DUMP=out python train.py           # or ember.compile(fn, dump="out")
    ember-ir show out                        # summary table; out/index.html has the pictures
    ember-ir run train.py --out out          # both in one step

dump.py    DumpSession: the hook object ember.compile, the pass manager and codegen write into
report.py  report.json contents and the text tables
svg.py     graph layout (networkx, or Graphviz dot when installed) and SVG
html.py    self-contained index.html pages
cli.py     `ember-ir` (also `python -m ember.tools`)

This package sits right of every layer: it may import any of them; none of them imports it
(ember.compile opens a session lazily, only when dumping is on).
"""
from .dump import DumpSession, open_session  # noqa: F401

__all__ = ["DumpSession", "open_session"]
