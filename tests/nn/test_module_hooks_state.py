"""Module backward hooks (full and pre), forward hooks with always_call, and get/set_extra_state in
state_dict -- against torch.nn.Module."""
import io

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _r(t):
    return None if t is None else np.round(t.detach().numpy().astype(np.float64), 5).tolist()


def _run(lib):
    """The same script under either library: returns what its hooks saw and the gradients."""
    nn = lib.nn
    log = []
    lin = nn.Linear(3, 2)
    with lib.no_grad():
        lin.weight.copy_(lib.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]]))
        lin.bias.copy_(lib.tensor([0.1, -0.2]))
    h = lin.register_full_backward_hook(lambda m, gi, go: log.append(("full", [_r(g) for g in gi], [_r(g) for g in go])))
    x = lib.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    (lin(x) * lib.tensor([2.0, 3.0])).sum().backward()
    log.append(("x.grad", _r(x.grad)))
    (lin(lib.tensor([[1.0, 2.0, 3.0]])) * 2).sum().backward()         # no input needs a gradient
    h.remove()
    lin.register_full_backward_hook(lambda m, gi, go: (gi[0] * 10,))  # a replaced grad_input
    x.grad = None
    lin(x).sum().backward()
    log.append(("replaced", _r(x.grad)))
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    with lib.no_grad():
        for p in seq.parameters():
            p.fill_(0.5)
    seq[1].register_full_backward_pre_hook(lambda m, go: (go[0] * 0.5,))
    seq[2].register_full_backward_hook(lambda m, gi, go: log.append(("l2", [_r(g) for g in gi], [_r(g) for g in go])))
    seq(lib.ones(2, 3)).sum().backward()
    log.append(("pre", _r(seq[0].weight.grad), _r(seq[2].weight.grad)))

    class Two(nn.Module):
        def forward(self, a, b, k=3):
            return a * b, a + k
    two = Two()
    two.register_full_backward_hook(lambda m, gi, go: log.append(("two", [_r(g) for g in gi], [_r(g) for g in go])))
    a = lib.tensor([1.0, 2.0], requires_grad=True)
    o1, o2 = two(a, lib.tensor([3.0, 4.0]))
    (o1.sum() + 2 * o2.sum()).backward()
    log.append(("a.grad", _r(a.grad)))
    return log


def test_backward_hooks_match_torch():
    assert _run(ember) == _run(torch)


def test_forward_hook_always_call_runs_when_forward_raises():
    for lib in (ember, torch):
        m, called = lib.nn.Linear(2, 2), []
        m.register_forward_hook(lambda mod, i, o: called.append(o), always_call=True)
        m.register_forward_hook(lambda mod, i, o: called.append("normal"))
        with pytest.raises(RuntimeError):
            m(lib.ones(3))
        assert called == [None]


def _extra(lib):
    nn = lib.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.v = 5

        def get_extra_state(self):
            return {"v": self.v}

        def set_extra_state(self, state):
            self.v = state["v"]
    out = []
    m = nn.Sequential(M(), nn.ReLU())
    m[0].v = 7
    sd = m.state_dict()
    out.append(sorted(sd))
    fresh = nn.Sequential(M(), nn.ReLU())
    fresh.load_state_dict(sd)
    out.append(fresh[0].v)
    buf = io.BytesIO()
    lib.save(sd, buf)
    buf.seek(0)
    out.append(lib.load(buf, weights_only=False)["0._extra_state"])
    assigned = nn.Sequential(M(), nn.ReLU())
    assigned.load_state_dict(sd, assign=True)
    out.append(assigned[0].v)
    del sd["0._extra_state"]
    with pytest.raises(RuntimeError, match="Missing key"):
        nn.Sequential(M(), nn.ReLU()).load_state_dict(sd)
    keys = nn.Sequential(M(), nn.ReLU()).load_state_dict(sd, strict=False)
    out.append(list(keys.missing_keys))
    return out


def test_extra_state_in_state_dict_matches_torch():
    assert _extra(ember) == _extra(torch)
