"""The fp64 check (ember.compile(options={"check": "fp64"}), EMBER_CHECK=fp64) and `ember-ir bisect`:
a deliberately broken rewrite and a deliberately broken kernel are found and named."""
import numpy as np
import pytest

import ember
from ember import nn
from ember.codegen.llvm import ops as llvm_ops
from ember.compiler.check import CheckError, CheckedExecutor, load_repros, mismatch
from ember.passes import registry
from ember.tools import cli


def _add_becomes_sub(g):
    """A wrong rewrite: the first add of the graph turns into a sub."""
    for n in g.nodes():
        if n.op == "add":
            n.op = "sub"
            return True
    return False


@pytest.fixture
def broken_cse(monkeypatch):
    monkeypatch.setitem(registry.PASSES, "cse", registry.Pass("cse", _add_becomes_sub))


@pytest.fixture
def broken_exp(monkeypatch):
    monkeypatch.setenv("EMBER_CACHE", "0")      # never store the broken machine code
    monkeypatch.setitem(llvm_ops.LLVM_UNARY, "exp", lambda e, x, d: e.b.fadd(x, x))


def _f(a, b):
    return (a * b + 1.0).exp() * 2.0


def test_check_mode_passes_a_training_step_and_changes_nothing():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 4))
    x = ember.randn(5, 8)
    want = m(x)
    want.log_softmax(-1).sum().backward()
    grads = [p.grad.numpy().copy() for p in m.parameters()]
    m.zero_grad()
    cm = ember.compile(m, options={"check": "fp64"})
    y = cm(x)
    y.log_softmax(-1).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    for p, g in zip(m.parameters(), grads):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-4, atol=1e-5)
    cg = cm._compiled.variants[0]
    assert isinstance(cg.forward_exec, CheckedExecutor) and isinstance(cg.backward_exec, CheckedExecutor)


def test_environment_variable_turns_the_check_on(monkeypatch, broken_cse):
    monkeypatch.setenv("EMBER_CHECK", "fp64")
    cf = ember.compile(_f)
    with pytest.raises(CheckError):
        cf(ember.randn(4), ember.randn(4))
    with pytest.raises(ValueError, match="unknown check"):
        ember.compile(_f, options={"check": "fp128"})


def test_a_broken_rewrite_is_named(tmp_path, broken_cse, capsys):
    cf = ember.compile(_f, options={"check": "fp64"}, dump=tmp_path)
    with pytest.raises(CheckError) as info:
        cf(ember.randn(4), ember.randn(4))
    msg = str(info.value)
    assert "forward graph of _f" in msg and "after pass 6 `cse`" in msg and "wrong rewrite" in msg
    (name, graph, arrays), = load_repros(tmp_path)
    assert name.endswith("check_repro/forward.ir") and len(arrays) == 2
    assert cli.main(["bisect", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "first pass that changes the answer: 6 `cse`" in out


def test_a_broken_kernel_is_named_with_its_node(tmp_path, broken_exp, capsys):
    cf = ember.compile(_f, options={"check": "fp64"}, dump=tmp_path)
    with pytest.raises(CheckError) as info:
        cf(ember.randn(4), ember.randn(4))
    msg = str(info.value)
    assert "first diverging node: %" in msg and "= exp(" in msg and "test_check.py:" in msg
    assert "kernel k0_" in msg and "the llvm code generated for it is wrong" in msg
    assert cli.main(["bisect", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "every pass keeps the answer" in out and "= exp(" in out and "llvm code generated" in out
    assert cli.main(["bisect", str(tmp_path), "--runner", "numpy"]) == 1      # the kernel IR is right
    assert "agrees with the float64 reference: nothing to bisect" in capsys.readouterr().out


def test_bisect_a_script(tmp_path, broken_cse, capsys):
    script = tmp_path / "train.py"
    script.write_text("import ember\nf = ember.compile(lambda a, b: (a * b + 1.0).exp())\n"
                      "f(ember.randn(4), ember.randn(4))\nprint('finished')\n")
    assert cli.main(["bisect", str(script), "--out", str(tmp_path / "dump")]) == 1
    out = capsys.readouterr().out
    assert "finished" not in out and "first pass that changes the answer: 6 `cse`" in out


def test_bisect_without_repro_is_a_clean_error(tmp_path, capsys):
    assert cli.main(["bisect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no check repro" in err


def test_tolerances_follow_the_dtype():
    ref = np.array([1.0, 2.0, -3.0, np.nan, np.inf])
    assert mismatch(np.array([1.00001, 2.0, -3.0, np.nan, np.inf], np.float32), ref) is None
    assert "max abs error" in mismatch(np.array([1.01, 2.0, -3.0, np.nan, np.inf], np.float32), ref)
    assert mismatch(np.array([1.01, 2.0, -3.0, np.nan, np.inf], np.float16), ref) is None
    assert mismatch(np.array([1.0, 2.0, -3.0, 0.0, np.inf], np.float32), ref) is not None     # a lost NaN
    assert mismatch(np.array([1.0, 2.0, -3.0, np.nan, -np.inf], np.float32), ref) is not None  # an infinity
    assert mismatch(np.array([1, 2, 3]), np.array([1, 2, 4])).startswith("1 of 3 values differ")
