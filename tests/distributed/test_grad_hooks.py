"""Tensor.register_post_accumulate_grad_hook (what DistributedDataParallel builds on), against PyTorch."""
import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def run(lib, remove_after_first=False):
    w = lib.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    b = lib.tensor([1.0, -1.0], requires_grad=True)
    x = lib.tensor(np.ones((4, 3)))
    calls = []
    hw = w.register_post_accumulate_grad_hook(lambda p: calls.append(("w", p.grad.sum().item())))
    b.register_post_accumulate_grad_hook(lambda p: calls.append(("b", p.grad.sum().item())))
    for step in range(2):
        y = (x @ w.T + b) * (x @ w.T)          # w used twice: its hook still runs once per backward
        y.sum().backward()
        if remove_after_first and step == 0:
            hw.remove()
    lib.autograd.grad((x @ w.T).sum(), [w])    # autograd.grad accumulates nothing: no hook
    return calls


@pytest.mark.parametrize("remove", [False, True])
def test_post_accumulate_grad_hook_matches_torch(remove):
    assert run(ember, remove) == run(torch, remove)


def test_hook_sees_the_accumulated_grad_and_rejects_non_leaves():
    w = ember.ones(3, requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.tolist()))
    (w * 2).sum().backward()
    (w * 3).sum().backward()
    assert seen == [[2.0] * 3, [5.0] * 3]
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        ember.ones(2).register_post_accumulate_grad_hook(lambda p: None)
