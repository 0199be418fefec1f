"""ember.profiler: compiled kernels, externs and eager ops timed per call; nothing left behind when off."""
import json
import time
import warnings

import numpy as np
import pytest

import ember
from ember import profiler
from ember.frontend import dispatch
from ember.tools import cli


def _mlp_step():
    """A compiled two-layer MLP loss, its backward, and the compiled function (LLVM backend)."""
    ember.manual_seed(0)
    lin1, lin2 = ember.nn.Linear(64, 32), ember.nn.Linear(32, 10)
    F = ember.nn.functional

    def loss_fn(x, y):
        return F.cross_entropy(lin2(F.relu(lin1(x))), y)

    cf = ember.compile(loss_fn)
    rng = np.random.default_rng(0)
    x = ember.from_numpy(rng.standard_normal((128, 64)).astype(np.float32))
    y = ember.from_numpy(rng.integers(0, 10, 128).astype(np.int64))

    def step():
        loss = cf(x, y)
        loss.backward()
        return loss
    step()                 # compile outside the profile
    return step, cf, (lin1, lin2)


def _programs(cf):
    v = cf.variants[-1]
    return [ex.program for ex in (v.forward_exec, v.backward_exec) if hasattr(ex, "program")]


def _steps(cf, kind):
    return [s for p in _programs(cf) for s in p.steps if type(s).__name__ == kind]


def test_kernel_rows_match_the_program_and_times_add_up():
    step, cf, _ = _mlp_step()
    assert _programs(cf) and all(p is not None for p in _programs(cf))
    calls = 3
    t0 = time.perf_counter()
    with profiler.profile() as prof:
        for _ in range(calls):
            step()
    wall_us = (time.perf_counter() - t0) * 1e6
    rows = prof.key_averages()
    kernels = [r for r in rows if r.kind == "kernel"]
    externs = [r for r in rows if r.kind == "extern"]
    # generated kernels: the kernel steps and the fused epilogues of the library calls
    epilogues = [s for s in _steps(cf, "ExternStep") if s.kernel.epilogue is not None]
    assert epilogues
    assert len(kernels) == len(_steps(cf, "KernelStep")) + len(epilogues)
    assert len(externs) == len(_steps(cf, "ExternStep")) > 0
    assert sum(r.key.endswith(".epilogue") for r in kernels) == len(epilogues)
    for r in kernels + externs:
        assert r.count == calls, r
        assert r.self_cpu_time_total > 0 and r.cpu_time > 0
        assert r.nbytes > 0
    assert all(r.flops > 0 for r in externs)
    total = sum(r.self_cpu_time_total for r in rows)
    assert 0 < total <= wall_us
    assert all(e.self_cpu_time_total >= 0 and e.end_us >= e.start_us for e in prof.events())
    table = rows.table(sort_by="self_cpu_time_total", row_limit=-1)
    for r in kernels + externs:
        assert r.key in table
    assert "GB/s" in table and "Self CPU time total" in table
    # the row names say which graph a kernel belongs to
    assert any(r.key.startswith("backward.") for r in kernels)


def test_eager_ops_are_recorded_with_bytes():
    a = ember.randn(256, 256)
    b = ember.randn(256, 256)
    with profiler.profile() as prof:
        for _ in range(4):
            (a + b).relu()
    rows = {r.key: r for r in prof.key_averages()}
    assert rows["add"].kind == "eager" and rows["add"].count == 4
    assert rows["add"].nbytes == 4 * 3 * 256 * 256 * 4          # two inputs and the output, per call
    assert rows["add"].self_cpu_time_total > 0


def test_nothing_is_left_behind_when_off():
    step, cf, _ = _mlp_step()
    v = cf.variants[-1]
    envs = [dict(ex.env) for ex in (v.forward_exec, v.backward_exec)]
    kernels = dict(dispatch.KERNELS)
    with profiler.profile():
        step()
        assert any(fn is not envs[0][k] for k, fn in v.forward_exec.env.items() if k.startswith("_"))
    for ex, before in zip((v.forward_exec, v.backward_exec), envs):
        assert all(ex.env[k] is fn for k, fn in before.items())
    assert all(dispatch.KERNELS[k] is fn for k, fn in kernels.items())


def test_results_unchanged_under_the_profiler():
    step, cf, (lin1, _) = _mlp_step()
    lin1.weight.grad = None
    ref = step().item(), lin1.weight.grad.numpy().copy()
    lin1.weight.grad = None
    with profiler.profile():
        got = step().item(), lin1.weight.grad.numpy().copy()
    assert ref[0] == got[0]
    np.testing.assert_array_equal(ref[1], got[1])


