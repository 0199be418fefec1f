"""nn.Module behaviour against PyTorch: registration, iteration, state_dict keys and errors, hooks,
train/eval, to(), repr (print(model) must read exactly like PyTorch's), containers."""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest

import ember
import ember.nn as nn
from nn_helpers import rand, run_pair, torch

tnn = torch.nn


def build(lib):
    n, F = lib.nn, lib.nn.functional

    class Net(n.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = n.Conv2d(1, 10, kernel_size=5)
            self.conv2 = n.Conv2d(10, 20, kernel_size=5)
            self.conv2_drop = n.Dropout2d()
            self.bn = n.BatchNorm2d(20)
            self.fc1 = n.Linear(320, 50)
            self.fc2 = n.Linear(50, 10)
            self.head = n.Sequential(n.ReLU(), n.Dropout(0.1), n.Linear(10, 10, bias=False))
            self.blocks = n.ModuleList([n.Linear(4, 4) for _ in range(3)] + [n.Linear(4, 2)])
            self.dict = n.ModuleDict({"a": n.LayerNorm(4), "b": n.GELU(approximate="tanh")})
            self.emb = n.Embedding(7, 3, padding_idx=1)
            self.mha = n.MultiheadAttention(8, 2)
            self.misc = n.Sequential(n.MaxPool2d(2), n.AvgPool2d(3, 1, 1), n.AdaptiveAvgPool2d((1, 1)),
                                     n.Flatten(), n.LeakyReLU(0.2), n.Softplus(), n.GroupNorm(2, 4),
                                     n.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
                                     n.Conv2d(3, 6, 3, padding="same", groups=3, bias=False,
                                              padding_mode="reflect"),
                                     n.Conv1d(2, 2, 3, stride=2, dilation=2), n.Softmax(dim=1),
                                     n.LogSoftmax(dim=-1), n.ELU(alpha=0.5), n.Hardtanh(-2, 2),
                                     n.ReLU(inplace=True), n.Identity(), n.Unflatten(1, (2, 5)),
                                     n.BatchNorm1d(4, momentum=None, affine=False), n.Dropout2d(0.2),
                                     n.SiLU(), n.Mish(), n.Tanh(), n.Sigmoid(), n.ReLU6(), n.Embedding(5, 2))

        def forward(self, x):
            x = F.relu(F.max_pool2d(self.conv1(x), 2))
            x = F.relu(F.max_pool2d(self.conv2_drop(self.bn(self.conv2(x))), 2))
            x = x.view(-1, 320)
            return self.head(self.fc2(F.relu(self.fc1(x))))
    return Net()


def test_print_model_matches_torch():
    e, t = build(ember), build(torch)
    assert repr(e) == repr(t)
    assert str(nn.Sequential()) == str(tnn.Sequential())
    assert repr(nn.ModuleList()) == repr(tnn.ModuleList())


def test_state_dict_keys_and_order_match_torch():
    e, t = build(ember), build(torch)
    assert list(e.state_dict().keys()) == list(t.state_dict().keys())
    assert [n for n, _ in e.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in e.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in e.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in e.named_children()] == [n for n, _ in t.named_children()]
    for (k, v), (k2, v2) in zip(e.state_dict().items(), t.state_dict().items()):
        assert tuple(v.shape) == tuple(v2.shape), k
        assert v.dtype.name == str(v2.dtype).replace("torch.", ""), k
    assert isinstance(e.state_dict(), OrderedDict)


def test_model_forward_backward_matches_torch_after_loading_state():
    e, t = build(ember), build(torch)
    e.eval(), t.eval()
    x = rand((3, 1, 28, 28))
    run_pair(e, t, [x], grtol=1e-3, gatol=1e-4)


def test_load_state_dict_roundtrip_and_errors():
    e = build(ember)
    e2 = build(ember)
    r = e2.load_state_dict(e.state_dict())
    assert r.missing_keys == [] and r.unexpected_keys == []
    assert repr(r) == "<All keys matched successfully>"
    np.testing.assert_array_equal(e2.fc1.weight.detach().numpy(), e.fc1.weight.detach().numpy())
    sd = e.state_dict()
    del sd["fc2.bias"]
    sd["extra.weight"] = ember.zeros(3)
    sd["fc1.weight"] = ember.zeros(5, 5)
    with pytest.raises(RuntimeError) as ei:
        e2.load_state_dict(sd)
    msg = str(ei.value)
    assert msg.startswith("Error(s) in loading state_dict for Net:")
    assert 'Missing key(s) in state_dict: "fc2.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in msg
    assert ("size mismatch for fc1.weight: copying a param with shape ember.Size([5, 5]) from checkpoint, the "
            "shape in current model is ember.Size([50, 320]).") in msg
    del sd["fc1.weight"]
    r = e2.load_state_dict(sd, strict=False)      # reported, not raised
    assert r.missing_keys == ["fc1.weight", "fc2.bias"] and r.unexpected_keys == ["extra.weight"]


def test_load_state_dict_keeps_parameter_identity_and_copies_values():
    m = nn.Linear(3, 2)
    w = m.weight
    m.load_state_dict({"weight": ember.ones(2, 3), "bias": ember.zeros(2)})
    assert m.weight is w and float(w.sum()) == 6.0 and w.requires_grad


def test_weight_tying_shares_one_parameter():
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, idx):
            return self.head(self.emb(idx))
    m = LM()
    assert m.head.weight is m.emb.weight
    assert len(list(m.parameters())) == 1
    assert [n for n, _ in m.named_parameters()] == ["emb.weight"]
    assert list(m.state_dict()) == ["emb.weight", "head.weight"]
    m(ember.tensor([[1, 2]])).sum().backward()
    assert m.emb.weight.grad is not None


