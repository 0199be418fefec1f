"""Memory planning, the generated executor, runners, eager fallbacks, error context, the pass
manager's dumps / timings, and the index simplifier."""

import weakref

import numpy as np
import pytest

import ember as torch
from ember.compiler.interpreter import Interpreter
from ember.ir import Graph, TType, dtypes as dt, parse
from ember.ir.kernel import o, r
from ember.passes import PASSES, Pipeline, compile_graph
from ember.ir import index as fi
from ember.passes import PassError, register_pass
from ember.runtime.executor import Executor

from helpers import assert_same, check_program, trace

F = dt.float32


def chain_graph(n=6, shape=(64, 32)):
    """x -> exp -> sum(dim i % 2) -> sub -> ...: a chain of kernels with dead intermediates."""
    g = Graph("forward")
    x = g.placeholder("x", TType(shape, F))
    v = x
    for i in range(n):
        s = g.add("sum", [v], {"dims": (i % 2,), "keepdim": True})  # reductions over alternating
        v = g.add("sub", [g.add("exp", [v]), s])                     # axes: a new kernel each
        v = g.add("permute", [g.add("permute", [v], {"dims": (1, 0)})], {"dims": (1, 0)})
    g.set_outputs([v])
    return g


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_memory_reuses_slots_and_outputs_are_fresh():
    g = chain_graph()
    prog = compile_graph(g)
    plan = prog.memory
    internal = [v for v in prog.values.values() if v.kind == "internal"]
    assert len(plan.slots) < len(internal)               # slots are reused
    ex = Executor(prog)
    x = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32) * 0.1
    a = ex.run([x])[0]
    b = ex.run([x + 1])[0]
    assert a is not b and not np.shares_memory(a, b)      # outputs are fresh per call
    assert_same(ex.run([x]), Interpreter(g, np).run([x]))
    np.testing.assert_array_equal(a, ex.run([x])[0])      # the first result was not overwritten


def test_output_pool_keeps_every_output_of_a_call():
    # 12 outputs of one shape (a forward saving its activations): once the caller drops a call's
    # results, the next call reuses all of them (a pool bound below 12 page-faulted fresh ones)
    g = Graph("forward")
    x = g.placeholder("x", TType((32, 16), F))
    outs, v = [], x
    for _ in range(12):
        v = g.add("exp", [g.add("sum", [v], {"dims": (1,), "keepdim": True})])
        v = g.add("sub", [x, v])
        outs.append(v)
    g.set_outputs(outs)
    ex = Executor(compile_graph(g))
    xs = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32) * 0.01
    first = ex.run([xs])
    refs = [weakref.ref(a) for a in first]
    held = first[3]
    del first
    second = ex.run([xs])
    reused = [r() for r in refs if r() is not None and r() is not held]
    assert len(reused) == 11 and all(any(a is b for b in second) for a in reused)   # all but the one held
    assert not any(np.shares_memory(a, held) for a in second)
    assert_same(second, Interpreter(g, np).run([xs]))


def test_output_pool_reuses_while_the_last_result_is_held():
    # results still alive while the next call runs (`y = f(x)` in a loop holds one): the pool must hold
    # more than one call's worth, or every (large) result is fresh, page-faulting memory
    g = Graph("forward")
    x = g.placeholder("x", TType((32, 16), F))
    g.set_outputs([g.add("exp", [x])])
    ex = Executor(compile_graph(g))
    xs = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
    fresh = []

    class Counting:                      # the pool's allocator, counting fresh arrays
        def empty(self, shape, dtype):
            fresh.append(shape)
            return np.empty(shape, dtype)
    ex.run([xs])
    ex.pool.xp = Counting()
    held = []                            # the last two results stay alive (a harness comparing runs)
    for _ in range(10):
        y = ex.run([xs])[0]
        held = (held + [y])[-2:]
    assert len(fresh) <= 2               # then three arrays take turns (one call's worth: 9 fresh ones)
    np.testing.assert_allclose(y, np.exp(xs), rtol=1e-6)


def test_liveness_never_overlaps():
    prog = compile_graph(chain_graph(8))
    plan = prog.memory
    live = {}
    for i, s in enumerate(prog.steps):
        for name in s.writes:
            if name in plan.assign:
                live.setdefault(name, [i, i])
        for name in s.reads:
            if name in plan.assign:
                live[name][1] = i
    inplace = {(out, inp) for _, out, inp in plan.inplace}
    names = list(live)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if plan.assign[a] != plan.assign[b] or (a, b) in inplace or (b, a) in inplace:
                continue
            (a0, a1), (b0, b1) = live[a], live[b]
            assert a1 < b0 or b1 < a0, f"{a} and {b} share a slot while both live"


