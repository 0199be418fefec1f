"""ember.Tensor: an array (numpy on "cpu", cupy on "cuda") plus autograd state.

The class holds data and bookkeeping only; every operation is a function of the op modules
(math_ops, shape_ops, linalg) reached through ember/frontend/dispatch.py. Views share their base's
array and version counter, so in-place writes through a view are seen by the base, as in PyTorch.
"""
from __future__ import annotations

import weakref

import numpy as np

from ..ir import dtypes as dt
from ..ir.sizes import as_size
from . import autograd as ag
from .device import CPU, canonical, device as _device

_NP2DT = {d.np: d for d in dt.ALL}
_ndarray = np.ndarray


class Size(tuple):
    """torch.Size: a tuple of ints with PyTorch's repr and numel()."""

    def __repr__(self):
        return f"{type(self).__module__.split('.')[0]}.Size([{', '.join(map(str, self))}])"

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n

    def __getitem__(self, i):
        r = tuple.__getitem__(self, i)
        return Size(r) if isinstance(i, slice) else r

    # concatenating or repeating a Size gives a Size, as in PyTorch (size() + (1,))
    def __add__(self, other):
        return Size(tuple.__add__(self, other)) if isinstance(other, tuple) else NotImplemented

    def __radd__(self, other):
        return Size(tuple.__add__(other, self)) if isinstance(other, tuple) else NotImplemented

    def __mul__(self, n):
        return Size(tuple.__mul__(self, n))

    __rmul__ = __mul__


Size.__module__ = "ember"


def _wrap(data, dev=None):
    """A new Tensor around an array, without copying (the fast constructor used by dispatch)."""
    if data.__class__ is not _ndarray:
        if isinstance(data, np.generic) or not hasattr(data, "shape"):
            data = np.asarray(data) if dev is None or dev.type == "cpu" else dev.xp.asarray(data)
    t = Tensor.__new__(Tensor)
    t._data = data
    t.dtype = _NP2DT[data.dtype]
    t.device = dev or CPU
    t.requires_grad = False
    t.grad = None
    t.grad_fn = None
    t._vc = [0]
    t._base = None
    t._accum = None
    t._hooks = None
    return t


