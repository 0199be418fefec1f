"""Dump folders from ember.compile(dump=...), the DumpSession hooks, and the explain records."""
import json
import warnings

import pytest

import ember
from ember import diagnostics as records
from ember.ir import parse
from ember.compiler.dump import open_session


def _report(folder):
    return json.loads((folder / "report.json").read_text())


def test_compile_dump_argument_folders_and_recompile(tmp_path):
    d = tmp_path / "d"
    cf = ember.compile(lambda x, s: (x * s).exp().sum(), dump=d, backend="eager", dynamic=False)
    cf(ember.randn(3), 2.0)
    cf(ember.randn(5), 2.0)                                  # new shape: traced again
    assert (d / "lambda_0/00_captured.ir").is_file() and (d / "lambda_1/00_captured.ir").is_file()
    rep = _report(d / "lambda_1")
    (rec,) = [r for r in rep["records"] if r["kind"] == "recompiles"]
    assert rec["code"] == "R001" and "shape" in rec["reason"] and "(3,) -> (5,)" in rec["reason"]
    assert any(r["code"] == "S001" and "2.0" in r["reason"] for r in rep["records"])
    assert "arg0: shape (5,)" in (d / "lambda_1/guards.txt").read_text()
    top = _report(d)
    assert [g["folder"] for g in top["graphs"]] == ["lambda_0", "lambda_1"]


def test_dumps_are_deterministic(tmp_path):
    w = ember.randn(4, 4, requires_grad=True)

    def f(x):
        return (x @ w).relu().sum()
    for sub in ("a", "b"):
        ember.compile(f, dump=tmp_path / sub, backend="eager")(ember.randn(2, 4))
    for name in ("00_captured.ir", "bwd_00_captured.ir", "guards.txt", "records.txt"):
        assert (tmp_path / "a/f_0" / name).read_text() == (tmp_path / "b/f_0" / name).read_text()


def test_unwritable_dump_dir_warns_and_still_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cf = ember.compile(lambda x: x + 1, dump=blocker / "sub", backend="eager")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        y = cf(ember.ones(2))
    assert float(y.sum()) == 4.0
    assert any("cannot dump" in str(x.message) for x in w)


class _FakeCG:
    """What ember.compile hands a session: graphs, executors, stats (duck-typed)."""

    def __init__(self, graph, backend="llvm"):
        self.graph, self.backward, self.backend = graph, None, backend
        self.stats, self.const_guards, self.device = {"compile_time_s": 0.01}, [], None
        self.forward_exec = self.backward_exec = None


GRAPH = """graph forward(%x: f32[64,32], %w: f32[32,16], %b: f32[16]) {
  %0 = matmul(%x, %w) : f32[64,16]   # model.py:3
  %1 = add(%0, %b) : f32[64,16]      # model.py:3
  %2 = exp(%1) : f32[64,16]          # model.py:4
  %3 = sum(%2, dims=[1], keepdim=true) : f32[64,1]   # model.py:4
  %4 = div(%2, %3) : f32[64,16]      # model.py:4
  return (%4)
}
"""


def test_full_pipeline_through_the_hooks(tmp_path):
    passes = pytest.importorskip("ember.passes")
    executor = pytest.importorskip("ember.runtime.executor")
    g = parse(GRAPH)
    s = open_session(tmp_path, "softmax_head")
    cg = _FakeCG(g)
    s.captured(cg)
    program = passes.compile_graph(g, dump_dir=s)           # a session is a path: the pass manager writes into it
    cg.forward_exec = executor.Executor(program, runner="llvm")
    with records.collect():
        records.emit_program_records(program, fn="softmax_head")
    s.finish(cg, None, guards=["arg0: shape (64, 32)"])
    rep = _report(s.path)
    kinds = {(st["which"], st["stage"]) for st in rep["stages"]}
    for stage in ("captured", "fusion", "kernels", "llvm", "llvm_opt", "asm", "executor", "memory_plan"):
        assert ("forward", stage) in kinds, stage
    assert sum(1 for st in rep["stages"] if st["kind"] == "ir" and st["stage"] != "captured") >= 2
    assert not [m for m in rep["missing"] if not m["stage"].startswith("bwd_")], rep["missing"]
    assert rep["kernels"] >= 1 and any(k.startswith("pass:") for k in rep["timings"])
    assert "define" in (s.path / "kernels.ll").read_text() and (s.path / "kernels.s").read_text().strip()
    assert "def run_forward" in (s.path / "executor.py").read_text()
    page = (s.path / "index.html").read_text()
    assert "coloured by fusion group" in page and "fusion group" in page


def test_failed_hooks_are_listed_not_raised(tmp_path):
    class Bad:
        name = "k0_bad"

        def __str__(self):
            raise RuntimeError("no text form")
    s = open_session(tmp_path, "f")
    s.kernels([Bad()])
    s.llvm("this is not LLVM IR")
    s.finish(None, None, status="compiled")
    missing = {m["stage"]: m["reason"] for m in _report(s.path)["missing"]}
    assert "no text form" in missing["kernels"]
    assert missing["llvm_opt"] and missing["asm"]
    assert (s.path / "kernels.ll").read_text().startswith("this is not")


def test_explain_break_has_line_node_and_hint():
    def f(x):
        if x.sum() > 0:
            return x * 2
        return x
    rep = ember.explain(f, ember.ones(3))
    (b,) = rep.breaks
    assert b.code == "B001" and b.source.startswith("test_dump.py:") and "gt(" in b.node and b.hint
    assert "[B001]" in str(rep) and "node:" in str(rep)


@pytest.mark.parametrize("logs,expect", [("breaks", True), ("recompiles", False), ("", False), ("all", True)])
def test_ember_logs_prints_records_as_they_happen(monkeypatch, capsys, logs, expect):
    monkeypatch.setenv("EMBER_LOGS", logs)

    def g(x):
        return x.item()
    ember.compile(g, backend="eager")(ember.ones(1))
    err = capsys.readouterr().err
    assert ("ember: [B002]" in err) == expect


def test_ember_logs_recompiles(monkeypatch, capsys):
    monkeypatch.setenv("EMBER_LOGS", "recompiles")
    cf = ember.compile(lambda x: x * 2, backend="eager")
    cf(ember.ones(2))
    cf(ember.ones(3))
    assert "ember: [R004]" in capsys.readouterr().err     # the size changed: it turns symbolic
    cf(ember.ones(3, dtype=ember.float64))
    assert "ember: [R001]" in capsys.readouterr().err


def test_program_records_become_fusion_and_fallback_records():
    g = parse("graph forward(%x: f32[4]) {\n  %0 = exp(%x) : f32[4]   # m.py:7\n  return (%0)\n}\n")
    class FR:
        kind, message, nodes, source = "not_fused", "would recompute a reduction", ["%0"], "m.py:7"

    class Eager:
        op, reason, name = "exp", "no kernel", "e0_exp"
        node = g.find("%0")

    class Prog:
        graph, records, eager_steps = g, [FR()], [Eager()]
    with records.collect() as recs:
        records.emit_program_records(Prog(), fn="f")
    assert [(r.kind, r.code) for r in recs] == [("fusions", "U001"), ("fallbacks", "F001")]
    assert all(r.node.startswith("%0 = exp(%x)") and r.source == "m.py:7" for r in recs)