def test_inplace_pointwise():
    g = parse("""graph forward(%a: f32[4,5], %b: f32[5,4], %c: f32[4,4]) {
  %0 = matmul(%a, %b) : f32[4,4]
  %1 = max(%0, dims=[0], keepdim=false) : f32[4]
  %2 = sum(%a, dims=none, keepdim=false) : f32[]
  %3 = mul(%0, %2) : f32[4,4]
  %4 = matmul(%3, %c) : f32[4,4]
  return (%4, %1)
}
""")
    prog = check_program(g)
    assert [(out, inp) for _, out, inp in prog.memory.inplace] == [("buf3", "buf0")]
    assert prog.memory.assign["buf3"] == prog.memory.assign["buf0"]
    for step, out, inp in prog.memory.inplace:
        k = next(s for s in prog.steps if s.name == step).kernel
        assert not k.inner and len(k.stores) == 1


def test_consumers_run_in_the_order_their_inputs_were_made():
    # %3 reads %0 but comes last in the graph (as a rewrite's nodes do: decompose's column sums): it runs
    # right after %1, while %0 is fresh, not after the rest of the chain (fusion/schedule.py)
    g = parse("""graph forward(%x: f32[8,8], %w: f32[8,8], %v: f32[8,8]) {
  %0 = matmul(%x, %w) : f32[8,8]
  %1 = matmul(%0, %w) : f32[8,8]
  %2 = matmul(%1, %w) : f32[8,8]
  %3 = matmul(%0, %v) : f32[8,8]
  return (%2, %3)
}
""")
    prog = check_program(g)
    assert [s.kernel.op for s in prog.steps] == ["matmul"] * 4
    first, second = prog.steps[0].writes[0], prog.steps[1].writes[0]
    assert [s.reads for s in prog.steps[1:]] == [[first, "w"], [first, "v"], [second, "w"]]


def test_executor_source_is_readable_and_deterministic():
    g = chain_graph(2)
    src1 = Executor(compile_graph(g)).source
    src2 = Executor(compile_graph(g)).source
    assert src1 == src2
    assert src1.startswith("def run_forward(in_x):")
    assert "_k0_" in src1 and "return [" in src1
    assert str(compile_graph(g)) == str(compile_graph(g))


def test_eager_fallbacks_run_and_are_recorded():
    def f(x):
        return torch.cumsum(x.exp(), 1) * 2 + torch.argsort(x, 1).float()
    g, _, _ = trace(f, torch.randn(4, 5))
    prog = check_program(g)
    ops = {s.op for s in prog.eager_steps}
    assert {"cumsum", "argsort"} <= ops
    assert any(r.kind == "fallback" and "cumsum" in r.message for r in prog.records)


def test_embedding_gather_fuses():
    def f(w, idx, pos):
        return (w[idx] + pos).sum(-1)
    w, idx, pos = torch.randn(10, 8), torch.randint(0, 10, (3, 4)), torch.randn(4, 8)
    g, _, _ = trace(f, w, idx, pos)
    prog = check_program(g)
    # the negative-index wrap of x[idx] is one small kernel over idx; the gather itself is fused
    assert len(prog.steps) <= 2 and not prog.eager_steps
    assert "take" not in {s.op for s in prog.eager_steps}


def test_gather_index_out_of_range_raises():
    g = parse("""graph forward(%w: f32[10,8], %i: i64[3]) {
  %0 = take(%w, %i, dim=0) : f32[3,8]
  %1 = exp(%0) : f32[3,8]
  return (%1)
}
""")
    ex = Executor(compile_graph(g))
    with pytest.raises(IndexError, match="out of bounds"):
        ex.run([np.ones((10, 8), np.float32), np.array([1, 12, 0])])


def test_error_names_the_step():
    g = parse("""graph forward(%x: f32[4]) {
  %0 = exp(%x) : f32[4]
  return (%0)
}
""")
    prog = compile_graph(g)

    import dataclasses

    from ember.runtime.device import REFERENCE, Module

    class Fail:
        def launch(self, arrays, threads=None):
            raise ValueError("boom")

    class Boom(Module):   # a device whose every kernel fails
        def __init__(self, device, build, kernels):
            super().__init__(device, build, kernels)
            self._bind()

        def kernel_callable(self, kernel):
            return Fail()
    with pytest.raises(ValueError, match=r"while executing step k0_exp"):
        Executor(prog, dataclasses.replace(REFERENCE, name="boom", load=Boom)).run([np.ones(4, np.float32)])


