"""Window ops as compiled: convolution (batch-last columns), max / avg pooling (one slice per window
offset), and the fold that their gradients become (one wrapped-index term per offset) -- on random
window shapes, strides, paddings and dilations:

  * compiled program == the traced graph run op by op (values and gradients), on the numpy kernel
    evaluator and on LLVM: the lowering (decompose, fusion, codegen) is exact;
  * ember.compile == eager (values and gradients): the traced formulation computes what the eager
    one does, first-maximum rule of max pooling included.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import ember
from ember.nn import functional as F

from helpers import check_train_step

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def window_cases(draw, dims=2):
    k = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    s = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    d = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    p = tuple(draw(st.integers(0, (di * (ki - 1) + 1) // 2)) for ki, di in zip(k, d))
    size = tuple(draw(st.integers(max(1, di * (ki - 1) + 1 - 2 * pi), 9)) for ki, di, pi in zip(k, d, p))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return n, c, size, k, s, p, d


def _tensors(rng, *shapes):
    return [ember.from_numpy(rng.standard_normal(sh).astype(np.float32)).requires_grad_() for sh in shapes]


def _conv_case(case, groups=1):
    n, c, size, k, s, p, d = case
    c, o = c * groups, 2 * groups
    rng = np.random.default_rng(sum(size) + sum(k))
    x, w, b = _tensors(rng, (n, c) + size, (o, c // groups) + k, (o,))
    return (lambda x, w, b: F.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=groups)), [x, w, b]


def _pool_case(case, how, ceil_mode=False):
    n, c, size, k, s, p, d = case
    rng = np.random.default_rng(sum(size) + sum(k) + 1)
    x, = _tensors(rng, (n, c) + size)
    if how == "max":
        return (lambda x: F.max_pool2d(x, k, s, p, d, ceil_mode=ceil_mode)), [x]
    return (lambda x: F.avg_pool2d(x, k, s, p, ceil_mode=ceil_mode, count_include_pad=False)), [x]


def _fold_case(case):
    n, c, size, k, s, p, d = case
    oh, ow = ((sz + 2 * pi - di * (ki - 1) - 1) // si + 1 for sz, ki, si, pi, di in zip(size, k, s, p, d))
    rng = np.random.default_rng(sum(size) + sum(k) + 2)
    cols, = _tensors(rng, (n, c * k[0] * k[1], oh * ow))
    return (lambda t: F.fold(t, size, k, dilation=d, padding=p, stride=s)), [cols]


def _pool_ok(case):
    n, c, size, k, s, p, d = case
    return all(pi <= ki // 2 for pi, ki in zip(p, k))      # PyTorch's rule for pooling padding


# ----------------------------------------------------------------------- lowering is exact
@settings(max_examples=12, **SETTINGS)
@given(window_cases(), st.sampled_from(["conv", "max", "avg", "fold"]))
def test_lowering_matches_the_graph_numpy(case, what):
    _check_lowering(case, what, "numpy")


@settings(max_examples=4, **SETTINGS)
@given(window_cases(), st.sampled_from(["conv", "max", "avg", "fold"]))
def test_lowering_matches_the_graph_llvm(case, what):
    _check_lowering(case, what, "llvm")


def _check_lowering(case, what, runner):
    if what in ("max", "avg") and not _pool_ok(case):
        return
    fn, args = {"conv": _conv_case, "fold": _fold_case}.get(what, lambda c: _pool_case(c, what))(case)
    check_train_step(fn, args, runner=runner)


# ------------------------------------------------------------------- compiled equals eager
def _grads(fn, args):
    for a in args:
        a.grad = None
    out = fn(*args)
    out.backward(ember.from_numpy(np.linspace(-1, 1, out.numel(), dtype=np.float32).reshape(tuple(out.shape))))
    return [out.detach().numpy().copy()] + [a.grad.numpy().copy() for a in args]


def _check_compiled_equals_eager(fn, args, rtol=1e-4, atol=1e-5):
    want = _grads(fn, args)
    got = _grads(ember.compile(fn), args)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"result {i}")


@settings(max_examples=6, **SETTINGS)
@given(window_cases(), st.sampled_from(["conv", "conv_groups", "max", "max_ceil", "avg", "fold"]))
def test_compiled_equals_eager(case, what):
    if what.startswith(("max", "avg")) and not _pool_ok(case):
        return
    if what == "conv":
        fn, args = _conv_case(case)
    elif what == "conv_groups":
        fn, args = _conv_case(case, groups=2)
    elif what == "fold":
        fn, args = _fold_case(case)
    else:
        fn, args = _pool_case(case, what[:3], ceil_mode=what.endswith("ceil"))
    _check_compiled_equals_eager(fn, args)


def _check_max_pool_against_eager_and_torch(x):
    """Compiled max pooling = eager (values and gradients) over three window shapes, and the compiled
    gradient = torch's, bit for bit."""
    t = ember.from_numpy(x).requires_grad_()
    for k, s in ((2, 2), (3, 2), (3, 1)):
        _check_compiled_equals_eager(lambda a, k=k, s=s: F.max_pool2d(a, k, s), [t])
    torch = pytest.importorskip("torch")
    tt = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.max_pool2d(tt, 3, 2).sum().backward()
    t.grad = None
    ember.compile(lambda a: F.max_pool2d(a, 3, 2))(t).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), tt.grad.numpy())


def test_max_pool_ties_and_nan_follow_pytorch():
    """The first maximum of a window gets the gradient (PyTorch's rule); NaN wins the window."""
    x = np.zeros((2, 3, 6, 6), np.float32)        # all ties
    x[0, 0, 2, 3] = np.nan
    _check_max_pool_against_eager_and_torch(x)


def test_max_pool_several_nans_in_a_window_the_last_wins():
    """Among several NaNs of a window the last one takes the gradient, compiled as eager (PyTorch's CPU
    rule, `val > maxval || isnan(val)`); the compiled lowering used to keep the first."""
    x = np.arange(2 * 2 * 6 * 6, dtype=np.float32).reshape(2, 2, 6, 6)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = np.nan          # one window, two NaNs
    x[1, 1, 2, 3] = x[1, 1, 3, 2] = x[1, 1, 4, 4] = np.nan
    _check_max_pool_against_eager_and_torch(x)


@pytest.mark.parametrize("nd", [1, 3])
def test_other_ranks_compiled_equals_eager(nd):
    rng = np.random.default_rng(nd)
    shape = (2, 3) + (7,) * nd
    x, = _tensors(rng, shape)
    w, b = _tensors(rng, (4, 3) + (3,) * nd, (4,))
    conv = {1: F.conv1d, 3: F.conv3d}[nd]
    mp = {1: F.max_pool1d, 3: F.max_pool3d}[nd]
    ap = {1: F.avg_pool1d, 3: F.avg_pool3d}[nd]
    _check_compiled_equals_eager(lambda x, w, b: mp(conv(x, w, b, padding=1, stride=2), 2), [x, w, b])
    _check_compiled_equals_eager(lambda x: ap(x, 3, 2, 1), [x])


def test_unbatched_inputs_compiled_equals_eager():
    rng = np.random.default_rng(5)
    x, w = _tensors(rng, (3, 8, 8), (2, 3, 3, 3))
    _check_compiled_equals_eager(lambda x, w: F.max_pool2d(F.conv2d(x, w, padding=1), 2), [x, w])
    _check_compiled_equals_eager(lambda x: F.avg_pool2d(x, 3, 2, 1), [x])
