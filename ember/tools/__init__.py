"""ember.tools: the command-line tools. They sit on top of every layer and nothing imports them.

cli.py          `ember-ir` (also `python -m ember.tools`): run, show, opt, codegen, diff
gen_ops_doc.py  regenerates docs/ops.md from the op registry

Dump folders are written and read by ember/compiler/dump/ (the format lives in one place).
"""