def test_parameter_and_buffer_registration():
    m = nn.Module()
    m.w = nn.Parameter(ember.ones(2))
    m.register_buffer("b", ember.zeros(2))
    m.register_buffer("tmp", ember.zeros(1), persistent=False)
    m.plain = ember.ones(1)
    assert [n for n, _ in m.named_parameters()] == ["w"]
    assert [n for n, _ in m.named_buffers()] == ["b", "tmp"]
    assert list(m.state_dict()) == ["w", "b"]
    assert "plain" not in m.state_dict()
    m.b = ember.ones(2)      # assigning a tensor to a buffer name replaces the buffer
    assert float(m._buffers["b"].sum()) == 2.0
    with pytest.raises(TypeError):
        m.w = ember.ones(2)  # a plain tensor can't replace a parameter
    m.w = None
    assert m.w is None and list(m.parameters()) == []
    with pytest.raises(KeyError):
        m.register_buffer("a.b", ember.ones(1))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        m.nope
    del m.b
    assert "b" not in dict(m.named_buffers())
    m.register_parameter("p", nn.Parameter(ember.ones(1)))
    assert m.get_parameter("p") is m.p
    m.sub = nn.Linear(2, 2)
    assert m.get_submodule("sub") is m.sub and m.get_parameter("sub.bias") is m.sub.bias
    assert "sub" in dir(m) and "p" in dir(m)


def test_nn_buffer_class():
    m = nn.Module()
    m.buf = nn.Buffer(ember.ones(3), persistent=False)
    assert "buf" in dict(m.named_buffers()) and "buf" not in m.state_dict()


def test_parameter_repr_and_type():
    p = nn.Parameter(ember.tensor([1.0, 2.0]))
    assert repr(p).startswith("Parameter containing:\ntensor([1., 2.], requires_grad=True)")
    assert isinstance(p, ember.Tensor) and p.requires_grad and p.is_leaf
    q = nn.Parameter(ember.ones(2), requires_grad=False)
    assert not q.requires_grad


def test_shared_modules_and_params_listed_once():
    lin = nn.Linear(2, 2)
    s = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(s.parameters())) == 2
    assert len(list(s.modules())) == 3
    assert [n for n, _ in s.named_parameters(remove_duplicate=False)] == ["0.weight", "0.bias", "2.weight",
                                                                          "2.bias"]
    assert len(list(s.parameters(recurse=False))) == 0


def test_train_eval_apply_zero_grad_requires_grad():
    m = build(ember)
    m.eval()
    assert all(not x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen[-1] == "Net"
    m.fc1.weight.grad = ember.ones(50, 320)
    m.zero_grad()
    assert m.fc1.weight.grad is None
    m.fc1.weight.grad = ember.ones(50, 320)
    m.zero_grad(set_to_none=False)
    assert float(m.fc1.weight.grad.sum()) == 0.0
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_to_dtype_keeps_parameter_identity():
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    w = m[0].weight
    m.double()
    assert m[0].weight is w and w.dtype is ember.float64 and isinstance(w, nn.Parameter)
    assert m[1].running_mean.dtype is ember.float64
    assert m[1].num_batches_tracked.dtype is ember.int64
    m.to(ember.float32)
    assert w.dtype is ember.float32
    m.to("cpu")
    m.float()
    out = m(ember.randn(4, 3))
    assert out.dtype is ember.float32


def test_forward_hooks():
    m = nn.Linear(3, 2)
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: calls.append("pre") or (args[0] * 0,))
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append("post") or out + 1)
    y = m(ember.randn(4, 3))
    assert calls == ["pre", "post"]
    np.testing.assert_allclose(y.detach().numpy(), (m.bias.detach().numpy() + 1)[None].repeat(4, 0), rtol=1e-6)
    h1.remove()
    h2.remove()
    calls.clear()
    m(ember.randn(4, 3))
    assert calls == []
    with m.register_forward_hook(lambda mod, a, o: calls.append(1)):
        m(ember.randn(1, 3))
    m(ember.randn(1, 3))
    assert calls == [1]
    m.register_forward_pre_hook(lambda mod, args, kwargs: (args, kwargs), with_kwargs=True)
    m.register_forward_hook(lambda mod, args, kwargs, out: out * 2, with_kwargs=True)
    m(ember.randn(1, 3))


