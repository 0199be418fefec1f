"""CUDA graphs for compiled programs (ember/runtime/cuda_graph.py) and mode="reduce-overhead", without a GPU.

The capture plan is a pure function of a Program: tested directly.  The runner runs on the fake CuPy
(tests/cuda/emulator/fake_cupy.py), which models stream capture strictly -- work is recorded with
its addresses and replayed by Graph.launch, host syncs / host copies / shared-pool allocations inside
a capture raise, and COUNTS says what the host issued -- so these tests pin what a GPU would do:
one graph launch per call, outputs never overwritten while held, recapture when a static input
moves, no host sync inside a step.  The real thing: tests/cuda/test_gpu_graphs.py (gpu-marked)."""
import copy
import shutil

import numpy as np
import pytest

import ember as E
import ember.nn as nn
import ember.nn.functional as F
from ember import diagnostics as records
from ember.frontend import dispatch
from ember.passes import compile_graph
from ember.runtime import cuda_graph as cgr
from ember.runtime.executor import Executor
from tests.cuda.emulator import fake_cupy

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")


# ------------------------------------------------------------------------------ programs
def _traced(fn, *args):
    """The compiled variant of fn (a function or Module) traced on args (no code generated), and
    its result."""
    cf = E.compile(fn, backend="eager")
    out = cf(*args)
    v = getattr(cf, "_compiled", cf).variants[-1]
    return v, out


def _mlp_program():
    E.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with E.no_grad():       # inference: no values saved for backward
        v, _ = _traced(m, E.randn(4, 6))
    return compile_graph(v.graph), v.static_inputs(), m


def _grad_programs():
    """forward / backward programs of (x.reshape @ w).tanh().sum(): the forward saves x and w
    themselves for backward (the reshape of x is recomputed there: ember/compiler/joint.py)."""
    def f(x, w):
        return (x.reshape(4, 6) @ w).tanh().sum()
    v, out = _traced(f, E.randn(2, 12, requires_grad=True), E.randn(6, 3, requires_grad=True))
    return compile_graph(v.graph, alias_outputs=tuple(range(v.backward.n_user, len(v.graph.outputs)))), v


def _embedding_programs():
    emb = nn.Embedding(10, 4)
    v, _ = _traced(emb, E.tensor(np.array([1, 2, 3])))
    return compile_graph(v.graph), compile_graph(v.backward.graph), v


# ---------------------------------------------------------------------------- the plan
def test_plan_of_an_mlp_reads_parameters_in_place():
    prog, static, _ = _mlp_program()
    assert static == (1, 2, 3, 4)
    plan = cgr.plan_capture(prog, static)
    assert plan.capturable and not plan.reasons
    assert plan.inputs == ["copied", "static", "static", "static", "static"]
    assert plan.results == [("output", 0)] and plan.outputs == [prog.results[0]]
    assert plan.slots == prog.memory.assign
    assert "capturable" in str(plan)


def test_plan_hands_views_and_inputs_back_from_the_callers_arrays():
    prog, _ = _grad_programs()
    plan = cgr.plan_capture(prog)
    assert plan.capturable
    assert plan.results == [("output", 0), ("output", 1), ("input", 0), ("input", 1)]
    assert plan.outputs == prog.results[:2]


def _mutating_program():
    def f(x, y):
        x.add_(1)
        return (x * y).sum()
    with E.no_grad():
        v, _ = _traced(f, E.randn(4), E.randn(4))
    return compile_graph(v.graph), f


def test_plan_writes_back_inputs_written_in_place():
    prog, _ = _mutating_program()
    assert cgr.plan_capture(prog).results == [("output", 0), ("static_in", 0)]      # copied: from its buffer
    assert cgr.plan_capture(prog, (0,)).results == [("output", 0), ("input", 0)]    # static: written in place


def test_plan_says_why_an_eager_step_is_not_capturable():
    fwd, bwd, _ = _embedding_programs()
    plan = cgr.plan_capture(fwd, (1,))
    assert plan.capturable and plan.deferred_checks == [fwd.steps[0].name]     # the gather's index check
    plan = cgr.plan_capture(bwd)
    assert not plan.capturable
    assert any("index_add" in r and "eager" in r for r in plan.reasons), plan.reasons
    assert [s for s in plan.allocating if "full" in s]                          # a constant fill captures


