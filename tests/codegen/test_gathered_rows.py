"""A load through a gathered index (an embedding row) inside reduction loops: the gathered index
is computed and bounds-checked once per outer point, in the block of its own loop variables, so
every reduction pass reads an affine, vectorisable row; values equal the evaluator's, and an
out-of-range index still raises."""
import numpy as np
import pytest

from codegen_helpers import check_kernel, run_llvm
from ember.codegen.llvm.render import emit_module
from ember.ir.kernel_text import parse_kernel

# an embedding lookup + position embedding + layer norm (GPT's first kernel), 3 reduction passes
EMBED_LN = """
kernel k0_embed_ln(x: i64[4,8], wte: f32[11,32], wpe: f32[8,32]) -> (out: f32[4,8,32]) outer=[4,8] inner=[32] {
  %0 = load wte[x[o0, o1], r0] : f32
  %1 = load wpe[o1, r0] : f32
  %2 = add %0, %1 : f32
  %3 = reduce.sum %2 : f32
  %4 = const 0.03125 : f32
  %5 = mul %3, %4 : f32
  %6 = sub %2, %5 : f32
  %7 = mul %6, %6 : f32
  %8 = reduce.sum %7 : f32
  %9 = mul %8, %4 : f32
  %10 = const 1e-05 : f32
  %11 = add %9, %10 : f32
  %12 = rsqrt %11 : f32
  %13 = mul %6, %12 : f32
  store out[o0, o1, r0] = %13
}
"""


def _inputs(bad=False):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, (4, 8)).astype(np.int64)
    if bad:
        x[2, 3] = 11
    return [x, rng.standard_normal((11, 32)).astype(np.float32), rng.standard_normal((8, 32)).astype(np.float32)]


def test_gathered_row_index_is_read_once_per_point_and_values_match():
    k = parse_kernel(EMBED_LN)
    text = str(emit_module([k]))
    # one read of x[o0, o1] (before the passes), not one per reduction pass
    assert text.count('getelementptr inbounds i64, ptr %"x"') == 1, text
    check_kernel(k, _inputs(), rtol=1e-5, atol=1e-5)


def test_gathered_row_index_out_of_range_still_raises():
    k = parse_kernel(EMBED_LN)
    with pytest.raises(IndexError):
        run_llvm(k, _inputs(bad=True))
