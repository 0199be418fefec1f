"""`ember-ir` end to end: run a script with dumping, show, opt, codegen, diff, and clean errors."""
import json

import pytest

from ember.tools import cli

from ir_tool_helpers import ember_ir, script_line


def _main(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _clean_error(rc, err, *needles):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("ember-ir: ")
    for n in needles:
        assert n in lines[0], lines[0]


# ------------------------------------------------------------------------------------- run
def test_run_writes_dump_and_summary(dumped):
    script, out, proc = dumped
    assert proc.returncode == 0, proc.stderr
    assert "script args: ['a1']" in proc.stdout            # sys.argv set for the script
    for f in ("report.json", "index.html", "mlp_loss_0/00_captured.ir", "mlp_loss_0/bwd_00_captured.ir",
              "mlp_loss_0/guards.txt", "mlp_loss_0/timings.txt", "mlp_loss_0/report.json",
              "mlp_loss_0/index.html", "branchy_0/00_captured.ir", "branchy_0/records.txt"):
        assert (out / f).is_file(), f
    # the summary table: graphs, ops, breaks, compile time, cache hits
    head = next(line for line in proc.stdout.splitlines() if line.startswith("#"))
    for col in ("graph", "ops", "kernels", "breaks", "fallbacks", "compile ms", "cache hits"):
        assert col in head
    assert "mlp_loss_0" in proc.stdout and "branchy_0" in proc.stdout


def test_nodes_carry_script_lines(dumped):
    script, out, _ = dumped
    fwd = (out / "mlp_loss_0/00_captured.ir").read_text()
    assert f"# tiny_train.py:{script_line('model')}" in fwd
    assert f"# tiny_train.py:{script_line('loss')}" in fwd
    assert "tiny_train.py:" in (out / "mlp_loss_0/bwd_00_captured.ir").read_text()


def test_break_reported_with_line_and_node(dumped):
    script, out, proc = dumped
    where = f"tiny_train.py:{script_line('branch')}"
    assert f"[B001] branchy at {where}" in proc.stdout
    rep = json.loads((out / "branchy_0/report.json").read_text())
    assert rep["status"] == "break"
    (rec,) = [r for r in rep["records"] if r["kind"] == "breaks"]
    assert rec["code"] == "B001" and rec["source"] == where and rec["hint"]
    assert rec["node"].startswith("%") and "gt(" in rec["node"]
    # the partial graph traced up to the break is dumped, and the page marks the break
    assert "gt(" in (out / "branchy_0/00_captured.ir").read_text()
    assert "graph break" in (out / "branchy_0/index.html").read_text()
    top = json.loads((out / "report.json").read_text())
    assert [g["status"] for g in top["graphs"]] == ["compiled", "break"]


def test_report_lists_missing_stages_with_reasons(dumped):
    _, out, _ = dumped
    rep = json.loads((out / "mlp_loss_0/report.json").read_text())
    files = {s["file"] for s in rep["stages"]}
    assert {"00_captured.ir", "bwd_00_captured.ir", "guards.txt"} <= files
    for m in rep["missing"]:
        assert m["reason"]                                   # nothing missing without a reason
    have = {s["stage"] for s in rep["stages"] if s["which"] == "forward"}
    missing = {m["stage"] for m in rep["missing"]}
    for stage in ("kernels", "llvm", "executor"):
        assert stage in have or stage in missing
    assert rep["timings"]["trace"] > 0 and rep["graph"]["ops"] > 0


def test_show(dumped, capsys):
    _, out, _ = dumped
    rc, text, _ = _main(capsys, "show", out)
    assert rc == 0 and "mlp_loss_0" in text and "total" in text
    rc, text, _ = _main(capsys, "show", out, "--graph", "0")
    assert rc == 0 and text.startswith("graph forward(")
    rc, text, _ = _main(capsys, "show", out, "--graph", "mlp_loss_0", "--backward")
    assert rc == 0 and text.startswith("graph backward(")
    rc, text, _ = _main(capsys, "show", out / "mlp_loss_0")
    assert rc == 0 and "stages:" in text and "00_captured.ir" in text
    rc, _, err = _main(capsys, "show", out, "--graph", "7")
    _clean_error(rc, err, "no graph '7'")


# ------------------------------------------------------------------------------ opt / codegen
def test_opt_on_dumped_ir(dumped, capsys):
    _, out, _ = dumped
    ir = out / "mlp_loss_0/00_captured.ir"
    rc, text, err = _main(capsys, "opt", ir, "--passes", "verify,dce")
    assert rc == 0, err
    from ember.ir import parse
    assert str(parse(text)) == text and "tiny_train.py:" in text


def test_opt_runs_registered_passes(tmp_path, capsys):
    pytest.importorskip("ember.passes.manager")
    f = tmp_path / "dup.ir"
    f.write_text("graph g(%x: f32[4]) {\n  %0 = exp(%x) : f32[4]\n  %1 = exp(%x) : f32[4]\n"
                 "  %2 = add(%0, %1) : f32[4]\n  return (%2)\n}\n")
    rc, text, err = _main(capsys, "opt", f, "--passes", "cse,dce")
    assert rc == 0, err
    assert text.count("exp(") == 1


def test_codegen_kernel_ir_file(tmp_path, capsys):
    from ember.ir import dtypes as dt
    from ember.ir.kernel import Binary, Buf, Kernel, Load, Store, Unary, o
    x, y = Buf("x", (64,), dt.float32), Buf("y", (64,), dt.float32)
    k = Kernel([x], [y], outer=(64,), stores=[Store(y, (o(0),), Unary("exp", Binary("mul", Load(x, (o(0),)),
                                                                                       Load(x, (o(0),)))))])
    f = tmp_path / "k.kir"
    f.write_text(str(k))
    rc, text, err = _main(capsys, "codegen", f, "--target", "llvm")
    assert rc == 0, err
    assert f"define i32 @\"{k.name}\"(" in text


def test_codegen_dumped_ir(dumped, capsys):
    pytest.importorskip("ember.passes.fusion")
    _, out, _ = dumped
    rc, text, err = _main(capsys, "codegen", out / "mlp_loss_0/00_captured.ir", "--target", "llvm")
    assert rc == 0, err
    assert "define i32 @\"" in text


# ----------------------------------------------------------------------------------------- diff
def test_diff_shows_what_a_pass_changed(tmp_path, capsys):
    a = tmp_path / "a.ir"
    a.write_text("graph g(%x: f32[4]) {\n  %0 = neg(%x) : f32[4]   # m.py:1\n"
                 "  %1 = exp(%x) : f32[4]   # m.py:2\n  return (%1)\n}\n")
    b = tmp_path / "b.ir"
    rc, _, err = _main(capsys, "opt", a, "--passes", "dce", "-o", b)
    assert rc == 0, err
    rc, text, _ = _main(capsys, "diff", a, b)
    assert rc == 1
    assert "- %0 = neg(%x)" in text and "1 removed, 0 added, 1 unchanged (1 renumbered)" in text
    rc, text, _ = _main(capsys, "diff", b, b)
    assert rc == 0 and "0 removed, 0 added" in text


# --------------------------------------------------------------------------------- bad input
def test_clean_errors(tmp_path, capsys):
    bad = tmp_path / "bad.ir"
    bad.write_text("graph g(%x: f32[4]) {\n  %0 = exp(%nope) : f32[4]\n  return (%0)\n}\n")
    rc, _, err = _main(capsys, "opt", bad, "--passes", "dce")
    _clean_error(rc, err, f"{bad}:2:12:", "%nope")
    good = tmp_path / "good.ir"
    good.write_text("graph g(%x: f32[4]) {\n  %0 = exp(%x) : f32[4]\n  return (%0)\n}\n")
    rc, _, err = _main(capsys, "opt", good, "--passes", "dce,frobnicate")
    _clean_error(rc, err, "unknown pass 'frobnicate'")
    for args in (("opt", tmp_path / "nope.ir"), ("codegen", tmp_path / "nope.ir"),
                 ("diff", good, tmp_path / "nope.ir"), ("show", tmp_path / "nope")):
        rc, _, err = _main(capsys, *args)
        _clean_error(rc, err, "nope")
    rc, _, err = _main(capsys, "show", tmp_path)
    _clean_error(rc, err, "not an ember dump")
    rc, _, err = _main(capsys, "codegen", good, "--target", "ptx")
    _clean_error(rc, err, "invalid choice")
    badk = tmp_path / "bad.kir"
    badk.write_text("kernel k0_exp(x: f32[4]) -> (y: f32[4]) outer=[4] inner=[] {\n  %0 = lode x[o0] : f32\n}\n")
    rc, _, err = _main(capsys, "codegen", badk)
    _clean_error(rc, err, "bad.kir:")


def test_clean_errors_in_a_subprocess(tmp_path):
    bad = tmp_path / "bad.ir"
    bad.write_text("graph g(%x: f32[4]) {\n  %0 = exp(%x) : f32[4] @@\n}\n")
    for args in (("opt", bad), ("run", tmp_path / "missing.py", "--out", tmp_path / "d")):
        p = ember_ir(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
