"""Movement ops (views and copies) against torch: values, gradients, and view semantics."""
import numpy as np
import pytest

from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, T, check, gradcheck

pytestmark = NUMPY_WARNINGS_ARE_ERRORS

S = (2, 3, 4)


def test_view(): check("view", lambda x: x.view(4, 6), None, S)
def test_view_infer(): check("view", lambda x: x.view(-1, 2), None, S)
def test_view_tuple(): check("view", lambda x: x.view((6, 4)), None, S)
def test_view_as(): check("view_as", lambda x, y: x.view_as(y), None, S, (6, 4))
def test_reshape(): check("reshape", lambda x: x.reshape(3, -1), None, S)
def test_reshape_noncontig(): check("reshape", lambda x: x.transpose(0, 2).reshape(-1), None, S)
def test_reshape_as(): check("reshape_as", lambda x, y: x.reshape_as(y), None, S, (4, 6))
def test_permute(): check("permute", lambda x: x.permute(2, 0, 1), None, S)
def test_permute_tuple(): check("permute", lambda x: x.permute((1, 2, 0)), None, S)
def test_permute_neg(): check("permute", lambda x: x.permute(-1, 0, 1), None, S)
def test_transpose(): check("transpose", lambda x: x.transpose(0, -1), None, S)
def test_t(): check("t", lambda x: x.t(), None, (3, 4))
def test_t_1d(): check("t", lambda x: x.t(), None, (3,))
def test_T(): check("T", lambda x: x.T, None, (3, 4))
def test_mT(): check("mT", lambda x: x.mT, None, S)
def test_squeeze(): check("squeeze", lambda x: x.squeeze(), None, (1, 3, 1, 4))
def test_squeeze_dim(): check("squeeze", lambda x: x.squeeze(2), None, (1, 3, 1, 4))
def test_squeeze_dim_noop(): check("squeeze", lambda x: x.squeeze(1), None, (1, 3, 1, 4))
def test_squeeze_dims(): check("squeeze", lambda x: x.squeeze((0, 2)), None, (1, 3, 1, 4))
def test_unsqueeze(): check("unsqueeze", lambda x: x.unsqueeze(1), None, S)
def test_unsqueeze_neg(): check("unsqueeze", lambda x: x.unsqueeze(-1), None, S)
def test_unsqueeze_0d(): check("unsqueeze", lambda x: x.unsqueeze(0), None, ())
def test_flatten(): check("flatten", lambda x: x.flatten(), None, S)
def test_flatten_range(): check("flatten", lambda x: x.flatten(1), None, S)
def test_flatten_range2(): check("flatten", lambda x: x.flatten(0, 1), None, S)
def test_flatten_0d(): check("flatten", lambda x: x.flatten(), None, ())
def test_unflatten(): check("unflatten", lambda x: x.unflatten(2, (2, 2)), None, S)
def test_unflatten_infer(): check("unflatten", lambda x: x.unflatten(-1, (-1, 2)), None, S)
def test_expand(): check("expand", lambda x: x.expand(3, 2, 4), None, (2, 1))
def test_expand_neg(): check("expand", lambda x: x.expand(-1, 5), None, (2, 1))
def test_expand_as(): check("expand_as", lambda x, y: x.expand_as(y), None, (3, 1), (2, 3, 4))
def test_broadcast_to(): check("broadcast_to", lambda x: x.broadcast_to((3, 4)), None, (4,))
def test_repeat(): check("repeat", lambda x: x.repeat(2, 3), None, (2, 3))
def test_repeat_more_dims(): check("repeat", lambda x: x.repeat(2, 1, 3), None, (2, 3))
def test_tile(): check("tile", lambda x: x.tile((2,)), None, (2, 3))
def test_repeat_interleave(): check("repeat_interleave", lambda x: x.repeat_interleave(2, dim=1), None, (2, 3))
def test_repeat_interleave_flat(): check("repeat_interleave", lambda x: x.repeat_interleave(3), None, (2, 3))
def test_cat(): check("cat", lambda x, y: E.cat([x, y], 1), lambda x, y: T.cat([x, y], 1), (2, 3), (2, 5))
def test_cat_neg(): check("cat", lambda x, y, z: E.cat((x, y, z), -1), lambda x, y, z: T.cat((x, y, z), -1), (2, 3), (2, 1), (2, 2))
def test_cat_promote(): check("cat", lambda x, y: E.cat([x, y.long()]), lambda x, y: T.cat([x, y.long()]), (2,), (3,))
def test_cat_empty(): check("cat", lambda x, y: E.cat([x, y]), lambda x, y: T.cat([x, y]), (0,), (3,))
def test_stack(): check("stack", lambda x, y: E.stack([x, y]), lambda x, y: T.stack([x, y]), (2, 3), (2, 3))
def test_stack_dim(): check("stack", lambda x, y: E.stack([x, y], dim=-1), lambda x, y: T.stack([x, y], dim=-1), (2, 3), (2, 3))
def test_hstack(): check("hstack", lambda x, y: E.hstack([x, y]), lambda x, y: T.hstack([x, y]), (2, 3), (2, 1))
def test_vstack(): check("vstack", lambda x, y: E.vstack([x, y]), lambda x, y: T.vstack([x, y]), (3,), (3,))
def test_split(): check("split", lambda x: x.split(2, dim=1), None, (3, 5))
def test_split_sizes(): check("split", lambda x: x.split([1, 4], dim=1), None, (3, 5))
def test_tensor_split(): check("tensor_split", lambda x: x.tensor_split(3, dim=1), None, (3, 5))
def test_chunk(): check("chunk", lambda x: x.chunk(3, 1), None, (3, 5))
def test_chunk_uneven(): check("chunk", lambda x: x.chunk(4, 0), None, (6, 2))
def test_unbind(): check("unbind", lambda x: x.unbind(1), None, (3, 4))
def test_narrow(): check("narrow", lambda x: x.narrow(1, 1, 2), None, (3, 5))
def test_narrow_neg(): check("narrow", lambda x: x.narrow(-1, -3, 2), None, (3, 5))
def test_select(): check("select", lambda x: x.select(1, -1), None, (3, 5))
def test_flip(): check("flip", lambda x: x.flip(0), None, S)
def test_flip_dims(): check("flip", lambda x: x.flip((0, 2)), None, S)
def test_fliplr(): check("fliplr", lambda x: x.fliplr(), None, (3, 4))
def test_roll(): check("roll", lambda x: x.roll(1, 0), None, (3, 4))
def test_roll_neg(): check("roll", lambda x: x.roll(-2, 1), None, (3, 4))
def test_roll_multi(): check("roll", lambda x: x.roll((1, 2), (0, 1)), None, (3, 4))
def test_roll_flat(): check("roll", lambda x: x.roll(5), None, (3, 4))
def test_tril(): check("tril", lambda x: x.tril(), None, (4, 5))
def test_tril_k(): check("tril", lambda x: x.tril(-1), None, (2, 4, 5))
def test_triu(): check("triu", lambda x: x.triu(), None, (4, 5))
def test_triu_k(): check("triu", lambda x: x.triu(2), None, (5, 4))
def test_tril_int(): check("tril", lambda x: x.tril(), None, (4, 4), dtype="int64")
def test_diagonal(): check("diagonal", lambda x: x.diagonal(), None, (4, 5))
def test_diagonal_offset(): check("diagonal", lambda x: x.diagonal(1), None, (4, 5))
def test_diagonal_neg(): check("diagonal", lambda x: x.diagonal(-2, 1, 2), None, (2, 4, 5))
def test_diag(): check("diag", lambda x: E.diag(x), lambda x: T.diag(x), (4,))
def test_diag_offset(): check("diag", lambda x: E.diag(x, 1), lambda x: T.diag(x, 1), (3,))
def test_diag_embed(): check("diag_embed", lambda x: E.diag_embed(x), lambda x: T.diag_embed(x), (2, 3))
def test_movedim(): check("movedim", lambda x: x.movedim(0, -1), None, S)
def test_movedim_multi(): check("movedim", lambda x: x.movedim((0, 1), (2, 0)), None, S)
def test_swapaxes(): check("swapaxes", lambda x: x.swapaxes(0, 1), None, S)
def test_contiguous(): check("contiguous", lambda x: x.t().contiguous(), None, (3, 4))


