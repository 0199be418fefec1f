"""Matrix products, einsum, sorting and selection."""
from __future__ import annotations

import string

from ..ir import dtypes as dt
from ..ir.ops import norm_dim
from .autocast import autocast_op
from .creation import full_like
from .dispatch import apply as P
from . import math_ops as M
from .math_ops import _MinMax
from . import shape_ops as S
from .tensor import Tensor


def _mm_dtype(a, b, op):
    if a.dtype is not b.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {a.dtype.name} != {b.dtype.name}"
                           if op == "mm" else
                           f"expected both inputs of {op} to have the same dtype, but got {a.dtype.name} != {b.dtype.name}")


@autocast_op("matmul")
def matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D")
    _mm_dtype(a, b, "matmul")
    if a.ndim == 1 and b.ndim == 1:
        if a.shape[0] != b.shape[0]:
            raise RuntimeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src [{b.shape[0]}] to "
                               "have the same number of elements, but got "
                               f"{a.shape[0]} and {b.shape[0]} elements respectively")
        return S.reshape(P("matmul", S.reshape(a, (1, -1)), S.reshape(b, (-1, 1))), ())
    if a.ndim == 1:
        r = P("matmul", S.unsqueeze(a, 0), b)
        return S.squeeze(r, -2)
    if b.ndim == 1:
        r = P("matmul", a, S.unsqueeze(b, -1))
        return S.squeeze(r, -1)
    return P("matmul", a, b)


@autocast_op("mm")
def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise RuntimeError(f"{'self' if a.ndim != 2 else 'mat2'} must be a matrix")
    _mm_dtype(a, b, "mm")
    return P("matmul", a, b)


@autocast_op("bmm")
def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor" if a.ndim != 3 else "batch2 must be a 3D tensor")
    if a.shape[0] != b.shape[0]:
        raise RuntimeError(f"batch1 and batch2 must have same number of batches, got {a.shape[0]} and {b.shape[0]}")
    _mm_dtype(a, b, "bmm")
    return P("matmul", a, b)


@autocast_op("mv")
def mv(a, v):
    return matmul(a, v)


@autocast_op("dot")
def dot(a, b):
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {a.ndim}D and {b.ndim}D tensors")
    return matmul(a, b)


def inner(a, b):
    """Sums of products over the last dims: a[..., k] b[..., k] -> a.shape[:-1] + b.shape[:-1] (dot for
    vectors; a scalar operand multiplies)."""
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.ndim == 1 and b.ndim == 1:
        return dot(a, b)
    if a.shape[-1] != b.shape[-1]:
        raise RuntimeError(f"inner() the last dimension must match on both input tensors but got shapes "
                           f"{list(a.shape)} and {list(b.shape)}")
    return S.reshape(matmul(S.reshape(a, (-1, a.shape[-1])), S.transpose(S.reshape(b, (-1, b.shape[-1])), 0, 1)),
                     tuple(a.shape[:-1]) + tuple(b.shape[:-1]))


def outer(a, b):
    return S.unsqueeze(a, 1) * S.unsqueeze(b, 0)


ger = outer


def _blend(x, r, beta, alpha):
    """beta * x + alpha * r, PyTorch's add* rule: with beta == 0, x is ignored (its nan / inf too); x
    broadcasts to r's shape, the result's."""
    if alpha != 1:
        r = r * alpha
    if beta == 0:
        if isinstance(x, Tensor) and x.requires_grad:    # x still gets its (zero) gradient, as in torch
            return r + M.where(full_like(x, False, dtype=dt.bool_), x, 0.0)
        return r
    return r + (x if beta == 1 else x * beta)


@autocast_op("addmm")
def addmm(bias, a, b, beta=1, alpha=1):
    if (beta == 1 and alpha == 1 and isinstance(bias, Tensor) and isinstance(a, Tensor) and isinstance(b, Tensor)
            and a.dtype.is_reduced_float and a.dtype is b.dtype is bias.dtype and a.ndim == b.ndim == 2
            and bias.ndim == 1 and bias.shape[0] == b.shape[1] and a.shape[1] == b.shape[0]
            and a.device.type == b.device.type == bias.device.type == "cpu"):
        return P("addmm", a, b, bias)    # 16-bit: the bias added before the one rounding (PyTorch's addmm)
    return _blend(bias, mm(a, b), beta, alpha)


