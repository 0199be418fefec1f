"""DistributedDataParallel on this job's ranks against one process training on the whole batch
(run by test_ddp.py on 2 ranks). Each rank computes the one-process reference itself.

Cases: SGD and Adam (5 steps, float64) with one bucket and with many; no_sync accumulation; the
require_backward_grad_sync flag; BatchNorm buffers broadcast; ember.compile(DDP(m)) and
DDP(ember.compile(m)); find_unused_parameters; PyTorch's error for a parameter that got no
gradient; a model that differs across ranks. Prints "OK rank r cases n".
"""
import sys

import numpy as np

import ember
import ember.distributed as dist
import ember.nn as nn
import ember.nn.functional as F
import ember.optim as optim
from ember.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("mpi")
R, N = dist.get_rank(), dist.get_world_size()
B = 32                                    # per rank; the reference sees N * B
failures: list[str] = []
count = 0


def check(name, ok, detail=""):
    global count
    count += 1
    if not ok:
        failures.append(f"{name}: {detail}")


def params_close(name, a, b, tol=1e-9):
    for (n1, p), q in zip(a.named_parameters(), b.parameters()):
        diff = float(np.max(np.abs(p.detach().numpy() - q.detach().numpy()))) if p.numel() else 0.0
        check(f"{name} {n1}", diff <= tol * (1 + float(np.max(np.abs(q.detach().numpy())))), f"max diff {diff:.3g}")


def mlp(seed):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).double()


rng = np.random.default_rng(0)
X = ember.tensor(rng.standard_normal((5, N * B, 6)))          # 5 steps of data, the whole batch
Y = ember.tensor(rng.integers(0, 3, (5, N * B)).astype(np.int64))
mine = slice(R * B, (R + 1) * B)


def train(model, opt_fn, steps=5, shard=True, step_fn=None):
    opt = opt_fn(model.parameters())
    for s in range(steps):
        x, y = (X[s, mine], Y[s, mine]) if shard else (X[s], Y[s])
        opt.zero_grad()
        if step_fn is None:
            F.cross_entropy(model(x), y).backward()
        else:
            step_fn(model, x, y)
        opt.step()


SGD = lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9)        # noqa: E731
ADAM = lambda ps: optim.Adam(ps, lr=0.01)                   # noqa: E731

# --------------------------------------------------- equivalence with one process, batch N * B
for opt_name, opt_fn in (("SGD", SGD), ("Adam", ADAM)):
    for cap in (None, 0.0005):           # one bucket; a bucket per ~500 bytes (several in flight)
        ref = mlp(0)
        train(ref, opt_fn, shard=False)
        model = mlp(100 + R)             # different on every rank: DDP must broadcast rank 0's...
        if R == 0:
            model.load_state_dict(mlp(0).state_dict())
        ddp = DDP(model, bucket_cap_mb=cap)
        if cap is not None:
            check("several buckets", len(ddp._buckets) >= 3, f"{len(ddp._buckets)} buckets")
        train(ddp, opt_fn)
        params_close(f"{opt_name} cap={cap}", model, ref)
        check(f"{opt_name} iterations", ddp._comm_stats["iterations"] == 5, str(ddp._comm_stats))

# ------------------------------------------------------------------ no_sync accumulation
ref = mlp(0)
train(ref, SGD, shard=False)
model = mlp(0)
ddp = DDP(model)


def accumulate(m, x, y):
    h = B // 2
    with m.no_sync():
        (F.cross_entropy(m(x[:h]), y[:h]) / 2).backward()
    g = model[0].weight.grad.detach().clone()
    seen = [ember.zeros_like(g) for _ in range(N)]
    dist.all_gather(seen, g)
    if N > 1:
        check("no_sync leaves gradients local", not bool((seen[0] == seen[1]).all()))
    (F.cross_entropy(m(x[h:]), y[h:]) / 2).backward()


train(ddp, SGD, step_fn=accumulate)
params_close("no_sync accumulation", model, ref)

# the flag itself: no sync while require_backward_grad_sync is False
model = mlp(0)
ddp = DDP(model)
ddp.require_backward_grad_sync = False
F.cross_entropy(ddp(X[0, mine]), Y[0, mine]).backward()
local = mlp(0)
F.cross_entropy(local(X[0, mine]), Y[0, mine]).backward()
params_close("require_backward_grad_sync=False keeps local grads",
             nn.ParameterList([p.grad for p in model.parameters()]), nn.ParameterList([p.grad for p in local.parameters()]))
check("require_backward_grad_sync=False: no iteration", ddp._comm_stats["iterations"] == 0)