class Tensor:
    __slots__ = ("_data", "dtype", "device", "requires_grad", "grad", "grad_fn", "_vc", "_base",
                 "_accum", "_hooks", "_meta", "__weakref__", "__dict__")
    __array_priority__ = 1000  # numpy scalars defer to Tensor's operators

    def __init__(self, *args, dtype=None, device=None, requires_grad=False):
        """torch.Tensor(data) or torch.Tensor(*sizes): float32 unless dtype says otherwise."""
        from . import creation
        if len(args) == 1 and not isinstance(args[0], int):
            src = creation.tensor(args[0], dtype=dtype or dt.default_float, device=device)
        else:
            sizes = args[0] if len(args) == 1 and isinstance(args[0], tuple) else args
            src = creation.empty(*sizes, dtype=dtype or dt.default_float, device=device)
        self._data = src._data
        self.dtype = src.dtype
        self.device = src.device
        self.requires_grad = requires_grad
        self.grad = None
        self.grad_fn = None
        self._vc = [0]
        self._base = None
        self._accum = None
        self._hooks = None

    # ------------------------------------------------------------------ basic properties
    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._data.shape)
        from ..ir.ops import norm_dim
        return self._data.shape[norm_dim(dim, self._data.ndim, "size")]

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    ndimension = dim

    def numel(self) -> int:
        return as_size(self._data.size)     # symbolic while tracing a dynamic size

    nelement = numel

    def element_size(self) -> int:
        return self.dtype.itemsize

    @property
    def itemsize(self):
        return self.dtype.itemsize

    @property
    def nbytes(self):
        return self.numel() * self.dtype.itemsize

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    @property
    def _xp(self):
        return self.device.xp

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_cpu(self) -> bool:
        return self.device.type == "cpu"

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def is_complex(self) -> bool:
        return False

    @property
    def layout(self):
        return "strided"

    def stride(self, dim=None):
        st = tuple(s // self.dtype.itemsize for s in self._data.strides)
        return st if dim is None else st[dim]

    def storage_offset(self) -> int:
        if self._base is None:
            return 0
        return (self.data_ptr() - self._base.data_ptr()) // self.dtype.itemsize

    def data_ptr(self) -> int:
        d = self._data
        return d.__array_interface__["data"][0] if d.__class__ is _ndarray else int(d.data.ptr)

    def is_contiguous(self, memory_format=None) -> bool:
        if getattr(memory_format, "name", "contiguous_format") in ("contiguous_format", "preserve_format"):
            return bool(self._data.flags.c_contiguous)
        if self._data.ndim != (4 if memory_format.name == "channels_last" else 5):
            return False
        want = _format_strides(self._data, memory_format)      # size-1 dims' strides do not matter
        return all(n < 2 or a == b for n, a, b in zip(self._data.shape, self.stride(), want))

    @property
    def _version(self) -> int:
        return self._vc[0]

    @property
    def T(self):
        from .shape_ops import permute
        return permute(self, tuple(reversed(range(self._data.ndim))))

    @property
    def mT(self):
        from .shape_ops import transpose
        return transpose(self, -2, -1)

    # ------------------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad: bool = True):
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want to use a "
                               "computed variable in a subgraph that doesn't require differentiation use "
                               "var_no_grad = var.detach().")
        if requires_grad and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point and complex dtype can require gradients")
        self.requires_grad = requires_grad
        return self

    def _accumulator(self):
        if self._accum is None:
            self._accum = ag.AccumulateGrad(self)
        return self._accum

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        ag.backward(self, gradient, retain_graph, create_graph, inputs)

    def detach(self):
        from . import dispatch
        if dispatch.tracer is not None and dispatch.tracer.is_symbolic(self):
            return dispatch.apply("stop_gradient", self)   # the backward graph must see the cut
        t = _wrap(self._data, self.device)
        t._vc = self._vc
        t._base = self._base if self._base is not None else self
        t.__dict__["_detached"] = True    # not an autograd view: writes into it are allowed (`p.data[0] = 1`)
        return t

    def detach_(self):
        if self._base is not None and self._base.requires_grad:
            raise RuntimeError("Can't detach views in-place. Use detach() instead.")
        self.grad_fn = None
        self.requires_grad = False
        return self

    def retain_grad(self):
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is not None:
            self.grad_fn.retain = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        return self.grad_fn is not None and self.grad_fn.retain is not None

    def register_hook(self, hook):
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        node = self.grad_fn if self.grad_fn is not None else self._accumulator()
        if node.pre_hooks is None:
            node.pre_hooks = []
        node.pre_hooks.append(hook)
        hooks = node.pre_hooks

        class _Handle:
            def remove(self_):
                if hook in hooks:
                    hooks.remove(hook)
        return _Handle()

    def register_post_accumulate_grad_hook(self, hook):
        """hook(tensor) runs after backward has accumulated into this leaf's .grad (PyTorch's API)."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        node = self._accumulator()
        if node.post_hooks is None:
            node.post_hooks = []
        node.post_hooks.append(hook)
        hooks = node.post_hooks

        class _Handle:
            def remove(self_):
                if hook in hooks:
                    hooks.remove(hook)
        return _Handle()

    @property
    def data(self):
        return self.detach()

    @data.setter
    def data(self, other):
        self._data = other._data
        self.dtype = other.dtype
        self.device = other.device
        self._vc = other._vc if other._vc is not None else [0]

    # ------------------------------------------------------------------- conversions
    def numpy(self, force=False):
        from . import tracing_hooks
        tracing_hooks.value_needed(self, "numpy")
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        if self.device.type != "cpu":
            if not force:
                raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to "
                                "copy the tensor to host memory first.")
            return self._data.get()
        return self._data

    def __array__(self, dtype=None, copy=None):
        a = self.detach().cpu().numpy()
        return a if dtype is None else a.astype(dtype)

    def item(self):
        from . import tracing_hooks
        tracing_hooks.value_needed(self, "item")
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.reshape(()).item() if self.device.type == "cpu" else self._data.reshape(()).get().item()

    def tolist(self):
        from . import tracing_hooks
        tracing_hooks.value_needed(self, "tolist")
        d = self._data if self.device.type == "cpu" else self._data.get()
        return d.tolist()

    def __bool__(self):
        from . import tracing_hooks
        tracing_hooks.value_needed(self, "bool")
        if self._data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __int__(self):
        return int(self.item())

    def __float__(self):
        return float(self.item())

    def __index__(self):
        if not (self.dtype.is_integer or self.dtype.is_bool) or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __complex__(self):
        return complex(self.item())

    def __format__(self, spec):
        if self._data.ndim == 0:
            return self.item().__format__(spec)
        return object.__format__(self, spec) if spec else repr(self)

    def __hash__(self):
        return id(self)

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        from .shape_ops import unbind
        return iter(unbind(self, 0))

    def __reversed__(self):
        from .shape_ops import flip
        return iter(flip(self, 0))

    def __contains__(self, item):
        from . import math_ops as M
        return bool(M.any(M.eq(self, item)))

    def __repr__(self, *, tensor_contents=None):
        from .printing import tensor_repr
        return tensor_repr(self)

    def __str__(self):
        return self.__repr__()

    def __deepcopy__(self, memo):
        if not self.is_leaf:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the deepcopy protocol")
        t = type(self).__new__(type(self))
        Tensor._init_from(t, _wrap(self._data.copy(), self.device))
        t.requires_grad = self.requires_grad
        if self.grad is not None:
            t.grad = self.grad.clone()
        if hasattr(self, "__dict__"):
            import copy
            for k, v in self.__dict__.items():
                t.__dict__[k] = copy.deepcopy(v, memo)
        memo[id(self)] = t
        return t

    def __reduce_ex__(self, proto):
        return (_rebuild, (self.detach().cpu().numpy().copy(), self.dtype.name, str(self.device), self.requires_grad))

    @staticmethod
    def _init_from(t, src):
        t._data = src._data
        t.dtype = src.dtype
        t.device = src.device
        t.requires_grad = False
        t.grad = None
        t.grad_fn = None
        t._vc = [0]
        t._base = None
        t._accum = None
        t._hooks = None

    # ------------------------------------------------------------ dtype and device moves
    def to(self, *args, **kwargs):
        """to(dtype) / to(device) / to(other) / to(device, dtype); non_blocking and copy accepted."""
        dtype = kwargs.pop("dtype", None)
        dev = kwargs.pop("device", None)
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        kwargs.pop("memory_format", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {list(kwargs)}")
        for a in args:
            if isinstance(a, dt.DType):
                dtype = a
            elif isinstance(a, Tensor):
                dtype, dev = a.dtype, a.device
            elif isinstance(a, (str, _device, int)):
                dev = a
            elif a is None:
                pass
            else:
                raise TypeError(f"to() received an invalid combination of arguments: {a!r}")
        t = self
        if dev is not None:
            dev = canonical(dev)
            if dev != t.device:
                from .creation import to_device
                t = to_device(t, dev)
        if dtype is not None and dtype is not t.dtype:
            t = P_cast(t, dtype)
        if copy and t is self:
            t = self.clone()
        return t

    def type(self, dtype=None):
        if dtype is None:
            return f"ember.{_TYPE_NAMES[self.dtype.name]}"
        if isinstance(dtype, str):
            dtype = {v: k for k, v in _TYPE_NAMES.items()}.get(dtype.split(".")[-1], dtype)
            dtype = dt.by_name(dtype)
        return self.to(dtype)

    def type_as(self, other):
        return self.to(other.dtype)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def float(self):
        return self.to(dt.float32)

    def double(self):
        return self.to(dt.float64)

    def half(self):
        return self.to(dt.float16)

    def bfloat16(self):
        return self.to(dt.bfloat16)

    def long(self):
        return self.to(dt.int64)

    def int(self):
        return self.to(dt.int32)

    def short(self):
        return self.to(dt.int16)

    def char(self):
        return self.to(dt.int8)

    def byte(self):
        return self.to(dt.uint8)

    def bool(self):
        return self.to(dt.bool_)

    def clone(self, memory_format=None):
        from .dispatch import apply
        return _relayout(apply("cast", self, dtype=self.dtype), self, memory_format)

    def contiguous(self, memory_format=None):
        if self.is_contiguous(memory_format):
            return self
        from . import typeinfo
        return self.clone(memory_format=memory_format or typeinfo.contiguous_format)

    # --------------------------------------------------------------------- in-place
    def _check_inplace(self):
        if ag._mode.enabled and self.requires_grad and self.grad_fn is None:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")

    def _set_(self, result, sources=None):
        """Write `result` (a functional op's output) into self's storage: the in-place protocol.
        Autograd: self takes result's grad_fn; a view passes the write on to its base. `sources`: the
        op's arguments, when result is a composite of several nodes (see _snapshot_saved)."""
        self._check_inplace()
        if not isinstance(result, Tensor):
            from .creation import tensor
            result = tensor(result, dtype=self.dtype, device=self.device)
        if result.dtype is not self.dtype:
            if result.dtype.category > self.dtype.category:
                raise RuntimeError(f"result type {_TYPE_NAMES[result.dtype.name]} can't be cast to the desired "
                                   f"output type {_TYPE_NAMES[self.dtype.name]}")
            result = P_cast(result, self.dtype)
        if tuple(result.shape) != tuple(self._data.shape):
            from .shape_ops import broadcast_to
            try:
                result = broadcast_to(result, tuple(self._data.shape))
            except RuntimeError:
                raise RuntimeError(f"output with shape {list(self._data.shape)} doesn't match the broadcast "
                                   f"shape {list(result.shape)}") from None
        from . import tracing_hooks
        if tracing_hooks.active():         # also concrete tensors: the write is part of the graph
            return tracing_hooks.inplace(self, result)
        if not getattr(self._data.flags, "writeable", True):   # cupy arrays have no such flag
            raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers "
                               "to a single memory location. Please clone() the tensor before performing the "
                               "operation.")
        track = ag._mode.enabled and result.requires_grad
        if not track and ag._mode.enabled and self.requires_grad:
            # overwritten by a constant: like PyTorch, self keeps a history (whose gradient is now 0)
            from .dispatch import apply
            keep = apply("full", shape=tuple(self._data.shape), value=True, dtype=dt.bool_, device=self.device)
            result = apply("where", keep, result, self)
            track = True
        base = self._base
        if track and base is not None:
            if base.requires_grad and base.grad_fn is None:
                raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place "
                                   "operation.")
            from .shape_ops import _write_view_into_base
            _write_view_into_base(base, self, result)
        if track:
            _snapshot_saved(result.grad_fn, self, sources)
        self._data[...] = result._data
        self._vc[0] += 1
        if track:
            self.grad_fn = result.grad_fn
            self.requires_grad = True
            if base is not None:
                self.__dict__["_vseen"] = self._vc[0]   # this view's history is current
        elif ag._mode.enabled and self.grad_fn is not None and not result.requires_grad:
            # overwritten by a constant: the old history no longer reaches this value
            self.grad_fn = None
            self.requires_grad = False
        return self

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        self._check_inplace()
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                                   f"{value.dim()} dimensions.")
            value = value.item()
        from . import tracing_hooks
        if tracing_hooks.active():
            from .creation import full_like
            return self._set_(full_like(self, value))
        if ag._mode.enabled and (self.requires_grad or self._base is not None and self._base.requires_grad):
            from .creation import full_like
            return self._set_(full_like(self, value))
        self._data[...] = value
        self._vc[0] += 1
        if ag._mode.enabled and self.grad_fn is not None:
            self.grad_fn = None
            self.requires_grad = False
        return self

    def copy_(self, src, non_blocking=False):
        if not isinstance(src, Tensor):
            from .creation import tensor
            src = tensor(src)
        if src.device != self.device:
            src = src.to(self.device)
        if src.dtype is not self.dtype:
            src = P_cast(src, self.dtype)
        return self._set_(src if src.requires_grad else src.detach())

    def uniform_(self, a=0.0, b=1.0, generator=None):
        from .creation import rand
        with ag.no_grad():
            r = rand(*self.shape, dtype=self.dtype, device=self.device, generator=generator)
            return self.copy_(r * (b - a) + a)

    def normal_(self, mean=0.0, std=1.0, generator=None):
        from .creation import randn
        with ag.no_grad():
            r = randn(*self.shape, dtype=self.dtype, device=self.device, generator=generator)
            return self.copy_(r * std + mean)

    def bernoulli_(self, p=0.5, generator=None):
        from .creation import rand
        with ag.no_grad():
            return self.copy_((rand(*self.shape, device=self.device, generator=generator) < p).to(self.dtype))

    def exponential_(self, lambd=1.0, generator=None):
        from .creation import rand
        with ag.no_grad():
            u = rand(*self.shape, dtype=self.dtype, device=self.device, generator=generator)
            return self.copy_(-(1 - u).log() / lambd)

    def random_(self, low=0, high=None, generator=None):
        from .creation import randint
        if high is None:
            low, high = 0, low if low else 2 ** 24
        with ag.no_grad():
            return self.copy_(randint(low, high, tuple(self.shape), device=self.device, generator=generator))

    def set_(self, source):
        self._data = source._data
        self.dtype = source.dtype
        self._vc = source._vc
        return self

    def share_memory_(self):
        return self

    def pin_memory(self):
        return self

    def is_pinned(self):
        return False

    def is_shared(self):
        return False

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        from .creation import tensor
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def _new_factory(name):
        def f(self, *size, dtype=None, device=None, requires_grad=False, **kw):
            from . import creation
            return getattr(creation, name)(*size, dtype=dtype or self.dtype, device=device or self.device,
                                           requires_grad=requires_grad, **kw)
        return f

    new_zeros = _new_factory("zeros")
    new_ones = _new_factory("ones")
    new_empty = _new_factory("empty")
    new_full = _new_factory("full")
    del _new_factory


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
               "bfloat16": "BFloat16Tensor",
               "int64": "LongTensor", "int32": "IntTensor", "int16": "ShortTensor", "int8": "CharTensor",
               "uint8": "ByteTensor", "bool": "BoolTensor"}