def test_plan_refuses_unknown_library_calls_and_bad_positions(monkeypatch):
    prog, static, _ = _mlp_program()
    monkeypatch.delitem(cgr.CAPTURABLE_EXTERNS, "matmul")
    plan = cgr.plan_capture(prog, static)
    assert not plan.capturable and "matmul) is not known to be capturable" in plan.reasons[0]
    with pytest.raises(ValueError, match="static input positions \\[7\\] do not exist"):
        cgr.plan_capture(prog, (7,))


# ------------------------------------------------------------------------- the runner
@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not on PATH")
    with fake_cupy.installed(tmp_path_factory.mktemp("fake_cupy")) as fake:
        yield fake


class Notes(list):
    def __call__(self, code, reason):
        self.append((code, reason))

    def codes(self):
        return [c for c, _ in self]


def _runner(cp, prog, static=(), graphs=True, **kw):
    notes = Notes()
    ex = Executor(prog, "cuda", eager_kernels=dispatch.KERNELS)
    return cgr.CudaProgramRunner(ex, static, graphs, notify=notes, **kw), notes


def _mlp_runner(cp, **kw):
    prog, static, m = _mlp_program()
    params = [cp.asarray(p.detach().numpy()) for p in m.parameters()]
    run, notes = _runner(cp, prog, static, **kw)
    ref = Executor(prog)                                        # the numpy oracle

    def expect(x):
        return ref.run([x] + [p.get() for p in params])[0]
    return run, notes, params, expect