@pytest.mark.parametrize("dtype", ["int64", "bool", "float16", "uint8"])
def test_movement_dtypes(dtype):
    check("permute", lambda x: x.permute(1, 0), None, (3, 4), dtype=dtype)
    check("cat", lambda x: E.cat([x, x], 0), lambda x: T.cat([x, x], 0), (3, 4), dtype=dtype)
    check("flip", lambda x: x.flip(1), None, (3, 4), dtype=dtype)
    check("roll", lambda x: x.roll(1, 1), None, (3, 4), dtype=dtype)
    check("repeat", lambda x: x.repeat(2, 1), None, (3, 4), dtype=dtype)


# ---------------------------------------------------------------------- views share storage
def test_view_errors_on_incompatible_strides():
    x = E.ones(3, 4).t()
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        x.view(12)
    assert x.reshape(12).shape == (12,)


@pytest.mark.parametrize("make", [
    lambda x: x.view(12), lambda x: x.view(3, 4)[1], lambda x: x.view(3, 4)[:, 1],
    lambda x: x.view(3, 4).t(), lambda x: x.view(3, 4).transpose(0, 1), lambda x: x.view(1, 12).squeeze(0),
    lambda x: x.unsqueeze(0), lambda x: x.view(3, 4).narrow(1, 1, 2), lambda x: x.view(3, 4).select(0, 2),
    lambda x: x.view(3, 4).split(2, 1)[1], lambda x: x.view(3, 4).chunk(2, 0)[0], lambda x: x.view(3, 4).unbind(0)[1],
    lambda x: x.view(3, 4).permute(1, 0), lambda x: x.view(3, 4).diagonal(), lambda x: x[2:8:2],
    lambda x: x.view(3, 4)[..., None, 1:], lambda x: x.view(3, 4).flatten(), lambda x: x.view(3, 4).unflatten(1, (2, 2)),
    lambda x: x.view(3, 1, 4).expand(3, 2, 4), lambda x: x.detach(), lambda x: x.data, lambda x: x.view_as(x),
    lambda x: x.view(3, 4).movedim(0, 1), lambda x: x.reshape(4, 3),
], ids=lambda f: "")
def test_views_share_storage(make):
    x = E.arange(12.0)
    v = make(x)
    assert v._base is x or v._base is None and v is x
    before = x._version
    with E.no_grad():
        x.add_(1)
    assert v._version == before + 1, "a write into the base bumps the view's version"
    np.testing.assert_array_equal(v.numpy(), make(E.arange(12.0) + 1).numpy())
    writeable = getattr(v._data.flags, "writeable", True)   # cupy arrays have no such flag
    if v.numel() and v.is_contiguous() or writeable:
        with E.no_grad():
            v.mul_(0) if writeable else None
        if writeable:
            assert x._version == before + 2
            assert float(make(x).abs().sum()) == 0.0