def _snapshot_saved(node, dst, sources=None):
    """x.sin_() computes sin(x) then writes it into x, but SinBackward reads the old x: hand the node
    a copy of the values it saved from dst's storage (PyTorch saves the original self the same way).
    With `sources` (the op's arguments) every node the op made gets it -- a composite such as fmod_ or
    hypot_ saves x below its last node; the walk stops at the arguments' own histories, whose nodes
    must still fail if they saved x (as in PyTorch)."""
    subst = {}
    _snapshot_node(node, dst, subst)
    if sources is None:
        return
    stop = {id(t.grad_fn) for t in sources if isinstance(t, Tensor) and t.grad_fn is not None}
    seen, todo = {id(node)}, list(getattr(node, "next_functions", ()))
    while todo:
        n = todo.pop()
        if n is None or id(n) in seen or id(n) in stop:
            continue
        seen.add(id(n))
        _snapshot_node(n, dst, subst)
        todo.extend(getattr(n, "next_functions", ()))


def _snapshot_node(node, dst, subst):
    saved = getattr(node, "saved_versions", None)
    if not saved or not any(t._vc is dst._vc for t, _ in saved):
        return
    for t, _ in saved:
        if t._vc is dst._vc and id(t) not in subst:
            c = _wrap(t._data.copy(), t.device)
            c.requires_grad = t.requires_grad
            c.grad_fn = t.grad_fn
            if t.requires_grad and t.grad_fn is None:
                c._accum = t._accumulator()
            subst[id(t)] = c
    node.inputs = tuple(subst.get(id(t), t) for t in node.inputs)
    if node.out is not None and id(node.out) in subst:
        node.out = subst[id(node.out)]
    node.saved_versions = tuple((subst[id(t)], subst[id(t)]._vc[0]) if id(t) in subst else (t, v)
                                for t, v in saved)


