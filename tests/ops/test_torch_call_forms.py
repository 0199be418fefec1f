"""Call forms and edge cases PyTorch scripts use, found by a probe sweep: PyTorch's keyword names
(axis=, keepdims=, input=, other=, exponent=, shape=/dims=/size=), size= for factories, zero-size
products, bool triangles, masked_fill on integers -- each against torch."""
import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")


def _same(e, t):
    assert tuple(e.shape) == tuple(t.shape) and str(e.dtype).split(".")[1] == str(t.dtype).split(".")[1]
    np.testing.assert_allclose(e.detach().float().numpy(), t.detach().float().numpy(), rtol=1e-6, atol=1e-6)


CALLS = {
    "sum_axis": lambda L, a, b: a.sum(axis=0),
    "mean_axis_keepdims": lambda L, a, b: a.mean(axis=1, keepdims=True),
    "max_axis": lambda L, a, b: a.max(axis=1).values,
    "fn_sum_axis": lambda L, a, b: L.sum(a, axis=1),
    "cat_axis": lambda L, a, b: L.cat([a, b], axis=0),
    "stack_axis": lambda L, a, b: L.stack([a, b], axis=1),
    "add_other": lambda L, a, b: a.add(other=b),
    "mul_other": lambda L, a, b: a.mul(other=2),
    "pow_exponent": lambda L, a, b: a.pow(exponent=2),
    "fn_pow_exponent": lambda L, a, b: L.pow(a, exponent=3),
    "mean_input": lambda L, a, b: L.mean(input=a),
    "matmul_input_other": lambda L, a, b: L.matmul(input=a, other=b.t()),
    "clamp_input": lambda L, a, b: L.clamp(input=a, max=0.5),
    "where_names": lambda L, a, b: L.where(condition=a > 0, input=a, other=b),
    "lerp_names": lambda L, a, b: a.lerp(end=b, weight=0.25),
    "reshape_shape": lambda L, a, b: a.reshape(shape=(3, 4)),
    "view_size": lambda L, a, b: a.view(size=(12,)),
    "permute_dims": lambda L, a, b: a.permute(dims=(1, 0)),
    "expand_size": lambda L, a, b: a[:1].expand(size=(3, 4)),
    "split_size": lambda L, a, b: a.split(split_size=2, dim=1)[1],
    "add_inplace_other": lambda L, a, b: a.clone().add_(other=b),
    "zeros_size": lambda L, a, b: L.zeros(size=(2, 3)),
    "ones_size": lambda L, a, b: L.ones(size=[4]),
    "new_zeros_size": lambda L, a, b: a.new_zeros(size=(2,)),
    "randn_size": lambda L, a, b: L.randn(size=(2, 3)).shape == (2, 3) and L.zeros(()),
    "randint_high_size": lambda L, a, b: L.randint(high=5, size=(3,)).shape == (3,) and L.zeros(()),
    "matmul_empty_rows": lambda L, a, b: L.zeros(0, 4) @ b.t(),
    "matmul_empty_cols": lambda L, a, b: a @ L.zeros(4, 0),
    "matmul_empty_k": lambda L, a, b: L.ones(3, 0) @ L.ones(0, 2),
    "matmul_empty_both": lambda L, a, b: L.zeros(0, 0) @ L.zeros(0, 0),
    "bmm_empty": lambda L, a, b: L.bmm(L.zeros(2, 0, 3), L.zeros(2, 3, 4)),
    "linear_empty_batch": lambda L, a, b: (F if L is ember else torch.nn.functional).linear(L.zeros(0, 4), a, b[:, 0]),
    "linear_bf16_empty_batch": lambda L, a, b: (F if L is ember else torch.nn.functional).linear(
        L.zeros(0, 4, dtype=L.bfloat16), a.bfloat16(), b[:, 0].bfloat16()),
    "einsum_empty": lambda L, a, b: L.einsum("ij,jk->ik", L.zeros(0, 4), b.t()),
    "einsum_zero_k": lambda L, a, b: L.einsum("ij,jk->ik", L.zeros(3, 0), L.zeros(0, 2)),
    "triu_bool": lambda L, a, b: (a > 0).triu(),
    "tril_bool_offset": lambda L, a, b: (a > 0).tril(-1),
    "masked_fill_int_float": lambda L, a, b: L.tensor([1, 2, 3]).masked_fill(L.tensor([True, False, True]), 2.5),
    "masked_fill_int_negative": lambda L, a, b: L.tensor([1, 2]).masked_fill(L.tensor([True, False]), -3.7),
    "masked_fill_bool": lambda L, a, b: L.tensor([True, False]).masked_fill(L.tensor([False, True]), 1),
    "float_power_int": lambda L, a, b: L.float_power(L.tensor([2, 3]), 2),
    "float_power_method": lambda L, a, b: a.abs().float_power(0.5),
    "float_power_scalar_base": lambda L, a, b: L.float_power(2, L.tensor([1, 2])),
    "inner_2d": lambda L, a, b: L.inner(a, b),
    "inner_3d": lambda L, a, b: L.inner(a.reshape(3, 2, 2), b[:, :2]),
    "inner_scalar": lambda L, a, b: L.inner(L.tensor(2.0), a),
    "diag_is_a_copy": lambda L, a, b: (lambda x: (x.diag().zero_(), x)[1])(a[:, :3].clone()),
    "index_select_0d_index": lambda L, a, b: a.index_select(0, L.tensor(1)),
    "norm_nuc": lambda L, a, b: a.norm(p="nuc"),
    "bool_or_int": lambda L, a, b: (a > 0) | 2,
    "int_xor_bool": lambda L, a, b: 1 ^ (a > 0),
    "bool_and_bool_scalar": lambda L, a, b: (a > 0) & True,
    "reflected_bool_xor": lambda L, a, b: True ^ (a > 0),
    # diag_embed's offset / dim1 / dim2; repeat_interleave's one-tensor form and output_size
    "diag_embed_offset_dims": lambda L, a, b: L.diag_embed(a[:2, :3], offset=1, dim1=0, dim2=2),
    "diag_embed_negative_offset": lambda L, a, b: a[0].diag_embed(-2),
    "diag_embed_keeps_inf_on_diagonal": lambda L, a, b: L.diag_embed(a[0] / 0),
    "repeat_interleave_counts": lambda L, a, b: L.repeat_interleave(L.tensor([1, 0, 3])),
    "repeat_interleave_output_size": lambda L, a, b: L.repeat_interleave(a, L.tensor([1, 2, 0]), dim=0, output_size=3),
    # 0-d inputs
    "softmax_0d": lambda L, a, b: a[0, 0].softmax(0),
    "flip_0d": lambda L, a, b: a[0, 0].flip(0),
    "nonzero_0d": lambda L, a, b: L.nonzero(L.tensor(5)),
    "nonzero_0d_zero": lambda L, a, b: L.nonzero(L.tensor(0.0)),
    # list keys: [] is an empty long index; a list holding a sequence or a tensor is a tuple of indices
    "index_empty_list": lambda L, a, b: a[[]],
    "index_nested_list": lambda L, a, b: a[[[0, 2]]],
    "index_list_of_0d_tensors": lambda L, a, b: a[[L.tensor(0), L.tensor(1)]],
    "index_list_of_tensors": lambda L, a, b: a[[L.tensor([0, 2]), L.tensor([1, 3])]],
    "index_list_with_slice": lambda L, a, b: a[[1, slice(1, 3)]],
    "setitem_nested_list": lambda L, a, b: (lambda x: (x.__setitem__([[0, 2]], 5.0), x)[1])(a.clone()),
    # integer powers: a Python int base with negative integer exponents is 0 / +-1, as tensor ** tensor
    "pow_int_base_negative_exponent": lambda L, a, b: 2 ** L.tensor([-1, 2, 3]),
    "pow_fn_int_base_negative_exponent": lambda L, a, b: L.pow(-1, L.tensor([-1, -2, 3], dtype=L.int32)),
    # an integer result type: each operand goes to float from its own value (the -2 is not wrapped to uint8)
    "uint8_div_0d_negative": lambda L, a, b: L.tensor([200, 3], dtype=L.uint8) / L.tensor(-2),
    "uint8_true_divide_0d_negative": lambda L, a, b: L.true_divide(L.tensor(-2), L.tensor([200, 3], dtype=L.uint8)),
    "uint8_copysign_negative": lambda L, a, b: L.copysign(L.tensor([200, 3], dtype=L.uint8), -1),
    "uint8_atan2_0d_negative": lambda L, a, b: L.atan2(L.tensor([200, 3], dtype=L.uint8), L.tensor(-2)),
    "uint8_xlogy_0d_negative": lambda L, a, b: L.xlogy(L.tensor(-2), L.tensor([200, 3], dtype=L.uint8)),
    # a non-overlapping unfold is a writable view
    "unfold_fill_writes_base": lambda L, a, b: (lambda x: (x.unfold(1, 2, 2).fill_(3), x)[1])(a.clone()),
    "unfold_mul_writes_base": lambda L, a, b: (lambda x: (x.unfold(0, 1, 2).mul_(2), x)[1])(a.clone()),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_call_form_matches_torch(name):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    e = CALLS[name](ember, ember.tensor(a), ember.tensor(b))
    t = CALLS[name](torch, torch.tensor(a), torch.tensor(b))
    _same(e, t)


def test_zero_size_products_have_gradients():
    x = ember.zeros(0, 3, requires_grad=True)
    lin = ember.nn.Linear(3, 2)
    lin(x).sum().backward()
    assert tuple(x.grad.shape) == (0, 3) and float(lin.weight.grad.abs().sum()) == 0.0
    assert tuple(ember.compile(lin)(ember.zeros(0, 3)).shape) == (0, 2)


def test_aliases_stay_one_function_and_errors_name_the_argument():
    assert ember.arctan2 is ember.atan2
    with pytest.raises(TypeError, match="multiple values for argument 'size'"):
        ember.zeros(2, size=(3,))
    with pytest.raises(RuntimeError, match="cannot be converted"):
        ember.tensor([1]).masked_fill(ember.tensor([True]), float("inf"))


def test_cosine_similarity_of_a_zero_vector_has_a_finite_gradient():
    import ember.nn.functional as F
    rng = np.random.default_rng(1)
    a = np.zeros((2, 3), np.float32)
    a[1] = [1.0, -2.0, 0.5]
    b = rng.standard_normal((2, 3)).astype(np.float32)
    grads = []
    for lib, fn in ((ember, F.cosine_similarity), (torch, torch.nn.functional.cosine_similarity)):
        x, y = lib.tensor(a, requires_grad=True), lib.tensor(b, requires_grad=True)
        r = fn(x, y)
        r.sum().backward()
        grads.append((r.detach().numpy(), x.grad.numpy(), y.grad.numpy()))
    for e, t in zip(*grads):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)
