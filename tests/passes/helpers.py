"""Shared helpers for pass tests: trace ember code into graphs, compile them into Programs, run a
Program with the numpy runner and compare with the reference interpreter (eager kernels)."""
from __future__ import annotations

import numpy as np

import ember
from ember.frontend import dispatch
from ember.compiler.compiled import FromArg, FromConst, FromRng
from ember.compiler.interpreter import Interpreter
from ember.ir import verify
from ember.passes import compile_graph
from ember.runtime.executor import Executor


def trace(fn, *args, **kw):
    """(forward graph, backward graph or None, the CompiledFunction) of fn on args (eager backend)."""
    cf = ember.compile(fn, backend="eager", **kw)
    cf(*args)
    v = cf.variants[-1]
    return v.graph, (v.backward.graph if v.backward else None), cf


def random_inputs(graph, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for p in graph.inputs:
        d = p.dtype
        if d.is_floating_point:
            out.append(rng.standard_normal(p.shape).astype(d.np))
        elif d is ember.bool:
            out.append(rng.random(p.shape) < 0.5)
        else:
            hi = min(p.shape) if p.shape else 2
            out.append(rng.integers(0, max(hi, 1), p.shape).astype(d.np))
    return out


def run_both(graph, arrays, runner="numpy", **kw):
    """(program results, interpreter results) for graph on arrays."""
    verify(graph)
    prog = compile_graph(graph, verify=True, **kw)
    ex = Executor(prog, runner=runner, eager_kernels=dispatch.KERNELS)
    got = ex.run([a.copy() for a in arrays])
    # twice: buffers are reused across calls, results must not change (and outputs stay fresh)
    got2 = ex.run([a.copy() for a in arrays])
    want = Interpreter(graph, np).run([a.copy() for a in arrays])
    for a, b in zip(got, got2):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return prog, got, want


def assert_same(got, want, rtol=1e-5, atol=1e-6):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"result {i}: shape {a.shape} != {b.shape}"
        assert a.dtype == b.dtype, f"result {i}: dtype {a.dtype} != {b.dtype}"
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"result {i}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"result {i}")


def check_program(graph, arrays=None, rtol=1e-5, atol=1e-6, **kw):
    arrays = random_inputs(graph) if arrays is None else arrays
    prog, got, want = run_both(graph, arrays, **kw)
    assert_same(got, want, rtol, atol)
    return prog


def check_train_step(fn, args, rtol=2e-4, atol=2e-5, runner="numpy", options=None):
    """Run fn's forward graph and then its backward graph with consistent values (the saved values
    the forward program computed, ones as output gradients), through compiled Programs and through
    the interpreter; compare outputs and gradients.  Returns (forward program, backward program)."""
    fw, bw, cf = trace(fn, *args, options=options)
    v = cf.variants[-1]
    leaves = list(args)
    arrays = []
    for b in v.bindings:
        if isinstance(b, FromRng):             # the generator key (seed, offset) of random ops
            arrays.append(np.array([20240917, 12345], np.int64))
            continue
        assert isinstance(b, (FromArg, FromConst)), b
        arrays.append((leaves[b.index] if isinstance(b, FromArg) else b.tensor)._data.copy())
    nu = v.backward.n_user
    pf = compile_graph(fw, verify=True, alias_outputs=range(nu, len(fw.outputs)))
    pb = compile_graph(bw, verify=True)
    exf = Executor(pf, runner=runner, eager_kernels=dispatch.KERNELS)
    exb = Executor(pb, runner=runner, eager_kernels=dispatch.KERNELS)
    results = {}
    for tag, fwd_run, bwd_run in (("compiled", exf.run, exb.run),
                                  ("interpreter", Interpreter(fw, np).run, Interpreter(bw, np).run)):
        outs = fwd_run([a.copy() for a in arrays])
        saved = outs[nu:len(fw.outputs)]
        grads = [np.ones_like(outs[i]) for i in v.backward.grad_out_index]
        feed = [saved[i] if kind == "saved" else grads[i] for kind, i in v.backward.plan]
        results[tag] = (outs[:nu], bwd_run(feed))
    assert_same(results["compiled"][0], results["interpreter"][0], rtol, atol)
    assert_same(results["compiled"][1], results["interpreter"][1], rtol, atol)
    return pf, pb
