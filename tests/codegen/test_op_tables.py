"""The op table is the one list of ops: every layer's table covers exactly what ember/ir/ops.py says
kernel IR has, and every kernel op has reference semantics. A forgotten row fails here instead of
turning into a silent eager fallback."""
import numpy as np
import pytest

from ember.codegen.cuda import CUDA_BINARY, CUDA_UNARY
from ember.codegen.llvm import LLVM_BINARY, LLVM_UNARY
from ember.ir import kernel, kernel_eval
from ember.ir.ops import KERNEL_BINARY, KERNEL_REDUCE, KERNEL_UNARY, OPS

UNARY_TABLES = {"llvm": LLVM_UNARY, "cuda": CUDA_UNARY, "numpy": kernel_eval.UNARY_NP}
BINARY_TABLES = {"llvm": LLVM_BINARY, "cuda": CUDA_BINARY, "numpy": kernel_eval.BINARY_NP}


def test_every_kernel_op_has_a_reference():
    assert [n for n, d in OPS.items() if d.kernel_op and d.ref is None] == []


def test_kernel_ir_op_sets_come_from_the_op_table():
    assert kernel.UNARY_OPS == KERNEL_UNARY and kernel.BINARY_OPS == KERNEL_BINARY
    assert kernel.REDUCE_OPS == KERNEL_REDUCE


@pytest.mark.parametrize("backend", sorted(UNARY_TABLES))
def test_every_kernel_unary_op_is_spelled(backend):
    assert set(UNARY_TABLES[backend]) == set(KERNEL_UNARY)


@pytest.mark.parametrize("backend", sorted(BINARY_TABLES))
def test_every_kernel_binary_op_is_spelled(backend):
    assert set(BINARY_TABLES[backend]) == set(KERNEL_BINARY)


def test_costs():
    assert OPS["exp"].cost > OPS["add"].cost > OPS["reshape"].cost == 0


@pytest.mark.parametrize("op", ["erf", "sigmoid", "sign"])
def test_eager_and_constant_folding_share_one_definition(op):
    """Constant folding evaluates the reference; eager mode runs the same function."""
    import ember as E
    from ember.frontend import dispatch
    k = dispatch.KERNELS[op]
    k = getattr(k, "__wrapped__", k)        # (the wrapper only routes 16-bit float inputs)
    # (erf: generated code for large arrays, ember/runtime/eager_kernels.py; the reference below that)
    assert getattr(k, "reference", k) is OPS[op].ref
    x = np.array([np.nan, -0.0, -3.0, 0.3, 2.5], np.float32)
    want = {"erf": E.erf, "sigmoid": E.sigmoid, "sign": E.sign}[op](E.tensor(x)).numpy()
    for i, v in enumerate(x):
        got = OPS[op].ref(np, np.array(v, np.float32))
        np.testing.assert_array_equal(np.asarray(got), want[i])