def _format_strides(a, memory_format=None):
    """The element strides PyTorch gives a copy of array `a` (a clone, a *_like factory) under
    memory_format, or None for C order. preserve_format (the default) keeps a dense, non-overlapping a's
    strides, and otherwise a's order of dims (infer_dense_strides); channels_last is NHWC order."""
    name = getattr(memory_format, "name", "preserve_format")
    if name == "contiguous_format" or name == "preserve_format" and a.flags.c_contiguous:
        return None
    if name in ("channels_last", "channels_last_3d"):
        nd = 4 if name == "channels_last" else 5
        if a.ndim != nd:
            raise RuntimeError(f"required rank {nd} tensor to use {name} format")
        order = (1,) + tuple(range(nd - 1, 1, -1)) + (0,)   # innermost first: C, W, H(, D), N
    else:
        st = tuple(s // a.itemsize for s in a.strides)
        if _dense(a.shape, st):
            return st
        order = _stride_order(a.shape, st)
    out, step = [0] * a.ndim, 1
    for d in order:
        out[d] = step
        step *= max(a.shape[d], 1)
    return tuple(out)


def _dense(shape, strides):
    """PyTorch's is_non_overlapping_and_dense: the dims of size >= 2, by stride, tile memory exactly."""
    need = 1
    for st, n in sorted((st, n) for n, st in zip(shape, strides) if n >= 2):
        if st != need:
            return False
        need *= n
    return True


def _stride_order(shape, strides):
    """Dims innermost first by stride, as PyTorch's infer_dense_strides sorts them (an insertion sort
    from C order; a stride of 0 keeps its place, equal strides put the smaller size first)."""
    perm = list(range(len(shape) - 1, -1, -1))

    def cmp(d0, d1):
        s0, s1 = strides[d0], strides[d1]
        if s0 == 0 or s1 == 0:
            return 0
        return -1 if s0 < s1 else 1 if s0 > s1 or shape[d0] > shape[d1] else 0
    for i in range(1, len(perm)):
        j = i
        for k in range(i - 1, -1, -1):
            c = cmp(perm[k], perm[j])
            if c > 0:
                perm[k], perm[j] = perm[j], perm[k]
                j = k
            elif c < 0:
                break
    return perm


def _relayout(t, like, memory_format=None):
    """t, a fresh C-order tensor shaped like `like` (its clone, a *_like factory's result), moved to the
    layout PyTorch gives it under memory_format (see _format_strides)."""
    st = _format_strides(like._data, memory_format)
    a = t._data
    if st is None or st == tuple(s // a.itemsize for s in a.strides):
        return t
    xp = t._xp
    new = xp.lib.stride_tricks.as_strided(xp.empty(max(a.size, 1), a.dtype), a.shape,
                                          tuple(s * a.itemsize for s in st))
    new[...] = a
    t._data = new
    return t


def P_cast(t, dtype):
    from .dispatch import apply
    return apply("cast", t, dtype=dtype)


def _rebuild(array, dtype_name, device, requires_grad):
    from .creation import tensor
    t = tensor(array, dtype=dt.by_name(dtype_name), device=device)
    t.requires_grad = requires_grad
    return t


Tensor.__module__ = "ember"