def test_view_write_through_setitem():
    x = E.zeros(3, 4)
    r = x[1]
    r[2] = 5.0
    assert x[1, 2].item() == 5.0
    x[0, 0] = 7.0
    c = x[:, 0]
    assert c.tolist() == [7.0, 0.0, 0.0]
    x.t()[3, 2] = 9.0
    assert x[2, 3].item() == 9.0


def test_diagonal_is_a_writable_view():
    x = E.zeros(3, 4)
    x.diagonal().fill_(1.0)
    x.diagonal(1).add_(2.0)
    assert x.tolist() == [[1, 2, 0, 0], [0, 1, 2, 0], [0, 0, 1, 2]]
    y = E.ones(2, 3, 3, requires_grad=True)
    z = y * 1
    z.diagonal(0, 1, 2).mul_(5)
    z.sum().backward()
    assert y.grad[0].tolist() == [[5, 1, 1], [1, 5, 1], [1, 1, 5]]


def test_flip_is_a_copy():
    x = E.arange(4.0)
    y = x.flip(0)
    y[0] = 100.0
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_reshape_copy_is_not_a_view():
    x = E.arange(12.0).view(3, 4).t()
    y = x.reshape(12)
    y[0] = 100.0
    assert x[0, 0].item() == 0.0


def test_contiguous_and_strides():
    x = E.ones(3, 4)
    assert x.is_contiguous() and x.stride() == (4, 1)
    assert not x.t().is_contiguous() and x.t().stride() == (1, 4)
    assert x.t().contiguous().is_contiguous()
    assert x.contiguous() is x


def test_shape_errors():
    with pytest.raises(RuntimeError, match="invalid for input of size"):
        E.ones(2, 3).view(4, 2)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        E.ones(2, 3).view(-1, -1)
    with pytest.raises(RuntimeError, match="expanded size"):
        E.ones(2, 3).expand(4, 3)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        E.cat([E.ones(2, 3), E.ones(3, 2)], 0)
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        E.stack([E.ones(2), E.ones(3)])
    with pytest.raises(IndexError, match="Dimension out of range"):
        E.ones(2, 3).transpose(0, 2)


@pytest.mark.parametrize("fn", [
    lambda x: x.permute(1, 0, 2), lambda x: x.flip(1), lambda x: x.roll(1, 2), lambda x: x.repeat(1, 2, 1),
    lambda x: x.expand(2, 2, 3, 4).sum(0), lambda x: x[:, 1:, ::2], lambda x: x.tril(), lambda x: E.cat([x, x * 2], 1),
    lambda x: x.unbind(1)[2], lambda x: x.diagonal(0, 1, 2),
])
def test_gradcheck_movement(fn):
    rng = np.random.default_rng(0)
    gradcheck(fn, [rng.normal(size=(2, 3, 4))])