@autocast_op("baddbmm")
def baddbmm(x, a, b, beta=1, alpha=1):
    return _blend(x, bmm(a, b), beta, alpha)


@autocast_op("addbmm")
def addbmm(x, batch1, batch2, beta=1, alpha=1):
    """beta * x + alpha * sum over b of batch1[b] @ batch2[b]."""
    return _blend(x, M.sum(bmm(batch1, batch2), 0), beta, alpha)


@autocast_op("addmv")
def addmv(x, mat, vec, beta=1, alpha=1):
    """beta * x + alpha * (mat @ vec)."""
    if mat.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {x.ndim}, {mat.ndim}, {vec.ndim}")
    return _blend(x, mv(mat, vec), beta, alpha)


@autocast_op("addr")
def addr(x, vec1, vec2, beta=1, alpha=1):
    """beta * x + alpha * outer(vec1, vec2)."""
    if vec1.ndim != 1 or vec2.ndim != 1:
        raise RuntimeError(f"addr: Expected 1-D argument vec1 and vec2, but got {vec1.ndim}-D and {vec2.ndim}-D")
    return _blend(x, outer(vec1, vec2), beta, alpha)


@autocast_op("einsum")
def einsum(equation, *operands):
    """einsum by pairwise contraction: each pair becomes permute + reshape + batched matmul."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs = eq
        letters = lhs.replace(",", "").replace("...", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
        if "..." in lhs:
            out = "..." + out
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise RuntimeError("einsum(): more operands were provided than specified in the equation"
                           if len(operands) > len(terms) else
                           "einsum(): fewer operands were provided than specified in the equation")
    # ellipsis: replace by fresh capital letters
    free = [c for c in string.ascii_uppercase if c not in eq]
    nell = max((op.ndim - (len(t) - 3) for t, op in zip(terms, operands) if "..." in t), default=0)
    ell = "".join(free[:nell])
    new_terms = []
    for t, op in zip(terms, operands):
        if "..." in t:
            k = op.ndim - (len(t) - 3)
            t = t.replace("...", ell[nell - k:])
        if len(t) != op.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(t)}) does not match the "
                               f"number of dimensions ({op.ndim}) for operand {len(new_terms)}")
        new_terms.append(t)
    out = out.replace("...", ell)
    ops = list(operands)
    d = ops[0].dtype
    for o in ops[1:]:
        d = dt.promote_types(d, o.dtype)
    from .math_ops import cast
    ops = [cast(o, d) for o in ops]
    terms = new_terms
    # diagonal (repeated letters in one term) is rare; take it explicitly
    for i, (t, o) in enumerate(zip(terms, ops)):
        while len(set(t)) != len(t):
            c = next(c for c in t if t.count(c) > 1)
            a = t.index(c)
            b = t.index(c, a + 1)
            o = S.diagonal(o, 0, a, b)
            t = t[:a] + t[a + 1:b] + t[b + 1:] + c
        terms[i], ops[i] = t, o
    while len(ops) > 1:
        t1, t2 = terms[0], terms[1]
        rest = "".join(terms[2:]) + out
        x, y = ops[0], ops[1]
        batch = [c for c in t1 if c in t2 and c in rest]
        contract = [c for c in t1 if c in t2 and c not in rest]
        only1 = [c for c in t1 if c not in t2]
        only2 = [c for c in t2 if c not in t1]
        # letters only in one operand and not needed later are summed out first
        for c in [c for c in only1 if c not in rest]:
            x = x.sum(t1.index(c))
            t1 = t1.replace(c, "")
        for c in [c for c in only2 if c not in rest]:
            y = y.sum(t2.index(c))
            t2 = t2.replace(c, "")
        only1 = [c for c in t1 if c not in t2]
        only2 = [c for c in t2 if c not in t1]
        size = {}
        for t, o in ((t1, x), (t2, y)):
            for c, n in zip(t, o.shape):
                if size.get(c, n) != n and size.get(c) != 1 and n != 1:
                    raise RuntimeError("einsum(): operands do not broadcast with remapped shapes (original->remapped)")
                if size.get(c, 1) == 1:         # (a size 0 broadcasts like any other: not max())
                    size[c] = n
        xp = S.permute(x, [t1.index(c) for c in batch + only1 + contract])
        yp = S.permute(y, [t2.index(c) for c in batch + contract + only2])
        nb = [size[c] for c in batch]
        m = 1
        for c in only1:
            m *= size[c]
        k = 1
        for c in contract:
            k *= size[c]
        n = 1
        for c in only2:
            n *= size[c]
        xp = S.reshape(S.expand(xp, nb + [size[c] for c in only1 + contract]), nb + [m, k])
        yp = S.reshape(S.expand(yp, nb + [size[c] for c in contract + only2]), nb + [k, n])
        r = P("matmul", xp, yp)
        r = S.reshape(r, nb + [size[c] for c in only1 + only2])
        terms = ["".join(batch + only1 + only2)] + terms[2:]
        ops = [r] + ops[2:]
    t, r = terms[0], ops[0]
    for c in [c for c in t if c not in out]:
        r = r.sum(t.index(c))
        t = t.replace(c, "")
    return S.permute(r, [t.index(c) for c in out]) if t != out else r


def sort(x, dim=-1, descending=False, stable=False):
    if x.ndim == 0:
        return _MinMax(x.clone(), P("full", shape=(), value=0, dtype=dt.int64, device=x.device))
    d = norm_dim(dim, x.ndim, "sort")
    idx = P("argsort", x, dim=d, descending=descending)
    return _MinMax(P("gather", x, idx, dim=d), idx)


def argsort(x, dim=-1, descending=False, stable=False):
    if x.ndim == 0:
        return P("full", shape=(), value=0, dtype=dt.int64, device=x.device)
    return P("argsort", x, dim=norm_dim(dim, x.ndim, "argsort"), descending=descending)


def topk(x, k, dim=-1, largest=True, sorted=True):
    if x.ndim == 0:
        if k > 1:
            raise RuntimeError("selected index k out of range")
        return _MinMax(x.clone(), P("full", shape=(), value=0, dtype=dt.int64, device=x.device))
    d = norm_dim(dim, x.ndim, "topk")
    idx = P("topk", x, k=k, dim=d, largest=largest)
    return _MinMax(P("gather", x, idx, dim=d), idx)


def kthvalue(x, k, dim=-1, keepdim=False):
    d = norm_dim(dim, x.ndim, "kthvalue")
    v, i = sort(x, d)
    v, i = S.select(v, d, k - 1), S.select(i, d, k - 1)
    if keepdim:
        v, i = S.unsqueeze(v, d), S.unsqueeze(i, d)
    return _MinMax(v, i)


def median(x, dim=None, keepdim=False):
    """The lower median; a NaN among the reduced values makes it NaN, at the first NaN's index
    (PyTorch: median propagates NaN, nanmedian ignores it)."""
    if dim is None:     # the gradient shared by the elements equal to the median, as PyTorch's
        flat = S.reshape(x, (-1,))
        return M._evenly_shared(flat, _median_dim(flat, 0, False)[0].detach())
    return _median_dim(x, norm_dim(dim, x.ndim, "median"), keepdim)


def _median_dim(x, d, keepdim):
    i = kthvalue(x, (x.shape[d] - 1) // 2 + 1, d, True)[1]
    if x.dtype.is_floating_point:
        nan = M.isnan(x)
        i = M.where(M.amax(nan, d, keepdim=True), M.argmax(M.cast(nan, dt.int64), d, keepdim=True), i)
    v = P("gather", x, i, dim=d)          # gathered: the gradient goes to the chosen element
    if not keepdim:
        v, i = S.squeeze(v, d), S.squeeze(i, d)
    return _MinMax(v, i)


def cross_entropy_placeholder():
    pass