# ------------------------------------------------------------------- BatchNorm buffers
ember.manual_seed(0)
bn_model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
bn = bn_model[1]
bn.running_mean.fill_(float(R + 5))
bn.running_var.fill_(float(R + 2))
ddp = DDP(bn_model)
check("buffers broadcast at wrap", bool((bn.running_mean == 5).all()) and bool((bn.running_var == 2).all()))
seen_at_entry = []
bn.register_forward_pre_hook(lambda m, a: seen_at_entry.append(m.running_mean.detach().clone()))
opt = SGD(ddp.parameters())
for s in range(3):
    opt.zero_grad()
    F.cross_entropy(ddp(X[s, mine] * (R + 1)), Y[s, mine]).backward()   # different statistics per rank
    opt.step()
local_after = bn.running_mean.detach().clone()
every = [ember.zeros_like(local_after) for _ in range(N)]
dist.all_gather(every, local_after)
if N > 1:
    check("buffers drift within a step", not bool((every[0] == every[1]).all()))
for i, m in enumerate(seen_at_entry):
    gathered = [ember.zeros_like(m) for _ in range(N)]
    dist.all_gather(gathered, m)
    check(f"buffers equal at forward {i}", all(bool((g == gathered[0]).all()) for g in gathered))

# ------------------------------------------------------------------------ compiled models
for how in ("compile(DDP(m))", "DDP(compile(m))"):
    ref = mlp(0)
    train(ref, SGD, shard=False)
    model = mlp(0)
    if how.startswith("compile"):
        wrapped = compiled = ember.compile(DDP(model))
    else:
        compiled = ember.compile(model)
        wrapped = DDP(compiled)
    train(wrapped, SGD)
    params_close(how, model, ref)
    st = compiled._compiled.stats
    check(f"{how} ran compiled", st["compiles"] == 1 and st["eager_calls"] == 0 and st["calls"] == 5, str(st))

# ---------------------------------------------------------------- find_unused_parameters


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        ember.manual_seed(0)
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)      # used only when the flag says so
        self.never = nn.Linear(4, 3)  # never used

    def forward(self, x, use_b):
        return self.a(x) + (self.b(x) if use_b else 0)


x4 = ember.tensor(np.random.default_rng(R).standard_normal((8, 4)))
m = Branchy().double()
ddp = DDP(m, find_unused_parameters=True)
ddp(x4, use_b=(R == 0)).sum().backward()
check("globally unused parameter keeps grad None", m.never.weight.grad is None)
g = m.b.weight.grad
check("locally unused parameter gets the average", g is not None)
if g is not None:
    expect = ember.tensor(np.random.default_rng(0).standard_normal((8, 4))).sum(0).expand(3, 4) / N
    check("locally unused parameter value", bool(ember.allclose(g, expect)), f"{g} vs {expect}")
ga = m.a.weight.grad.detach().clone()
ref_a = sum(ember.tensor(np.random.default_rng(r).standard_normal((8, 4))).sum(0) for r in range(N)) / N
check("used parameter averaged", bool(ember.allclose(ga, ref_a.expand(3, 4))))
# a second iteration works too
for p in m.parameters():
    p.grad = None
ddp(x4, use_b=True).sum().backward()
check("find_unused second iteration", m.b.weight.grad is not None and m.never.weight.grad is None)

# without find_unused_parameters: PyTorch's error at the next forward, naming the parameter
m2 = Branchy().double()
ddp2 = DDP(m2)
ddp2(x4, use_b=True).sum().backward()
try:
    ddp2(x4, use_b=True)
    check("unused parameter error", False, "no error")
except RuntimeError as e:
    check("unused parameter error", "Expected to have finished reduction" in str(e) and "never.weight" in str(e),
          str(e))

# ------------------------------------------------------------- a model that differs by rank
if N > 1:
    try:
        DDP(nn.Linear(3, 2 + R).double())
        check("different models", False, "no error")
    except RuntimeError as e:
        check("different models", "DDP expects same model across all ranks" in str(e), str(e))

# --------------------------------------------------------------------- bad construction
try:
    DDP(nn.Linear(3, 2), device_ids=[0])
    check("device_ids on CPU", False, "no error")
except ValueError as e:
    check("device_ids on CPU", "device_ids" in str(e), str(e))
try:
    DDP(nn.Linear(3, 2).requires_grad_(False))
    check("nothing to train", False, "no error")
except RuntimeError as e:
    check("nothing to train", "doesn't have any parameter that requires a gradient" in str(e), str(e))
check("state_dict keys", list(DDP(nn.Linear(2, 2)).state_dict()) == ["module.weight", "module.bias"])

# dropping a wrapper takes its gradient hooks away with it
import gc  # noqa: E402
m = mlp(0)
w = DDP(m)
acc = m[0].weight._accumulator()
n_hooks = len(acc.post_hooks)
del w
gc.collect()
check("dropping the wrapper removes its hooks", n_hooks == 1 and not acc.post_hooks, f"{n_hooks} {acc.post_hooks}")

dist.destroy_process_group()
if failures:
    raise AssertionError(f"rank {R}: {len(failures)} of {count} checks failed:\n" + "\n".join(failures[:40]))
sys.stdout.write(f"OK rank {R} cases {count}\n")
sys.stdout.flush()
