"""Aliasing in compiled code behaves as in eager: an in-place change to a value the compiled backward
saved fails backward with PyTorch's "modified by an inplace operation" error, and inputs that are
overlapping views of one tensor, with an in-place write inside, never read stale values."""
import numpy as np
import pytest

import ember
from ember import diagnostics as records

INPLACE = "modified by an inplace operation"


def _exp(x, w):
    return (x * w).exp()                    # exp saves its output: the user's result


def _tanh_view(x, w):
    return (x * w).tanh().reshape(-1)       # the result is a view of the saved tanh output


def _square(x, w):
    return (x * w) * x                      # mul saves its inputs: x and w themselves


def _modify_output(x, w, y):
    y.add_(1)


def _modify_output_view(x, w, y):
    y[:2].mul_(2)


def _modify_input(x, w, y):
    with ember.no_grad():
        x.mul_(2)


def _modify_param(x, w, y):                 # an optimizer step before backward
    with ember.no_grad():
        w.sub_(0.1)


CASES = [(_exp, _modify_output), (_exp, _modify_output_view), (_tanh_view, _modify_output),
         (_tanh_view, _modify_output_view), (_square, _modify_input), (_square, _modify_param)]


def _run(f, change, compiled, backend):
    x = ember.randn(3, 4, requires_grad=True)
    w = ember.randn(3, 4, requires_grad=True)
    fn = ember.compile(f, backend=backend) if compiled else f
    y = fn(x, w)
    change(x, w, y)
    y.sum().backward()


@pytest.mark.parametrize("backend", ["eager", "llvm"])
@pytest.mark.parametrize("f, change", CASES, ids=[f"{f.__name__}-{c.__name__}" for f, c in CASES])
def test_inplace_change_of_saved_value_fails_backward_like_eager(f, change, backend):
    with pytest.raises(RuntimeError, match=INPLACE):
        _run(f, change, compiled=False, backend=backend)     # what eager does: the specification
    with pytest.raises(RuntimeError, match=INPLACE):
        _run(f, change, compiled=True, backend=backend)


@pytest.mark.parametrize("backend", ["eager", "llvm"])
def test_inplace_change_of_unsaved_output_keeps_gradients_right(backend):
    def f(x, w):
        return (x * w).sum(1), (x @ w.T).relu()     # sum saves nothing

    x, w = ember.randn(3, 4), ember.randn(3, 4, requires_grad=True)
    grads = []
    for fn in (f, ember.compile(f, backend=backend)):
        w.grad = None
        a, b = fn(x, w)
        a.mul_(3)
        (a.sum() + b.sum()).backward()
        grads.append(w.grad.numpy().copy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def _write_then_read(x, y):
    x.add_(1)
    return y * 2


@pytest.mark.parametrize("backend", ["eager", "llvm"])
def test_overlapping_input_views_with_inplace_write_run_eagerly(backend):
    cf = ember.compile(_write_then_read, backend=backend)
    base0 = ember.arange(6).float()
    a, b = ember.arange(6).float(), ember.arange(6).float()
    cf(a[0:3], a[3:6])                              # disjoint views: the compiled graph runs
    with records.collect() as recs:
        y = cf(b[0:3], b[2:5])                      # overlap: y must see x's write
    expect = _write_then_read(base0[0:3], base0[2:5])
    np.testing.assert_allclose(y.numpy(), expect.numpy())
    np.testing.assert_allclose(b.numpy(), base0.numpy())
    assert [r.code for r in recs if r.kind == "fallbacks"] == ["F003"]
    with records.collect() as recs:
        same = ember.ones(3)
        y = cf(same, same)                          # the very same tensor twice
    np.testing.assert_allclose(y.numpy(), [4.0, 4.0, 4.0])
    assert [r.code for r in recs if r.kind == "fallbacks"] == ["F003"]
    assert cf.stats["compiles"] == 1
