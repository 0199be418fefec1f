"""Dump folders: the one package that writes and reads them (the format lives in one place).

    writer.py  DumpSession / DumpRun: the hook object ember.compile, the pass manager and the code
               generators write into (they get it as an argument and never import this package)
    report.py  report.json contents and the text tables `ember-ir show` prints
    svg.py     graph layout (networkx, or Graphviz dot when installed) and SVG
    html.py    self-contained index.html pages

    EMBER_DUMP=out python train.py           # or ember.compile(fn, dump="out")
    ember-ir show out                        # summary table; out/index.html has the pictures
"""
from .writer import DumpRun, DumpSession, open_session  # noqa: F401

__all__ = ["DumpRun", "DumpSession", "open_session"]
