"""DataParallel: one process driving several GPUs (torch.nn.DataParallel).

Each forward scatters the batch along `dim` over device_ids, runs a replica of the module on each
device, and gathers the outputs on output_device; gradients flow back through the copies to the
original parameters (summed over the replicas). The replica on device_ids[0] is the module itself,
so in-place updates there (BatchNorm's running statistics) are kept, as in PyTorch. Without CUDA,
or with one device, the module runs as it is. For several processes use DistributedDataParallel.
"""
from __future__ import annotations

import contextlib

from ..modules.module import Module

__all__ = ["DataParallel"]


def _device_context(dev):
    if dev.type != "cuda":
        return contextlib.nullcontext()
    import cupy
    return cupy.cuda.Device(dev.index or 0)


def scatter(obj, devices, dim: int):
    """Split tensors along dim into len(devices) chunks moved to each device; other values are
    repeated. Returns one copy of obj's structure per chunk (fewer when the batch is smaller)."""
    from ...frontend.tensor import Tensor
    if isinstance(obj, Tensor):
        chunks = obj.chunk(len(devices), dim)
        return [c.to(d) for c, d in zip(chunks, devices)]
    if isinstance(obj, (list, tuple)) and obj:
        parts = [scatter(o, devices, dim) for o in obj]
        n = min(len(p) for p in parts)
        return [type(obj)(p[i] for p in parts) if type(obj) in (list, tuple) else type(obj)(*[p[i] for p in parts])
                for i in range(n)]
    if isinstance(obj, dict) and obj:
        parts = {k: scatter(v, devices, dim) for k, v in obj.items()}
        n = min(len(p) for p in parts.values())
        return [type(obj)((k, parts[k][i]) for k in obj) for i in range(n)]
    return [obj for _ in devices]


def gather(outputs, device, dim: int):
    """Concatenate the replicas' outputs along dim on one device (differentiable)."""
    import ember
    from ...frontend.tensor import Tensor
    first = outputs[0]
    if isinstance(first, Tensor):
        if first.dim() == 0:      # scalars (a loss per replica) become a vector, as in PyTorch
            return ember.stack([o.to(device) for o in outputs])
        return ember.cat([o.to(device) for o in outputs], dim)
    if first is None:
        return None
    if isinstance(first, dict):
        return type(first)((k, gather([o[k] for o in outputs], device, dim)) for k in first)
    if isinstance(first, (list, tuple)):
        items = [gather(list(col), device, dim) for col in zip(*outputs)]
        return type(first)(items) if type(first) in (list, tuple) else type(first)(*items)
    return outputs


def replicate(module: Module, devices) -> list[Module]:
    """Copies of module whose parameters are differentiable copies on each device (the first device's
    replica is the module itself)."""
    replicas = [module]
    for dev in devices[1:]:
        memo: dict = {}
        replicas.append(_replica(module, dev, memo))
    return replicas


def _replica(m: Module, dev, memo: dict) -> Module:
    if id(m) in memo:
        return memo[id(m)]
    r = object.__new__(type(m))
    r.__dict__.update(m.__dict__)
    memo[id(m)] = r
    d = r.__dict__
    d["_parameters"] = type(m._parameters)(
        (k, None if p is None else memo.setdefault(("p", id(p)), p.to(dev))) for k, p in m._parameters.items())
    d["_buffers"] = type(m._buffers)(
        (k, None if b is None else memo.setdefault(("b", id(b)), b.detach().to(dev))) for k, b in m._buffers.items())
    d["_modules"] = type(m._modules)((k, None if c is None else _replica(c, dev, memo)) for k, c in m._modules.items())
    return r


class DataParallel(Module):
    """torch.nn.DataParallel: split each batch over several GPUs of this process."""

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0):
        super().__init__()
        import ember
        self.module = module
        d = self.__dict__
        d["dim"] = dim
        if not ember.cuda.is_available():
            d["device_ids"] = []
            d["output_device"] = None
            d["src_device_obj"] = None
            return
        if device_ids is None:
            device_ids = list(range(ember.cuda.device_count()))
        if output_device is None:
            output_device = device_ids[0]
        d["device_ids"] = [_index(i) for i in device_ids]
        d["output_device"] = _index(output_device)
        d["src_device_obj"] = ember.device("cuda", self.device_ids[0])

    def forward(self, *inputs, **kwargs):
        if not self.device_ids:
            return self.module(*inputs, **kwargs)
        import ember
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            if t.device != self.src_device_obj:
                raise RuntimeError(f"module must have its parameters and buffers on device {self.src_device_obj} "
                                   f"(device_ids[0]) but found one of them on device: {t.device}")
        devices = [ember.device("cuda", i) for i in self.device_ids]
        return self._run_on(devices, ember.device("cuda", self.output_device), inputs, kwargs)

    def _run_on(self, devices, output_device, inputs, kwargs):
        """scatter -> replicate -> run each replica on its device -> gather (device-generic)."""
        in_chunks = scatter(tuple(inputs), devices, self.dim) if inputs else [() for _ in devices]
        kw_chunks = scatter(kwargs, devices, self.dim) if kwargs else [{} for _ in in_chunks]
        n = min(len(in_chunks), len(kw_chunks))
        if n == 1:
            return self.module(*in_chunks[0], **kw_chunks[0])
        replicas = replicate(self.module, devices[:n])
        outputs = []
        for rep, dev, a, k in zip(replicas, devices, in_chunks, kw_chunks):
            with _device_context(dev):
                outputs.append(rep(*a, **k))
        return gather(outputs, output_device, self.dim)


def _index(d) -> int:
    if isinstance(d, int):
        return d
    import ember
    return ember.device(d).index or 0
