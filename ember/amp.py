"""ember.amp: mixed precision as PyTorch spells it: autocast regions and GradScaler.

    with ember.autocast("cpu"):                     # bfloat16 matrix products on the CPU
        loss = loss_fn(model(x), y)                 # losses and other fp32-list ops in float32
    with ember.autocast("cuda"):                    # float16 on the GPU, with loss scaling:
        loss = loss_fn(model(x), y)
    scaler.scale(loss).backward(); scaler.step(opt); scaler.update()

autocast(device_type, dtype=None, enabled=True, cache_enabled=None) enters a region in which the ops on
PyTorch's lists cast their inputs (the lists, the casting rules and the cast cache are in
ember/frontend/autocast.py). Default dtypes: bfloat16 on "cpu", float16 on "cuda". It works as a
context manager and as a decorator, nests, and `enabled=False` inside a region turns it off there.

GradScaler(device="cuda", init_scale=2.**16, growth_factor=2., backoff_factor=.5, growth_interval=2000,
enabled=True) is dynamic loss scaling with PyTorch's update rule: the scale is a float32 value; a step
whose gradients hold inf/nan is skipped and the scale backs off; after growth_interval clean steps in a
row it grows (unless the grown value would overflow float32).
"""
from __future__ import annotations

import functools
import warnings
from enum import Enum

import numpy as np

from .frontend import autocast as _ac
from .frontend import tracing_hooks as _tracing_hooks
from .frontend.tensor import Tensor
from .ir import dtypes as dt

__all__ = ["autocast", "GradScaler", "is_autocast_available", "is_autocast_enabled", "get_autocast_dtype",
           "clear_autocast_cache", "custom_fwd", "custom_bwd"]

_DEVICE_TYPES = ("cpu", "cuda")
_SUPPORTED = {"cpu": (dt.bfloat16, dt.float16), "cuda": (dt.float16, dt.bfloat16)}
_DEFAULT = {"cpu": dt.bfloat16, "cuda": dt.float16}


def is_autocast_available(device_type: str) -> bool:
    _check_device_type(device_type)
    return True


def _check_device_type(device_type):
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if device_type not in _DEVICE_TYPES:
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}' "
                           f"(ember supports {', '.join(_DEVICE_TYPES)})")


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    """torch.is_autocast_enabled: is a region active for this device type (default "cuda")?"""
    return _ac.is_enabled(device_type)


def _is_autocast_cpu_enabled() -> bool:
    return _ac.is_enabled("cpu")


def _get_autocast_cpu_dtype():
    return get_autocast_dtype("cpu")


def _get_autocast_gpu_dtype():
    return get_autocast_dtype("cuda")


def get_autocast_dtype(device_type: str):
    """The low dtype of the active region for this device type, else its default."""
    _check_device_type(device_type)
    return _ac.get_dtype(device_type) or _DEFAULT[device_type]


def clear_autocast_cache() -> None:
    _ac.clear_cache()


class autocast:
    """torch.autocast: a region (context manager or decorator) in which ops run in mixed precision."""

    def __init__(self, device_type: str, dtype=None, enabled: bool = True, cache_enabled: bool | None = None):
        _check_device_type(device_type)
        self.device = device_type
        self.fast_dtype = _DEFAULT[device_type] if dtype is None else dtype
        self._cache_enabled = True if cache_enabled is None else bool(cache_enabled)
        self._enabled = bool(enabled)
        self._tokens = []
        if not self._enabled:
            return
        if device_type == "cuda":
            from .frontend.device import cuda_available
            if not cuda_available():
                warnings.warn("User provided device_type of 'cuda', but CUDA is not available. Disabling",
                              UserWarning, stacklevel=2)
                self._enabled = False
                return
        if self.fast_dtype not in _SUPPORTED[device_type]:
            names = ", ".join(f"ember.{d.name}" for d in _SUPPORTED[device_type])
            warnings.warn(f"In {device_type.upper()} autocast, but the target dtype is not supported. Disabling "
                          f"autocast.\n{device_type.upper()} Autocast only supports dtypes of {names} currently.",
                          UserWarning, stacklevel=2)
            self._enabled = False
            return
        if device_type == "cuda" and self.fast_dtype is dt.bfloat16 and not _cuda_is_bf16_supported():
            raise RuntimeError("Current CUDA Device does not support bfloat16 (this CuPy has no bfloat16 "
                               "arrays). Please switch dtype to float16.")

    def __enter__(self):
        self._tokens.append(_ac.push(self.device, self.fast_dtype, self._enabled, self._cache_enabled))
        return self

    def __exit__(self, *exc):
        _ac.pop(self._tokens.pop())
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return wrapper


