"""One-line op tests against a reference (STYLE.md #3, tinygrad's helper_test_op).

    check("exp", lambda x: x.exp(), None, (3, 4))
    check("maximum", E.maximum, T.maximum, (3, 4), (4,))

feeds the same seeded inputs to ember and to torch and compares shape, dtype, values and then the
gradients of every float input (backward with a random upstream gradient). `torch_fn=None` reuses
`ember_fn` (method calls read the same in both). `T.name` is torch's function, or a stub that skips
the test cleanly when torch is not installed; `np_fn=` gives a numpy reference for the values that
is used instead of torch when torch is missing (gradients then come from `gradcheck`, which needs no
oracle: float64 central finite differences).

Inputs: a shape tuple makes a random array (uniform in [low, high) for floats, integers in
[low, high) for integer dtypes, coin flips for bool); a numpy array or Python scalar is passed as is
(numpy arrays become tensors on both sides, without grad when they are not floating point).
"""
from __future__ import annotations

import numpy as np
import pytest

import ember

try:
    import torch
except ImportError:  # the numpy fallback path
    torch = None

E = ember
HAVE_TORCH = torch is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="needs torch (the oracle) installed")


class _TorchProxy:
    """T.exp is torch.exp, or a function that skips the calling test when torch is missing."""

    def __getattr__(self, name):
        if torch is None:
            def skip(*a, **k):
                pytest.skip("torch not installed")
            return skip
        return getattr(torch, name)


T = _TorchProxy()

FLOATS = ("float32", "float64")
INTS = ("int64", "int32", "int16", "int8", "uint8")

# (rtol, atol) for forward values and for gradients, per dtype
TOL = {"float16": (1e-2, 1e-2), "float32": (1e-5, 1e-5), "float64": (1e-9, 1e-10)}
GRAD_TOL = {"float16": (2e-2, 2e-2), "float32": (1e-4, 1e-5), "float64": (1e-7, 1e-9)}


def to_torch_dtype(d):
    return getattr(torch, d.name if isinstance(d, E.dtype) else d)


def make_inputs(specs, dtype="float32", low=-2.0, high=2.0, seed=0):
    """Seeded numpy arrays (or scalars) for each spec."""
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        if isinstance(s, tuple):
            if dtype == "bool":
                a = rng.random(s) < 0.5
            elif dtype in INTS:
                lo = max(int(np.floor(low)), 0) if dtype == "uint8" else int(np.floor(low))
                a = rng.integers(lo, max(int(np.ceil(high)), lo + 1), size=s).astype(dtype)
            else:
                a = rng.uniform(low, high, size=s).astype(dtype)
            out.append(a)
        else:
            out.append(s)
    return out


def _ember_in(a, grad):
    if isinstance(a, np.ndarray):
        t = E.tensor(a)
        if grad and a.dtype.kind == "f":
            t.requires_grad_(True)
        return t
    return a


def _torch_in(a, grad):
    if isinstance(a, np.ndarray):
        t = torch.tensor(a)
        if grad and a.dtype.kind == "f":
            t.requires_grad_(True)
        return t
    return a


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [o for x in out for o in _flat(x)]
    return [out]


