"""ember.cuda: device queries. CUDA needs CuPy (the `cuda` extra) and an NVIDIA GPU; without them
is_available() is False and using device "cuda" raises a clear error."""
from __future__ import annotations

from .frontend.legacy import CUDA_TYPES as _legacy
from .kernels.gpu import cupy_or_none, need as _need

# ember.cuda.FloatTensor(...) & co (legacy constructors; they need a GPU, as PyTorch's need a CUDA build)
(FloatTensor, DoubleTensor, HalfTensor, LongTensor, IntTensor, ShortTensor, CharTensor, ByteTensor,
 BoolTensor) = (_legacy[n] for n in ("FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor",
                                     "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor"))


def is_available() -> bool:
    return cupy_or_none() is not None


def device_count() -> int:
    cp = cupy_or_none()
    return cp.cuda.runtime.getDeviceCount() if cp is not None else 0


def current_device() -> int:
    return _need().cuda.runtime.getDevice()


def set_device(d):
    from .frontend.device import device
    idx = d if isinstance(d, int) else device(d).index or 0
    _need().cuda.runtime.setDevice(idx)


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """Can tensors on cuda be bfloat16 here? (CuPy 14+ with ml_dtypes has bfloat16 arrays.)"""
    cp = cupy_or_none()
    if cp is None:
        return False
    try:
        from .ir import dtypes as dt
        cp.zeros(1, dtype=dt.bfloat16.np)
        return True
    except Exception:  # noqa: BLE001 - any failure means: not supported by this CuPy
        return False


def synchronize(device=None):
    """Wait for the GPU; like torch.cuda.synchronize it then raises what the device recorded (an
    out-of-range index in a compiled program's gather, read asynchronously until now)."""
    cp = cupy_or_none()
    if cp is not None:
        cp.cuda.Device().synchronize()
        from .runtime.cuda_graph import synchronize_all
        synchronize_all()


def get_device_name(device=None) -> str:
    cp = _need()
    idx = 0 if device is None else (device if isinstance(device, int) else getattr(device, "index", 0) or 0)
    return cp.cuda.runtime.getDeviceProperties(idx)["name"].decode()


def get_device_capability(device=None) -> tuple[int, int]:
    """(major, minor) compute capability, like torch.cuda.get_device_capability."""
    cp = _need()
    idx = 0 if device is None else (device if isinstance(device, int) else getattr(device, "index", 0) or 0)
    cc = cp.cuda.Device(idx).compute_capability
    return int(cc[:-1]), int(cc[-1])


class _Properties:
    def __init__(self, props: dict, idx: int):
        name = props["name"]
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.total_memory = int(props["totalGlobalMem"])
        self.multi_processor_count = int(props["multiProcessorCount"])
        self.major, self.minor = int(props["major"]), int(props["minor"])
        self.index = idx

    def __repr__(self):
        return (f"_CudaDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
                f"total_memory={self.total_memory // (1 << 20)}MB, multi_processor_count={self.multi_processor_count})")


def get_device_properties(device=None) -> _Properties:
    cp = _need()
    idx = 0 if device is None else (device if isinstance(device, int) else getattr(device, "index", 0) or 0)
    return _Properties(cp.cuda.runtime.getDeviceProperties(idx), idx)


def mem_get_info(device=None) -> tuple[int, int]:
    """(free, total) bytes on the device."""
    return tuple(int(v) for v in _need().cuda.runtime.memGetInfo())


def is_initialized() -> bool:
    return cupy_or_none() is not None


def memory_allocated(device=None) -> int:
    cp = cupy_or_none()
    return cp.get_default_memory_pool().used_bytes() if cp is not None else 0


def max_memory_allocated(device=None) -> int:
    return memory_allocated(device)


def empty_cache():
    cp = cupy_or_none()
    if cp is not None:
        cp.get_default_memory_pool().free_all_blocks()


def manual_seed(seed: int):
    from .frontend import rng
    rng.default_generator.manual_seed(seed)


manual_seed_all = manual_seed


class _AmpNamespace:
    """ember.cuda.amp.autocast / GradScaler (the older spelling of ember.amp)."""

    def __getattr__(self, name):
        from . import amp
        if name == "autocast":
            return amp._cuda_autocast
        return getattr(amp, name)


amp = _AmpNamespace()