def test_containers():
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(s) == 3 and isinstance(s[0], nn.Linear) and isinstance(s[-1], nn.Linear)
    sl = s[1:]
    assert isinstance(sl, nn.Sequential) and len(sl) == 2 and list(sl._modules) == ["1", "2"]
    s.append(nn.Sigmoid())
    s.insert(0, nn.Identity())
    assert [type(x).__name__ for x in s] == ["Identity", "Linear", "ReLU", "Linear", "Sigmoid"]
    del s[0]
    assert list(s._modules) == ["0", "1", "2", "3"]
    s.extend([nn.Tanh()])
    assert len(s) == 5
    od = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert list(od.state_dict()) == ["fc.weight", "fc.bias"] and od.fc is od[0]
    ml = nn.ModuleList([nn.Linear(2, 2)])
    ml.append(nn.ReLU())
    ml += [nn.Tanh()]
    ml.insert(1, nn.Identity())
    assert [type(x).__name__ for x in ml] == ["Linear", "Identity", "ReLU", "Tanh"]
    assert isinstance(ml[1:], nn.ModuleList) and len(ml[1:]) == 3
    md = nn.ModuleDict({"b": nn.ReLU(), "a": nn.Tanh()})
    assert list(md.keys()) == ["b", "a"] and "a" in md and len(md) == 2
    md["c"] = nn.Identity()
    assert list(md) == ["b", "a", "c"]
    pl = nn.ParameterList([nn.Parameter(ember.ones(2)), ember.zeros(3)])
    assert len(pl) == 2 and isinstance(pl[1], nn.Parameter)
    assert [n for n, _ in pl.named_parameters()] == ["0", "1"]
    tpl = tnn.ParameterList([tnn.Parameter(torch.ones(2)), torch.zeros(3)])
    assert repr(pl).replace("ember", "torch") == repr(tpl)
    pd = nn.ParameterDict({"x": nn.Parameter(ember.ones(1)), "y": ember.zeros(2)})
    assert sorted(n for n, _ in pd.named_parameters()) == ["x", "y"] and isinstance(pd["y"], nn.Parameter)
    tpd = tnn.ParameterDict({"x": tnn.Parameter(torch.ones(1)), "y": torch.zeros(2)})
    assert repr(pd).replace("ember", "torch") == repr(tpd)


def test_module_list_repr_compresses_repeats():
    e = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)] + [nn.ReLU()])
    t = tnn.ModuleList([tnn.Linear(4, 4) for _ in range(3)] + [tnn.ReLU()])
    assert repr(e) == repr(t)


def test_deepcopy_and_state_dict_keep_vars():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    c = copy.deepcopy(m)
    assert c[0].weight is not m[0].weight
    np.testing.assert_array_equal(c[0].weight.detach().numpy(), m[0].weight.detach().numpy())
    assert isinstance(c[0].weight, nn.Parameter)
    sd = m.state_dict(keep_vars=True)
    assert sd["0.weight"] is m[0].weight
    sd = m.state_dict(prefix="model.")
    assert list(sd)[0] == "model.0.weight"


def test_missing_forward_raises():
    with pytest.raises(NotImplementedError, match='missing the required "forward" function'):
        nn.Module()(1)


def test_init_defaults_match_torch_bounds():
    """Default initialisation: same distributions (bounds) as PyTorch's reset_parameters."""
    for e in (nn.Linear(300, 200), nn.Conv2d(16, 8, 3)):
        fan_in = int(np.prod(e.weight.shape[1:]))
        w = e.weight.detach().numpy()
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(w).max() <= bound + 1e-6 and np.abs(w).max() > 0.95 * bound
        assert np.abs(e.bias.detach().numpy()).max() <= bound + 1e-6
    emb = nn.Embedding(1000, 64).weight.detach().numpy()
    assert abs(emb.std() - 1.0) < 0.02 and abs(emb.mean()) < 0.02
    bn = nn.BatchNorm2d(3)
    assert bn.weight.tolist() == [1.0] * 3 and bn.bias.tolist() == [0.0] * 3
    assert bn.num_batches_tracked.item() == 0