def test_llvm_runner_matches_numpy_runner():
    pytest.importorskip("llvmlite")
    g = chain_graph(2, (16, 8))
    x = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)
    prog = compile_graph(g)
    a = Executor(prog, runner="numpy").run([x])
    b = Executor(prog, runner="llvm").run([x])
    assert_same(b, a, rtol=1e-4, atol=1e-4)     # polynomial exp: ~1 ulp from numpy


def test_mutations_are_returned_after_outputs():
    g = parse("""graph step(%w: f32[4], %g: f32[4]) {
  %0 = full(shape=[], value=0.1, dtype=f32) : f32[]
  %1 = mul(%g, %0) : f32[4]
  %2 = sub(%w, %1) : f32[4]
  %3 = sum(%2, dims=[0], keepdim=false) : f32[]
  return (%3)
  mutate %w <- %2
}
""")
    prog = check_program(g)
    assert len(prog.results) == 2 and len(prog.steps) == 1


# ------------------------------------------------------------------------- pass manager
def test_pipeline_dumps_and_times(tmp_path):
    g = chain_graph(1)
    pipe = Pipeline(["decompose", "canonicalize", "cse", "dce"])
    pipe.run(g, verify=True, dump_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["00_captured.ir", "01_decompose.ir", "02_canonicalize.ir", "03_cse.ir", "04_dce.ir"]
    assert [t.name for t in pipe.timings] == ["decompose", "canonicalize", "cse", "dce"]
    assert parse((tmp_path / "04_dce.ir").read_text()) == g


def test_compile_graph_dumps_with_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_DUMP", str(tmp_path))
    prog = compile_graph(chain_graph(1))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "forward.00_captured.ir" and files[-1].endswith("fusion.kir")
    assert prog.timings["passes"]


def test_pipeline_names_a_pass_that_breaks_the_graph():
    @register_pass("_break_types")
    def _break(g):
        for n in g.nodes():
            if n.op == "exp":
                n.type = TType((3,), F)
        return True
    with pytest.raises(PassError, match="_break_types"):
        Pipeline(["_break_types"]).run(chain_graph(1), verify=True)
    del PASSES["_break_types"]


def test_registry_has_the_passes():
    assert {"decompose", "canonicalize", "constant_fold", "cse", "dce", "movement"} <= set(PASSES)


# ----------------------------------------------------------------------- index simplifier
@pytest.mark.parametrize("in_shape,out_shape,want", [
    ((4, 1, 12), (4, 12), "o0, 0, o1"),
    ((48,), (4, 12), "o0*12 + o1"),
    ((4, 3, 4), (4, 12), "o0, o1 // 4, o1 % 4"),
])
def test_reshape_maps_simplify(in_shape, out_shape, want):
    rng = fi.domain_ranges(out_shape, ())
    idx = [o(k) for k in range(len(out_shape))]
    assert fi.key_of(fi.simplify_all(fi.map_reshape(in_shape, out_shape, idx), rng)) == want


def test_simplifier_splits_merged_dims():
    rng = {"o0": (0, 23), "r0": (0, 63)}
    assert fi.key_of([fi.simplify((r(0) + o(0) * 64) // 128, rng)]) == "o0 // 2"
    assert fi.key_of([fi.simplify((r(0) + o(0) * 64) % 128, rng)]) == "r0 + o0 % 2*64"


def test_simplifier_is_exact():
    rng = {"o0": (0, 5), "o1": (0, 6), "r0": (0, 3)}
    exprs = [(o(0) * 7 + o(1)) // 7, (o(0) * 7 + o(1)) % 7, ((o(0) * 4 + r(0)) // 2) % 3,
             (o(1) - 3) % 7, (o(0) * 3 + 5) // 3, ((o(1) // 2) // 3),
             # a merged dim split again: (j*R + n) // (s*R) with n < R is j // s (and the % twin)
             (r(0) + o(0) * 4) // 8, (r(0) + o(0) * 4) % 8, (o(1) * 6 + 3) // 4, (o(1) * 6 + 5) % 12]
    for e in exprs:
        s = fi.simplify(e, rng)
        for a in range(6):
            for b in range(7):
                for c in range(4):
                    env = {"o0": a, "o1": b, "r0": c}
                    assert _ev(e, env) == _ev(s, env), (fi.key_of([e]), fi.key_of([s]))


def _ev(e, env):
    from ember.ir.kernel import IConst, Var
    if isinstance(e, Var):
        return env[e.name]
    if isinstance(e, IConst):
        return e.value
    a, b = _ev(e.a, env), _ev(e.b, env)
    if e.op == "+":
        return a + b
    if e.op == "*":
        return a * b
    return a // b if e.op == "//" else a % b