def _x(seed, shape=(4, 6)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_one_graph_launch_per_call_after_warm_up(cp):
    run, notes, params, expect = _mlp_runner(cp)
    counts = fake_cupy.reset_counts()
    y1 = run.run([cp.asarray(_x(1))] + params)[0]
    assert counts["kernels"] >= 1 and counts["graphs"] == 0          # warm-up: kernel by kernel
    np.testing.assert_allclose(y1.get(), expect(_x(1)), rtol=1e-5, atol=1e-6)
    del y1
    for seed in (2, 3, 4):
        x = cp.asarray(_x(seed))
        fake_cupy.reset_counts()
        y = run.run([x] + params)[0]
        assert counts["kernels"] == 0 and counts["graphs"] == 1 and counts["copies"] == 1, counts
        np.testing.assert_allclose(y.get(), expect(_x(seed)), rtol=1e-5, atol=1e-6)
        del y
    assert run.stats["captures"] == 1 and run.stats["replays"] == 3 and run.graph_count == 1
    assert run.stats["last_launches"] == 2 and run.stats["syncs"] == 0      # copy x in, one graph
    assert notes.codes() == ["C002"] and "CUDA graph of" in notes[0][1]


def test_held_outputs_are_never_overwritten(cp):
    run, notes, params, expect = _mlp_runner(cp)
    run.run([cp.asarray(_x(1))] + params)
    kept = run.run([cp.asarray(_x(2))] + params)[0]                 # captured, then held
    again = run.run([cp.asarray(_x(3))] + params)[0]                # needs a second graph
    assert run.graph_count == 2 and kept.data.ptr != again.data.ptr
    np.testing.assert_allclose(kept.get(), expect(_x(2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again.get(), expect(_x(3)), rtol=1e-5, atol=1e-6)
    view = kept.reshape(-1)        # a view holds its base: still in use
    del kept, again
    y = run.run([cp.asarray(_x(4))] + params)[0]
    assert run.graph_count == 2 and run.stats["captures"] == 2      # the free one replays
    np.testing.assert_allclose(view.get(), expect(_x(2)).reshape(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y.get(), expect(_x(4)), rtol=1e-5, atol=1e-6)


def test_a_moved_static_input_captures_again(cp):
    run, notes, params, expect = _mlp_runner(cp, max_graphs=1)
    for seed in (1, 2):
        run.run([cp.asarray(_x(seed))] + params)
    params[0] = params[0].copy()            # the weight's storage moved (as after load_state_dict)
    params[0] += 0.5
    fake_cupy.reset_counts()
    y = run.run([cp.asarray(_x(3))] + params)[0]
    np.testing.assert_allclose(y.get(), expect(_x(3)), rtol=1e-5, atol=1e-6)
    assert "C003" in notes.codes() and "0.weight" in notes[-1][1] and "new address" in notes[-1][1]
    assert run.graph_count == 1 and run.stats["captures"] == 2      # the old graph was evicted


def test_all_graphs_busy_runs_kernel_by_kernel(cp):
    run, notes, params, expect = _mlp_runner(cp, max_graphs=1)
    run.run([cp.asarray(_x(1))] + params)
    kept = [run.run([cp.asarray(_x(2))] + params)[0]]
    counts = fake_cupy.reset_counts()
    kept.append(run.run([cp.asarray(_x(3))] + params)[0])
    assert counts["graphs"] == 0 and counts["kernels"] >= 1
    assert notes.codes().count("C005") == 1 and "still in use" in notes[-1][1]
    for seed, y in zip((2, 3), kept):
        np.testing.assert_allclose(y.get(), expect(_x(seed)), rtol=1e-5, atol=1e-6)


def test_views_and_inputs_come_from_the_callers_arrays(cp):
    prog, _ = _grad_programs()
    run, _ = _runner(cp, prog)
    ref = Executor(prog)
    xs = [(_x(s, (2, 12)), _x(s + 10, (6, 3))) for s in range(3)]
    outs = []
    for x, w in xs:
        xd, wd = cp.asarray(x), cp.asarray(w)
        res = run.run([xd, wd])
        assert np.shares_memory(res[2], xd) and res[3] is wd
        outs.append((res, ref.run([x, w])))
    assert run.stats["replays"] == 2
    for res, want in outs:                  # nothing a later call did changed an earlier result
        for got, w in zip(res, want):
            np.testing.assert_allclose(got.get(), w, rtol=1e-5, atol=1e-6)


def test_an_argument_written_in_place_is_written_back(cp):
    """x.add_(1) inside a compiled function on a replayed graph: the graph writes the static copy,
    the compiled call writes it back into x (the plain path writes x itself)."""
    _, f = _mutating_program()
    cf = E.compile(f, mode="reduce-overhead")
    x0, y0 = _x(1, (4,)), _x(2, (4,))
    x, y = E.tensor(x0, device="cuda"), E.tensor(y0, device="cuda")
    with E.no_grad():
        for k in range(1, 5):
            s = cf(x, y)
            np.testing.assert_allclose(x.cpu().numpy(), x0 + k, rtol=1e-6)
            np.testing.assert_allclose(float(s.item()), float(((x0 + k) * y0).sum()), rtol=1e-5)
    assert cf.stats["cuda_graph_replays"] == 3 and x._vc[0] == 4


def test_another_thread_runs_kernel_by_kernel(cp):
    import threading
    run, _, params, expect = _mlp_runner(cp)
    for seed in (1, 2):
        run.run([cp.asarray(_x(seed))] + params)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("y", run.run([cp.asarray(_x(3))] + params)[0]))
    t.start()
    t.join()
    np.testing.assert_allclose(got["y"].get(), expect(_x(3)), rtol=1e-5, atol=1e-6)
    assert run.stats["replays"] == 1 and run.stats["calls"] == 2       # the thread's call is not the runner's


def test_host_inputs_are_staged_without_a_sync(cp):
    run, notes, params, expect = _mlp_runner(cp)
    for seed in (1, 2, 3):
        y = run.run([_x(seed)] + params)[0]       # numpy input: through pinned memory
        np.testing.assert_allclose(y.get(), expect(_x(seed)), rtol=1e-5, atol=1e-6)
        del y
    assert run.stats["replays"] == 2 and run.stats["syncs"] == 0


def test_the_host_runs_ahead_of_a_slow_device(cp, monkeypatch):
    """Host inputs go through a ring of pinned buffers: the host waits only when it is a whole ring
    ahead of the device; the error-slot read never waits (the slots are sticky)."""
    fwd, _, _ = _embedding_programs()
    run, _ = _runner(cp, fwd, (1,))
    w = cp.asarray(np.ones((10, 4), np.float32))
    monkeypatch.setattr(fake_cupy.STATE, "slow_device", True)
    waits = fake_cupy.Event.syncs
    for _ in range(cgr.STAGING_DEPTH):
        run.run([np.array([1, 2, 3]), w])            # ids from the host
    assert run.stats["syncs"] == 0 and fake_cupy.Event.syncs == waits
    run.run([np.array([1, 2, 3]), w])
    assert run.stats["syncs"] == 1 and fake_cupy.Event.syncs == waits + 1   # the ring came round
    run.run([np.array([1, 11, 3]), w])                                      # recorded, not seen yet
    run.run([np.array([1, 2, 3]), w])
    with pytest.raises(IndexError, match="index 11 is out of bounds"):
        E.cuda.synchronize()                  # as torch.cuda.synchronize raises a device assert


@pytest.mark.parametrize("graphs", [True, False])
def test_gather_errors_are_read_after_the_call(cp, graphs):
    fwd, _, v = _embedding_programs()
    run, _ = _runner(cp, fwd, (1,), graphs=graphs)
    w = cp.asarray(np.arange(40, dtype=np.float32).reshape(10, 4))
    ok = cp.asarray(np.array([1, 2, 3]))
    for _ in range(2):
        np.testing.assert_array_equal(run.run([ok, w])[0].get(), np.arange(40).reshape(10, 4)[[1, 2, 3]])
    run.run([cp.asarray(np.array([1, 12, 3])), w])        # no host sync: nothing raised yet
    with pytest.raises(IndexError, match="index 12 is out of bounds for dimension 0 with size 10 .*earlier call"):
        run.run([ok, w])
    np.testing.assert_array_equal(run.run([ok, w])[0].get(), np.arange(40).reshape(10, 4)[[1, 2, 3]])
    assert run.stats["syncs"] == 0 and run.stats["replays"] == (3 if graphs else 0)


def test_a_program_with_an_eager_step_runs_kernel_by_kernel(cp):
    _, bwd, _ = _embedding_programs()
    run, notes = _runner(cp, bwd)
    assert notes.codes() == ["C001"] and "index_add" in notes[0][1] and not run.graphs
    g = cp.asarray(np.ones((3, 4), np.float32))
    for _ in range(2):
        got = run.run([g, cp.asarray(np.array([1, 1, 3]))])[0].get()
        want = np.zeros((10, 4), np.float32)
        want[1], want[3] = 2, 1
        np.testing.assert_array_equal(got, want)
    assert run.stats["replays"] == 0 and run.stats["calls"] == 2


def test_a_capture_cuda_refuses_falls_back(cp):
    fwd, _, _ = _embedding_programs()
    run, notes = _runner(cp, fwd, (1,))
    w = cp.asarray(np.ones((10, 4), np.float32))
    ids = cp.asarray(np.array([1, 2, 0]))
    run.run([ids, w])
    run.module.defer_checks = False        # a host sync in the middle of the program: capture fails
    y = run.run([ids, w])[0]
    assert "C006" in notes.codes() and "capturing" in notes[-1][1] and not run.graphs
    np.testing.assert_array_equal(y.get(), np.ones((3, 4)))
    assert fake_cupy.STATE.capture is None


# --------------------------------------------------------------------------- ember.compile
def test_modes_are_validated_like_torch_compile():
    with pytest.raises(RuntimeError, match="Unrecognized mode=fast, should be one of: default, reduce-overhead"):
        E.compile(lambda x: x + 1, mode="fast")
    with pytest.raises(RuntimeError, match="Either mode or options can be specified"):
        E.compile(lambda x: x + 1, mode="reduce-overhead", options={"triton.cudagraphs": True})
    assert E.compile(lambda x: x, options={"triton.cudagraphs": True}).cuda_graphs
    assert E.compile(lambda x: x, mode="reduce-overhead", options={"check": "fp64"}).cuda_graphs   # ember's own
    assert E.compile(lambda x: x, mode="max-autotune-no-cudagraphs").cuda_graphs is False


def test_reduce_overhead_on_the_cpu_says_it_skips_graphs():
    m = nn.Linear(4, 3)
    x = E.randn(2, 4)
    with records.collect() as recs:
        y = E.compile(m, mode="reduce-overhead")(x)
    mine = [r for r in recs if r.kind == "cudagraphs"]
    assert [r.code for r in mine] == ["C004"] and mine[0].source.startswith("test_cuda_graph.py:")
    assert "skipping cudagraphs due to cpu device" in str(mine[0])
    np.testing.assert_allclose(y.detach().numpy(), m(x).detach().numpy(), rtol=1e-5, atol=1e-6)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(6, 16), nn.Linear(16, 4), nn.Dropout(0.25)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))


def _train_on_fake(model, mode, steps=5):
    model = copy.deepcopy(model).to("cuda")
    opt = E.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    cm = E.compile(model, mode=mode)
    rng = np.random.default_rng(0)
    E.manual_seed(3)
    losses = []
    for _ in range(steps):
        x = E.tensor(rng.standard_normal((5, 6)).astype(np.float32), device="cuda")
        y = E.tensor(rng.integers(0, 4, 5), device="cuda")
        opt.zero_grad()
        loss = F.cross_entropy(cm(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses, [p.detach().cpu().numpy() for p in model.parameters()], cm._compiled.stats


def test_reduce_overhead_training_equals_default_mode(cp):
    E.manual_seed(0)
    net = Net()
    with records.collect() as recs:
        l0, p0, s0 = _train_on_fake(net, None)
        l1, p1, s1 = _train_on_fake(net, "reduce-overhead")
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(p1, p0):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # default mode: launch accounting, no graphs, no sync inside a step
    assert s0["cuda_calls"] == 10 and s0.get("cuda_graph_replays", 0) == 0 and s0["cuda_syncs"] == 0
    # reduce-overhead: forward and backward captured (a second instance each when the last step's
    # outputs are still held: eager autograd cycles live until the collector runs), one graph
    # launch each per step after the warm-up
    assert 2 <= s1["cuda_graph_captures"] <= 4 and s1["cuda_graph_replays"] == 8 and s1["cuda_syncs"] == 0
    assert s1["cuda_launches"] < s0["cuda_launches"]
    assert not [r for r in recs if r.code in ("C001", "C005", "C006")], [str(r) for r in recs]


def test_stable_results_feed_backward_in_place():
    prog, _ = _grad_programs()
    assert cgr.plan_capture(prog).stable_results() == {0, 1}            # x and w are the caller's: copied
    assert cgr.plan_capture(prog, (1,)).stable_results() == {0, 1, 3}   # w static: handed back in place


def test_inputs_that_never_settle_stop_the_captures(cp):
    run, notes, params, expect = _mlp_runner(cp, max_graphs=1)
    for seed in range(1, 4 + cgr.RECAPTURE_LIMIT):
        params[1] = params[1].copy()         # the bias moves on every call
        y = run.run([cp.asarray(_x(seed))] + params)[0]
        np.testing.assert_allclose(y.get(), expect(_x(seed)), rtol=1e-5, atol=1e-6)
        del y
    assert "C007" in notes.codes() and not run.graphs
    assert run.stats["captures"] == cgr.RECAPTURE_LIMIT


def test_whole_training_steps_replay_as_graphs_by_default(cp):
    """zero_grad .. optimizer.step in one compiled function on CUDA: CUDA graphs without asking
    (mode=None); the optimizer updates parameters and state in place inside the graph, the
    scheduler's new lr is uploaded only when it changes; 8 steps equal eager's."""
    E.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    runs = {}
    for compiled in (False, True):
        model = copy.deepcopy(base).to("cuda")
        opt = E.optim.Adam(model.parameters(), lr=1e-2)
        sched = E.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        fn = E.compile(step) if compiled else step
        rng = np.random.default_rng(0)
        losses = []
        for _ in range(8):
            x = E.tensor(rng.standard_normal((5, 6)).astype(np.float32), device="cuda")
            y = E.tensor(rng.integers(0, 3, 5), device="cuda")
            losses.append(float(fn(x, y).item()))
            sched.step()
        runs[compiled] = losses, [p.detach().cpu().numpy() for p in model.parameters()], fn
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-6)
    for a, b in zip(runs[True][1], runs[False][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    fn = runs[True][2]
    run = fn.variants[-1].forward_exec
    # .grads hold the last step's outputs until zero_grad: two graphs take turns
    assert 2 <= fn.stats["cuda_graph_captures"] <= 3 and fn.stats["cuda_graph_replays"] == 7
    # x and y copied in, one graph, the read of cross_entropy's index-check slots (lr unchanged)
    assert run.stats["last_launches"] == 4 and run.stats["syncs"] == 0


def test_the_profiler_sees_graph_replays_and_launches(cp):
    run, _, params, _ = _mlp_runner(cp)
    x = cp.asarray(_x(1))
    with E.profiler.profile() as prof:
        for _ in range(4):
            run.run([x] + params)
    rows = {r.key: r for r in prof.key_averages()}
    graph = [r for r in rows.values() if r.kind == "graph"]
    assert len(graph) == 1 and graph[0].count == 3 and graph[0].key.split("#")[0].endswith(".cuda_graph")   # "#2": another program of the same name ran in this process
    assert prof.launch_counts["graphs"] == 3 and prof.launch_counts["syncs"] == 0
    assert "3 graph replays" in prof.key_averages().table()
    assert "replay" not in run.__dict__                 # put back when the profile stopped
