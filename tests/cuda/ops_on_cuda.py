"""pytest plugin: run the op tests (tests/ops, tests/nn) with every tensor they create on 'cuda'.

    python -m pytest -p tests.cuda.ops_on_cuda tests/ops -q

tests/ops/helpers.py builds inputs with `E.tensor(...)`; this plugin swaps the helpers' `E` for a view
of ember whose factories default to device='cuda' (before the test modules import it), reads
results back with .cpu(), and lets Tensor.numpy() copy a cuda tensor to the host (inside this test
process only), so the same one-line op tests compare CuPy kernels against torch.  A failure here
that passes on the CPU is a CUDA eager bug.  Without a GPU the plugin does nothing."""
from __future__ import annotations

import types

import ember

FACTORIES = ("tensor", "as_tensor", "asarray", "zeros", "ones", "full", "empty", "arange", "linspace",
             "logspace", "eye", "rand", "randn", "randint", "randperm", "normal")


class _CudaEmber(types.ModuleType):
    def __getattr__(self, name):
        attr = getattr(ember, name)
        if name in FACTORIES:
            def factory(*args, _f=attr, **kwargs):
                if kwargs.get("device") is None:
                    kwargs["device"] = "cuda"
                return _f(*args, **kwargs)
            return factory
        return attr


def pytest_configure(config):
    if not ember.cuda.is_available():
        return
    from tests.ops import helpers
    proxy = _CudaEmber("ember_on_cuda")
    helpers.E = proxy
    orig_np = helpers._np

    def _np(x):
        if isinstance(x, ember.Tensor) and x.device.type != "cpu":
            x = x.detach().cpu()
        return orig_np(x)
    helpers._np = _np
    orig_numpy = ember.Tensor.numpy

    def numpy(self, force=False):
        if self.device.type != "cpu":
            return orig_numpy(self.detach().cpu() if self.requires_grad and force else self.cpu(), force)
        return orig_numpy(self, force)
    ember.Tensor.numpy = numpy
    config.addinivalue_line("markers", "ops_on_cuda: the op tests run with tensors on cuda")