def test_executor_built_while_profiling_is_timed():
    x = ember.randn(64, 64)
    cf = ember.compile(lambda t: (t * 2 + 1).exp().sum(1))
    with profiler.profile() as prof:
        cf(x)            # compiled inside the profile
        cf(x)
    kernels = [r for r in prof.key_averages() if r.kind == "kernel"]
    assert kernels and all(r.count == 2 for r in kernels)


def test_record_function_nests_and_self_time_excludes_children():
    a = ember.randn(128, 128)
    with profiler.profile() as prof:
        with profiler.record_function("my_block"):
            for _ in range(3):
                a * a
    rows = {r.key: r for r in prof.key_averages()}
    blk = rows["my_block"]
    assert blk.kind == "user" and blk.count == 1
    assert blk.self_cpu_time_total < blk.cpu_time_total
    assert abs(blk.cpu_time_total - blk.self_cpu_time_total - rows["mul"].cpu_time_total) < 1.0


def test_bad_use_is_a_clear_error(tmp_path):
    with profiler.profile():
        with pytest.raises(RuntimeError, match="already recording"):
            profiler.profile().__enter__()
    with profiler.profile() as prof:
        ember.randn(4) + 1
    with pytest.raises(ValueError, match="sort_by must be one of"):
        prof.key_averages().table(sort_by="speed")
    with pytest.raises(TypeError, match="ProfilerActivity"):
        profiler.profile(activities=["cpu"])
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    assert json.loads(path.read_text())["traceEvents"]


def test_disabled_profile_records_nothing():
    with profiler.profile(enabled=False) as prof:
        ember.randn(4) + 1
    assert prof.key_averages() == []


SCRIPT = """
import sys
import ember
cf = ember.compile(lambda a: (a * 3).sum())
x = ember.randn(32, 32)
for _ in range(int(sys.argv[1])):
    cf(x)
print("script done")
"""


