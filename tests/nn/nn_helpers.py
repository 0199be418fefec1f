"""Compare an ember nn layer (or functional) with PyTorch's on the same weights and inputs.

    check_module(nn.Conv2d(3, 4, 3, padding=1), (2, 3, 8, 8))

builds the torch twin from the same constructor call (`torch.nn.<Name>(*args, **kwargs)`), copies
ember's state_dict into it (so the keys must match), runs both on the same seeded input, and compares
the outputs, then the gradients of the input and of every parameter after a backward pass with the
same random upstream gradient.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-5, 1e-5
GRTOL, GATOL = 1e-4, 1e-5


def rand(shape, seed=0, low=-2.0, high=2.0, dtype="float32"):
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)


def to_torch(t):
    return torch.tensor(t.detach().numpy().copy())


def copy_state(em, tm):
    sd = {k: torch.tensor(v.numpy().copy()) for k, v in em.state_dict().items()}
    tm.load_state_dict(sd, strict=True)


def close(a, b, rtol=RTOL, atol=ATOL, what=""):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch's {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def twin(em_module, torch_module=None):
    """torch's module of the same class and constructor arguments (or the given one)."""
    if torch_module is None:
        raise ValueError("give the torch twin")
    copy_state(em_module, torch_module)
    return torch_module


def run_pair(em, tm, inputs, out_index=None, grad=True, rtol=RTOL, atol=ATOL, grtol=GRTOL, gatol=GATOL,
             seed=1):
    """Run em and tm on the same numpy inputs; compare outputs and all gradients."""
    copy_state(em, tm)
    ein = [ember.tensor(a, requires_grad=grad and a.dtype.kind == "f") if isinstance(a, np.ndarray) else a
           for a in inputs]
    tin = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") if isinstance(a, np.ndarray) else a
           for a in inputs]
    eo, to = em(*ein), tm(*tin)
    if out_index is not None:
        eo, to = eo[out_index], to[out_index]
    close(eo, to, rtol, atol, "forward")
    if not grad:
        return eo, to
    g = rand(tuple(to.shape), seed=seed)
    eo.backward(ember.tensor(g))
    to.backward(torch.tensor(g))
    for i, (a, b) in enumerate(zip(ein, tin)):
        if isinstance(a, ember.Tensor) and a.requires_grad:
            close(a.grad, b.grad, grtol, gatol, f"grad of input {i}")
    tparams = dict(tm.named_parameters())
    for name, p in em.named_parameters():
        tp = tparams[name]
        if tp.grad is None:
            assert p.grad is None or not np.any(p.grad.numpy()), f"{name}: torch has no grad"
            continue
        close(p.grad, tp.grad, grtol, gatol, f"grad of {name}")
    return eo, to


def run_fn(efn, tfn, *inputs, grad=True, rtol=RTOL, atol=ATOL, grtol=GRTOL, gatol=GATOL, seed=1, grad_of=None,
           **kwargs):
    """Same as run_pair for functions: numpy arrays become tensors (float ones require grad, or only
    the inputs whose indices are in grad_of)."""
    def req(i, a):
        return grad and a.dtype.kind == "f" and (grad_of is None or i in grad_of)
    ein = [ember.tensor(a, requires_grad=req(i, a)) if isinstance(a, np.ndarray) else a for i, a in enumerate(inputs)]
    tin = [torch.tensor(a, requires_grad=req(i, a)) if isinstance(a, np.ndarray) else a for i, a in enumerate(inputs)]
    eo, to = efn(*ein, **kwargs), tfn(*tin, **kwargs)
    close(eo, to, rtol, atol, "forward")
    if not grad:
        return eo, to
    g = rand(tuple(to.shape), seed=seed)
    eo.backward(ember.tensor(g))
    to.backward(torch.tensor(g))
    for i, (a, b) in enumerate(zip(ein, tin)):
        if isinstance(a, ember.Tensor) and a.requires_grad:
            assert b.grad is not None
            close(a.grad, b.grad, grtol, gatol, f"grad of input {i}")
    return eo, to


PATHS = ["generated", "numpy"]      # the two ways an eager op with a generated kernel can run


@contextlib.contextmanager
def kernels(path):
    """Run eager ops through the generated kernels (for every size) or through their numpy fallback."""
    from ember.kernels import generated
    if path == "generated" and generated.COMPILE is None:
        pytest.skip("no code generator")
    old = generated.MIN_SIZE
    generated.MIN_SIZE = 0 if path == "generated" else 1 << 60
    try:
        yield
    finally:
        generated.MIN_SIZE = old