def _cuda_is_bf16_supported() -> bool:
    from .cuda import is_bf16_supported
    return is_bf16_supported()


def _cpu_autocast(enabled: bool = True, dtype=dt.bfloat16, cache_enabled: bool = True) -> autocast:
    """ember.cpu.amp.autocast (PyTorch's older spelling of autocast("cpu", ...))."""
    return autocast("cpu", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


def _cuda_autocast(enabled: bool = True, dtype=dt.float16, cache_enabled: bool = True) -> autocast:
    """ember.cuda.amp.autocast (PyTorch's older spelling of autocast("cuda", ...))."""
    return autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


def custom_fwd(fwd=None, *, device_type: str, cast_inputs=None):
    """Decorator for an autograd.Function's forward: inside an enabled autocast region, cast_inputs
    casts its floating tensor arguments and runs forward with autocast off; the autocast state is
    remembered for custom_bwd."""
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)
    _check_device_type(device_type)

    @functools.wraps(fwd)
    def forward(ctx, *args, **kwargs):
        ctx._fwd_autocast = (_ac.get_dtype(device_type), device_type)
        if cast_inputs is None or not _ac.is_enabled(device_type):
            return fwd(ctx, *args, **kwargs)

        def cast(t):
            ok = isinstance(t, Tensor) and t.dtype.is_floating_point and t.device.type == device_type
            return t.to(cast_inputs) if ok and t.dtype is not dt.float64 else t
        args = tuple(_ac._map(a, cast) for a in args)
        kwargs = {k: _ac._map(v, cast) for k, v in kwargs.items()}
        with autocast(device_type, enabled=False):
            return fwd(ctx, *args, **kwargs)
    return forward


def custom_bwd(bwd=None, *, device_type: str):
    """Decorator for an autograd.Function's backward: runs with the autocast state of its forward."""
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)

    @functools.wraps(bwd)
    def backward(ctx, *args, **kwargs):
        dtype, dev = getattr(ctx, "_fwd_autocast", (None, device_type))
        with autocast(dev, dtype=dtype, enabled=dtype is not None):
            return bwd(ctx, *args, **kwargs)
    return backward