def test_cli_profile_prints_the_table(tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    rc = cli.main(["profile", "--row-limit", "5", str(script), "4"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "script done" in out
    assert "Self CPU time total" in out and "# of Calls" in out
    row = next(line for line in out.splitlines() if line.startswith("forward.k"))
    assert " kernel " in row and " 4 " in row
    rc = cli.main(["profile", "--sort", "speed", str(script)])
    _, err = capsys.readouterr()
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--sort must be one of" in err


# ------------------------------------------------------------------ torch.profiler's options
@pytest.mark.parametrize("kw", [dict(wait=1, warmup=1, active=2), dict(wait=0, warmup=0, active=1, repeat=3),
                                dict(wait=2, warmup=1, active=3, repeat=2, skip_first=3),
                                dict(wait=2, warmup=1, active=2, repeat=2, skip_first_wait=1)])
def test_schedule_matches_torch(kw):
    torch_profiler = pytest.importorskip("torch.profiler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # both warn when warmup is 0
        ours, theirs = profiler.schedule(**kw), torch_profiler.schedule(**kw)
    assert [ours(i).name for i in range(20)] == [theirs(i).name for i in range(20)]


def test_schedule_records_active_steps_and_hands_each_cycle_over(tmp_path):
    a = ember.randn(16, 16)
    seen = []

    def on_ready(prof):
        seen.append((prof.step_num, sum(r.count for r in prof.key_averages() if r.key == "mul")))
    with profiler.profile(schedule=profiler.schedule(wait=1, warmup=1, active=2, repeat=2),
                          on_trace_ready=on_ready) as prof:
        for _ in range(10):
            a * a
            prof.step()
    # cycles of 4 steps: steps 2-3 and 6-7 record (one mul each), saved after steps 3 and 7
    assert seen == [(4, 2), (8, 2)]
    handler = profiler.tensorboard_trace_handler(str(tmp_path / "log"), worker_name="w0")
    with profiler.profile(schedule=profiler.schedule(wait=0, warmup=1, active=1, repeat=2),
                          on_trace_ready=handler) as prof:
        for _ in range(6):
            a + a
            prof.step()
    files = sorted((tmp_path / "log").iterdir())
    assert len(files) == 2 and all(f.name.startswith("w0.") and f.name.endswith(".pt.trace.json") for f in files)
    assert any(e["name"] == "add" for e in json.loads(files[0].read_text())["traceEvents"])


def test_on_trace_ready_without_schedule_runs_once_at_exit():
    calls = []
    with profiler.profile(on_trace_ready=calls.append) as prof:
        ember.randn(4) + 1
    assert calls == [prof]


def test_record_shapes_memory_and_flops():
    a, b, c = ember.randn(8, 16), ember.randn(16, 4), ember.randn(32, 16)
    with profiler.profile(record_shapes=True, profile_memory=True) as prof:
        a @ b
        c @ b
        c @ b
    rows = prof.key_averages(group_by_input_shape=True)
    mm = {str(r.input_shapes): r for r in rows if r.key == "matmul"}
    assert set(mm) == {"[[8, 16], [16, 4]]", "[[32, 16], [16, 4]]"}
    assert mm["[[32, 16], [16, 4]]"].count == 2
    assert mm["[[32, 16], [16, 4]]"].flops == 2 * (2 * 32 * 4 * 16)
    assert mm["[[8, 16], [16, 4]]"].cpu_memory_usage == 8 * 4 * 4        # the float32 result it returned
    table = rows.table(sort_by="cpu_memory_usage")
    assert "Input Shapes" in table and "[[32, 16], [16, 4]]" in table and "CPU Mem" in table
    with pytest.raises(RuntimeError, match="record_shapes"):
        profiler.profile().key_averages(group_by_input_shape=True)


def test_with_stack_groups_by_call_site_and_exports_stacks(tmp_path):
    a = ember.randn(8, 8)

    def first():
        return a + a

    def second():
        return a + a
    with profiler.profile(with_stack=True) as prof:
        first()
        second()
        second()
    adds = [r for r in prof.key_averages(group_by_stack_n=1) if r.key == "add"]
    assert sorted(r.count for r in adds) == [1, 2]
    assert all(r.stack and "test_profiler.py" in r.stack[0] for r in adds)
    path = tmp_path / "stacks.txt"
    prof.export_stacks(str(path))
    lines = path.read_text().splitlines()
    assert any(line.split(" ")[0].endswith("first;add") for line in lines)


def test_record_function_decorates_and_legacy_autograd_profiler():
    @profiler.record_function("helper")
    def helper(t):
        return t * 2
    x = ember.randn(4)
    with ember.autograd.profiler.profile(record_shapes=True) as prof:
        helper(x)
        helper(x)
    rows = {r.key: r for r in prof.key_averages()}
    assert rows["helper"].count == 2 and rows["mul"].count == 2
    assert prof.self_cpu_time_total > 0 and len(prof.function_events) == 4
    assert "helper" in prof.table(sort_by="cpu_time_total")
    assert profiler.ProfilerActivity.CPU in profiler.supported_activities()


def test_rows_go_into_the_dump_folder_of_each_graph(tmp_path):
    lin = ember.nn.Sequential(ember.nn.Linear(32, 32), ember.nn.GELU(), ember.nn.Linear(32, 4))
    cm = ember.compile(lin, dump=str(tmp_path))
    x = ember.randn(64, 32)
    cm(x).sum().backward()
    with profiler.profile() as prof:
        for _ in range(2):
            cm(x).sum().backward()
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    data = json.loads((folder / "report.json").read_text())
    mine = {r.key for r in prof.key_averages() if r.kind in ("kernel", "extern")}
    assert {r["name"] for r in data["profile"]} == mine
    assert all(r["calls"] == 2 and r["self_us"] > 0 for r in data["profile"])
    assert any(s["file"] == "profile.txt" for s in data["stages"])
    assert "backward." in (folder / "profile.txt").read_text()
    assert "Profile (ember.profiler" in (folder / "index.html").read_text()


def test_eager_one_node_ops_show_their_library_calls_and_kernels():
    """Eager linear, relu, max pooling and the gathered convolution call GEMMs and generated kernels
    directly (not the primitive table): those calls are rows of their own, and a compiled program's
    externs keep their library time (no nested GEMM row inside them)."""
    F = ember.nn.functional
    conv, lin = ember.nn.Conv2d(1, 8, 5), ember.nn.Linear(8 * 12 * 12, 10)
    x = ember.randn(64, 1, 28, 28)

    def step():
        y = F.max_pool2d(F.relu(conv(x)), 2)
        lin(y.flatten(1)).sum().backward()
    step()
    with profiler.profile() as prof:
        step()
    rows = {r.key: r for r in prof.key_averages()}
    assert rows["mm"].count >= 3 and rows["mm"].flops > 0          # linear: forward, dX, dW
    assert {"relu", "max_pool"} <= set(rows)
    assert all(r.self_cpu_time_total > 0 for r in rows.values())
    step_c, cf, _ = _mlp_step()
    with profiler.profile() as prof:
        step_c()
    keys = {r.key for r in prof.key_averages()}
    assert "mm" not in keys and any(k.startswith("forward.x") for k in keys)