def _np(x):
    if isinstance(x, E.Tensor):
        return x.detach().numpy()
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def assert_close(actual, expected, rtol, atol, what=""):
    """Shape, dtype and values (NaNs in the same places)."""
    a, e = _np(actual), _np(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    assert a.dtype == e.dtype, f"{what}: dtype {a.dtype} != {e.dtype}"
    if a.dtype.kind == "f":
        np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol,
                                   equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(a, e, err_msg=what)


def check(name, ember_fn, torch_fn, *inputs, dtype="float32", grad=True, rtol=None, atol=None,
          grad_rtol=None, grad_atol=None, low=-2.0, high=2.0, seed=0, np_fn=None, forward_only_dtypes=()):
    """Compare ember_fn(*inputs) with torch_fn(*inputs): shape, dtype, values, then gradients."""
    torch_fn = torch_fn or ember_fn
    arrays = make_inputs(inputs, dtype, low, high, seed)

    def tol(out_dtype_name):  # tolerance of the output's dtype unless the test says otherwise
        r, a = TOL.get(out_dtype_name, (0, 0))
        return (r if rtol is None else rtol), (a if atol is None else atol)
    grad = grad and dtype in ("float32", "float64")

    e_in = [_ember_in(a, grad) for a in arrays]
    e_out = ember_fn(*e_in)
    e_flat = _flat(e_out)

    if torch is None:
        if np_fn is None:
            pytest.skip(f"{name}: torch not installed and no numpy reference")
        with np.errstate(all="ignore"):   # the reference may overflow where ember must not warn
            ref = _flat(np_fn(*arrays))
        assert len(ref) == len(e_flat), f"{name}: {len(e_flat)} outputs, reference has {len(ref)}"
        for i, (a, r) in enumerate(zip(e_flat, ref)):
            r = np.asarray(r)
            assert_close(a, r.astype(_np(a).dtype) if r.dtype.kind == _np(a).dtype.kind else r,
                         *tol(_np(a).dtype.name), f"{name} output {i}")
        if grad:
            gradcheck(ember_fn, arrays)
        return e_out

    t_in = [_torch_in(a, grad) for a in arrays]
    t_out = torch_fn(*t_in)
    t_flat = _flat(t_out)
    assert len(e_flat) == len(t_flat), f"{name}: {len(e_flat)} outputs, torch has {len(t_flat)}"
    for i, (a, r) in enumerate(zip(e_flat, t_flat)):
        if isinstance(r, torch.Tensor):
            assert isinstance(a, E.Tensor), f"{name} output {i}: expected a Tensor, got {type(a).__name__}"
            assert a.dtype.name == str(r.dtype).split(".")[1], f"{name} output {i}: dtype {a.dtype} != {r.dtype}"
            assert tuple(a.shape) == tuple(r.shape), f"{name} output {i}: shape {tuple(a.shape)} != {tuple(r.shape)}"
            assert_close(a, r, *tol(a.dtype.name), f"{name} output {i}")
        else:
            assert type(a) is type(r) and (a == r or (a != a and r != r)), f"{name} output {i}: {a!r} != {r!r}"

    if not grad:
        return e_out
    e_leaves = [t for t in e_in if isinstance(t, E.Tensor) and t.requires_grad]
    t_leaves = [t for t in t_in if isinstance(t, torch.Tensor) and t.requires_grad]
    if not e_leaves:
        return e_out
    pairs = [(a, r) for a, r in zip(e_flat, t_flat)
             if isinstance(r, torch.Tensor) and r.requires_grad and r.dtype.is_floating_point]
    if not pairs:
        assert not any(isinstance(a, E.Tensor) and a.requires_grad for a in e_flat
                       if a.dtype.is_floating_point), f"{name}: ember output requires grad, torch's does not"
        return e_out
    rng = np.random.default_rng(seed + 1)
    e_loss, t_loss = 0, 0
    for a, r in pairs:
        assert a.requires_grad, f"{name}: ember output does not require grad"
        g = rng.uniform(-1, 1, size=tuple(r.shape)).astype(str(r.dtype).split(".")[1])
        e_loss = e_loss + (a * E.tensor(g)).sum()
        t_loss = t_loss + (r * torch.tensor(g)).sum()
    e_g = ember.autograd.grad(e_loss, e_leaves, allow_unused=True)
    t_g = torch.autograd.grad(t_loss, t_leaves, allow_unused=True)
    gr, ga = GRAD_TOL[dtype]
    gr = gr if grad_rtol is None else grad_rtol
    ga = ga if grad_atol is None else grad_atol
    for i, (a, r) in enumerate(zip(e_g, t_g)):
        if r is None:
            assert a is None or not np.any(_np(a)), f"{name}: grad {i} should be zero/None"
            continue
        if a is None and r.numel() == 0:
            continue
        assert a is not None, f"{name}: grad of input {i} is None, torch has one"
        assert_close(a, r, gr, ga, f"{name} grad of input {i}")
    return e_out


def gradcheck(fn, inputs, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0):
    """Analytic gradients of sum(g * fn(*inputs)) against central finite differences in float64.
    `inputs`: numpy arrays (float ones are differentiated) or scalars. Needs no oracle."""
    arrays = [np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
              for a in inputs]
    xs = [E.tensor(a, requires_grad=True) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
          else (E.tensor(a) if isinstance(a, np.ndarray) else a) for a in arrays]
    outs = [o for o in _flat(fn(*xs)) if isinstance(o, E.Tensor) and o.dtype.is_floating_point]
    rng = np.random.default_rng(seed)
    gs = [rng.uniform(-1, 1, size=tuple(o.shape)) for o in outs]

    def scalar(*vals):
        with E.no_grad():
            os_ = [o for o in _flat(fn(*vals)) if isinstance(o, E.Tensor) and o.dtype.is_floating_point]
            return float(sum((o.double().numpy() * g).sum() for o, g in zip(os_, gs)))

    loss = sum((o.double() * E.tensor(g)).sum() for o, g in zip(outs, gs))
    leaves = [x for x in xs if isinstance(x, E.Tensor) and x.requires_grad]
    analytic = E.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
    k = 0
    for i, a in enumerate(arrays):
        if not (isinstance(a, np.ndarray) and a.dtype.kind == "f"):
            continue
        num = np.zeros_like(a)
        for j in range(a.size):
            def at(delta):
                b = a.copy()
                b.reshape(-1)[j] += delta
                vals = [E.tensor(b) if m == i else x for m, x in enumerate(xs)]
                return scalar(*vals)
            num.reshape(-1)[j] = (at(eps) - at(-eps)) / (2 * eps)
        np.testing.assert_allclose(analytic[k].numpy(), num, rtol=rtol, atol=atol,
                                   err_msg=f"gradcheck: input {i}")
        k += 1


# PyTorch computes inf/nan silently; an ember kernel that lets numpy warn is a bug. Test modules
# set `pytestmark = NUMPY_WARNINGS_ARE_ERRORS` (no conftest.py here: tests/codegen imports its own
# conftest by module name, and a second conftest module would shadow it).
NUMPY_WARNINGS_ARE_ERRORS = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.fixture
def grad_mode_restored():
    """Fails a test that leaves grad mode off, instead of breaking the tests after it."""
    yield
    enabled = E.is_grad_enabled()
    E.set_grad_enabled(True)
    assert enabled, "grad mode left disabled"