# ------------------------------------------------------------------------------------- GradScaler
class OptState(Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _distributed() -> bool:
    import sys
    dist = sys.modules.get("ember.distributed")    # loaded by whoever initialised a process group
    return dist is not None and dist.is_initialized()


def _any_rank(found: bool) -> bool:
    """With a process group, one rank's inf/nan skips the step on every rank (so replicas stay equal)."""
    if not _distributed():
        return found
    import sys
    return sys.modules["ember.distributed"].any_across_ranks(found)


def _f32(v: float) -> float:
    """The scale lives in float32 (PyTorch keeps it in a float32 tensor): round like it."""
    return float(np.float32(v))


def _traced() -> bool:
    """A whole training step is being traced (ember.compile): the scaler then reads no value back --
    the inf check is a tensor, the skipped step a select in the optimizer's update, the new scale
    tensor ops -- so the step stays one graph.  (With a process group the ranks' agreement is a
    read-back: that traced step breaks the graph, as it did before.)"""
    return _tracing_hooks.active() and not _distributed()


def _masked_step(optimizer, found: Tensor, args, kwargs):
    """optimizer.step() traced so that a found inf/nan leaves every parameter and state tensor as it
    was: each is selected between its value before the step and after it (fusion puts the select into
    the update's own kernel).  State the step creates (the first step) is captured as it is created,
    before the update writes it."""
    from .frontend.math_ops import where
    from .frontend.autograd import no_grad
    before: dict = {}

    def keep(t):
        if isinstance(t, Tensor) and id(t) not in before:
            before[id(t)] = (t, t.clone())     # (a detached alias would be a second graph input)
    with no_grad():
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    keep(p)
                    for v in optimizer.state.get(p, {}).values():
                        keep(v)
        optimizer._state_watch = lambda values: [keep(v) for v in values.values()]
        try:
            ret = optimizer.step(*args, **kwargs)
        finally:
            optimizer._state_watch = None
        for t, old in before.values():
            t.copy_(where(found, old, t))
    return ret


def _grads_to_unscale(optimizer, allow_fp16: bool):
    """The optimizer's gradients, refusing float16 ones unless allowed (PyTorch's check)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if not allow_fp16 and g.dtype is dt.float16:
                raise ValueError("Attempting to unscale FP16 gradients.")
            yield g


class GradScaler:
    """Dynamic loss scaling (torch.amp.GradScaler): scale(loss).backward(), step(optimizer), update()."""

    def __init__(self, device: str = "cuda", init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True):
        _check_device_type(device)
        self._device = device
        self._enabled = enabled
        if enabled and device == "cuda":
            from .frontend.device import cuda_available
            if not cuda_available():
                warnings.warn("ember.cuda.amp.GradScaler is enabled, but CUDA is not available.  Disabling.",
                              UserWarning, stacklevel=2)
                self._enabled = False
        if not self._enabled:
            return
        if not growth_factor > 1.0:
            raise ValueError("The growth factor must be > 1.0.")
        if not backoff_factor < 1.0:
            raise ValueError("The backoff factor must be < 1.0.")
        self._init_scale = init_scale
        self._scale = None                 # set by the first scale(): PyTorch's lazy init
        self._growth_factor = growth_factor
        self._backoff_factor = backoff_factor
        self._growth_interval = growth_interval
        self._init_growth_tracker = 0
        self._growth_tracker = None
        self._per_optimizer_states: dict = {}

    # ------------------------------------------------------------------------ the iteration
    def _state_of(self, optimizer) -> dict:
        st = self._per_optimizer_states.get(id(optimizer))
        if st is None:
            st = self._per_optimizer_states[id(optimizer)] = {"stage": OptState.READY, "found_inf_per_device": {}}
        return st

    def _lazy_init(self):
        """The scale (float32) and the growth tracker (int32) are 0-d tensors, as PyTorch's: a compiled
        step reads them as inputs and writes them in place, so the scale is never baked into a graph."""
        if self._scale is None:
            from .frontend.creation import full
            with _tracing_hooks.eager_now():
                self._scale = full((), _f32(self._init_scale), dtype=dt.float32)
                self._growth_tracker = full((), self._init_growth_tracker, dtype=dt.int32)

    def _scale_value(self) -> float:
        return float(self._scale._data)

    def _check_scale(self, funcname: str):
        if self._scale is None:
            raise AssertionError(f"Attempted {funcname} but _scale is None.  This may indicate your script did not "
                                 "use scaler.scale(loss or outputs) earlier in the iteration.")

    def scale(self, outputs):
        """outputs * scale (a tensor, or tensors in nested lists/tuples)."""
        if not self._enabled:
            return outputs
        self._lazy_init()
        if isinstance(outputs, Tensor):
            return outputs * self._scale
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if hasattr(outputs, "__iter__"):
            return map(self.scale, outputs)
        raise ValueError("outputs must be a Tensor or an iterable of Tensors")

    def _unscale_grads_(self, optimizer, inv_scale: float, allow_fp16: bool) -> dict:
        """Multiply every gradient by inv_scale in place; returns {device: found_inf (float32 0-d tensor)}
        with 1.0 where a gradient held inf/nan (checked before unscaling, as PyTorch's kernel)."""
        from .frontend import math_ops as M
        from .frontend.autograd import no_grad
        from .frontend.creation import full
        if _traced():
            return self._unscale_grads_traced(optimizer, allow_fp16)
        bad: dict = {}
        with no_grad():
            for g in _grads_to_unscale(optimizer, allow_fp16):
                bad[g.device] = bad.get(g.device, False) or not bool(M.all(M.isfinite(g)))
                g.mul_(inv_scale)
        found = {d: full((), float(b), dtype=dt.float32, device=d) for d, b in bad.items()}
        return found

    def _unscale_grads_traced(self, optimizer, allow_fp16: bool) -> dict:
        """The same as tensor ops: found_inf = any(~isfinite(g)) (float32 0-d per device) and
        g *= inv_scale, inv_scale = float32(1 / float64(scale)) as a tensor."""
        from .frontend import math_ops as M
        from .frontend.autograd import no_grad
        found: dict = {}
        with no_grad():
            inv = M.cast(M.reciprocal(M.cast(self._scale, dt.float64)), dt.float32)
            for g in _grads_to_unscale(optimizer, allow_fp16):
                bad = M.logical_not(M.all(M.isfinite(g)))
                prev = found.get(g.device)
                found[g.device] = bad if prev is None else M.logical_or(prev, bad)
                g.mul_(inv)
        return {d: M.cast(b, dt.float32) for d, b in found.items()}

    def unscale_(self, optimizer) -> None:
        """Divide the optimizer's gradients by the scale (before clip_grad_norm_, say); once per step."""
        if not self._enabled:
            return
        self._check_scale("unscale_")
        st = self._state_of(optimizer)
        if st["stage"] is OptState.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if st["stage"] is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv = _f32(1.0 / float(np.float64(self._scale_value())))   # the reciprocal in float64, as float32
        found = self._unscale_grads_(optimizer, inv, False)
        if not _traced():
            local = any(v.item() for v in found.values())
            if _any_rank(local) and not local:      # another rank overflowed: this one skips the step too
                found = {d: v + 1.0 for d, v in found.items()}
        st["found_inf_per_device"] = found
        st["stage"] = OptState.UNSCALED

    def _found_inf(self, st) -> float:
        return sum(v.item() for v in st["found_inf_per_device"].values())

    def step(self, optimizer, *args, **kwargs):
        """unscale_ (unless done) then optimizer.step() -- skipped when a gradient holds inf/nan."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        self._check_scale("step")
        st = self._state_of(optimizer)
        if st["stage"] is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if st["stage"] is OptState.READY:
            self.unscale_(optimizer)
        if len(st["found_inf_per_device"]) == 0:
            raise AssertionError("No inf checks were recorded for this optimizer.")
        retval = None
        if _traced():
            found = functools.reduce(lambda a, b: a + b, st["found_inf_per_device"].values())
            from .frontend import math_ops as M
            retval = _masked_step(optimizer, M.gt(found, 0), args, kwargs)
        elif not self._found_inf(st):
            retval = optimizer.step(*args, **kwargs)
        st["stage"] = OptState.STEPPED
        return retval

    def update(self, new_scale=None) -> None:
        """Back off after a skipped step, grow after growth_interval clean ones; or set new_scale."""
        if not self._enabled:
            return
        self._check_scale("update")
        if new_scale is not None:
            if isinstance(new_scale, Tensor):
                if new_scale.numel() != 1 or new_scale.requires_grad:
                    raise AssertionError("new_scale should be a float or a 1-element ember.FloatTensor with "
                                         "requires_grad=False.")
                new_scale = new_scale.item()
            self._set(_f32(new_scale), self._get_growth_tracker())
        else:
            found = [v for st in self._per_optimizer_states.values() for v in st["found_inf_per_device"].values()]
            if not found:
                raise AssertionError("No inf checks were recorded prior to update.")
            if _traced():
                self._update_traced(found)
            elif sum(v.item() for v in found):
                self._set(self._times(self._backoff_factor), 0)
            else:
                successful = self._get_growth_tracker() + 1
                if successful == self._growth_interval:
                    grown = self._times(self._growth_factor)
                    self._set(grown if np.isfinite(grown) else self._scale_value(), 0)
                else:
                    self._set(self._scale_value(), successful)
        self._per_optimizer_states.clear()

    def _times(self, factor: float) -> float:
        """scale * factor computed in float64 and stored as float32 (PyTorch's kernel: double factors)."""
        return _f32(self._scale_value() * factor)

    def _set(self, scale: float, tracker: int) -> None:
        """Write the scale and tracker in place (a compiled step holds these very tensors)."""
        self._scale._data[...] = scale
        self._growth_tracker._data[...] = tracker

    def _update_traced(self, found: list) -> None:
        """update() as tensor ops written into the scale and tracker (PyTorch's _amp_update_scale_)."""
        from .frontend import math_ops as M
        from .frontend.autograd import no_grad
        from .frontend.creation import zeros_like
        with no_grad():
            bad = M.gt(functools.reduce(lambda a, b: a + b, found), 0)
            scale, tracker = self._scale, self._growth_tracker
            successful = tracker + 1
            grow = M.eq(successful, self._growth_interval)
            wide = M.cast(scale, dt.float64)                      # products in float64, as _times
            grown = M.cast(wide * self._growth_factor, dt.float32)
            grown = M.where(M.isfinite(grown), grown, scale)
            backed = M.cast(wide * self._backoff_factor, dt.float32)
            new_scale = M.where(bad, backed, M.where(grow, grown, scale))
            new_tracker = M.where(M.logical_or(bad, grow), zeros_like(successful), successful)
            scale.copy_(new_scale)
            tracker.copy_(new_tracker)

    # -------------------------------------------------------------------------- accessors
    def get_scale(self) -> float:
        if not self._enabled:
            return 1.0
        return _f32(self._init_scale) if self._scale is None else self._scale.item()

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = new_factor

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = new_factor

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = new_interval

    def _get_growth_tracker(self) -> int:
        if not self._enabled:
            return 0
        return self._init_growth_tracker if self._growth_tracker is None else int(self._growth_tracker.item())

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> dict:
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved from a disabled "
                               "instance of GradScaler.")
        self._init_scale = state_dict["scale"]
        self._growth_factor = state_dict["growth_factor"]
        self._backoff_factor = state_dict["backoff_factor"]
        self._growth_interval = state_dict["growth_interval"]
        self._init_growth_tracker = state_dict["_growth_tracker"]
        if self._scale is not None:
            self._set(_f32(state_dict["scale"]), state_dict["_growth_tracker"])
