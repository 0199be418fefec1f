"""ember.accelerator, the ember.backends submodules and the ember.nn.modules.* paths: what PyTorch
scripts import and call first thing, answered as PyTorch answers on a machine like this one."""
import importlib
import subprocess
import sys

import pytest

import ember
import ember.nn as nn

needs_no_gpu = pytest.mark.skipif(ember.cuda.is_available(), reason="checks the CPU-only answers")


@needs_no_gpu
def test_accelerator_without_a_gpu_answers_as_pytorch():
    acc = ember.accelerator
    assert acc.is_available() is False
    assert acc.current_accelerator() is None and acc.current_accelerator(check_available=True) is None
    assert acc.device_count() == 0
    for call in (acc.current_device_index, acc.synchronize, lambda: acc.set_device_index(0),
                 acc.memory_allocated, acc.current_device_idx):
        with pytest.raises(RuntimeError, match="Cannot access accelerator device when none is available"):
            call()
    acc.empty_cache()                                    # a no-op, as in PyTorch
    with acc.device_index(None):
        pass
    # the PyTorch 2.6 idiom
    device = acc.current_accelerator().type if acc.is_available() else "cpu"
    assert ember.zeros(2, device=device).device.type == "cpu"


def test_accelerator_matches_torch_on_this_machine():
    torch = pytest.importorskip("torch")
    assert ember.accelerator.is_available() == torch.accelerator.is_available()
    assert ember.accelerator.device_count() == torch.accelerator.device_count()
    t = torch.accelerator.current_accelerator()
    e = ember.accelerator.current_accelerator()
    assert (t is None) == (e is None)
    assert e is None or e.type == t.type


@pytest.mark.gpu
def test_accelerator_with_a_gpu():
    if not ember.cuda.is_available():
        pytest.skip("no CUDA device")
    acc = ember.accelerator
    assert acc.is_available() and acc.current_accelerator() == ember.device("cuda")
    assert acc.device_count() == ember.cuda.device_count() >= 1
    i = acc.current_device_index()
    with acc.device_index(i):
        acc.synchronize()
    acc.set_device_index(f"cuda:{i}")
    assert acc.current_device_index() == i
    with pytest.raises(ValueError, match="doesn't match the current accelerator"):
        acc.set_device_index("cpu")


def test_backends_are_importable_submodules():
    # `import torch.backends.cudnn as cudnn` is how scripts spell it: run it in a fresh interpreter
    code = ("import ember.backends.cudnn as cudnn, ember.backends.mps, ember.backends.cuda, "
            "ember.backends.mkldnn, ember.backends.cpu, ember.backends.openmp\n"
            "import ember\n"
            "cudnn.benchmark = True\n"
            "assert ember.backends.cudnn.benchmark is True and ember.backends.cudnn is cudnn\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_backend_flags():
    from ember.backends import cpu, cuda, cudnn, mkldnn, mps
    assert cudnn.is_available() is False and cudnn.version() is None and not cudnn.is_acceptable(ember.zeros(1))
    assert mps.is_available() is False and mps.is_built() is False and mkldnn.is_available() is False
    assert cpu.get_cpu_capability() in ("AVX512", "AVX2", "DEFAULT")
    old = cudnn.deterministic
    with cudnn.flags(enabled=False, deterministic=True):
        assert cudnn.enabled is False and cudnn.deterministic is True
    assert cudnn.enabled is True and cudnn.deterministic is old
    cuda.matmul.allow_tf32 = True
    ember.backends.cudnn.allow_tf32 = True
    assert cuda.is_built() is True and cuda.matmul.allow_tf32 is True
    cuda.enable_flash_sdp(False)
    assert cuda.flash_sdp_enabled() is False
    cuda.enable_flash_sdp(True)
    with cuda.sdp_kernel(enable_flash=False, enable_math=True, enable_mem_efficient=False):
        assert not cuda.flash_sdp_enabled() and cuda.math_sdp_enabled() and not cuda.mem_efficient_sdp_enabled()
    assert cuda.flash_sdp_enabled() and cuda.mem_efficient_sdp_enabled()


def test_cpu_capability_matches_torch():
    torch = pytest.importorskip("torch")
    t = torch.backends.cpu.get_cpu_capability()
    if t in ("AVX512", "AVX2"):
        assert ember.backends.cpu.get_cpu_capability() == t


# the torch.nn.modules submodules ember has (PyTorch's lazy/adaptive/channelshuffle modules are absent)
SUBMODULES = ["activation", "batchnorm", "container", "conv", "distance", "dropout", "flatten", "fold",
              "instancenorm", "linear", "loss", "module", "normalization", "padding", "pixelshuffle", "pooling", "rnn",
              "sparse", "transformer", "upsampling", "utils"]


@pytest.mark.parametrize("sub", SUBMODULES)
def test_nn_modules_paths_hold_the_same_classes_as_torch(sub):
    """Each name PyTorch places in torch.nn.modules.<sub> that ember has is reachable at the same path
    and is the same class as ember.nn.<name>."""
    pytest.importorskip("torch")
    t = importlib.import_module(f"torch.nn.modules.{sub}")
    e = importlib.import_module(f"ember.nn.modules.{sub}")
    assert getattr(nn.modules, sub) is e
    for name in getattr(t, "__all__", []):
        if hasattr(nn, name):
            assert getattr(e, name) is getattr(nn, name), f"ember.nn.modules.{sub}.{name}"


def test_nn_modules_submodules_do_not_shadow_nn_names():
    # ember.nn.modules.utils (torch.nn.modules.utils) must not replace ember.nn.utils (clip_grad_norm_ ...)
    assert nn.utils is importlib.import_module("ember.nn.utils") and callable(nn.utils.clip_grad_norm_)
    assert nn.modules.utils is importlib.import_module("ember.nn.modules.utils")


def test_nn_modules_paths_scripts_name():
    from ember.nn.modules.batchnorm import _BatchNorm
    from ember.nn.modules.conv import _ConvNd
    from ember.nn.modules.utils import _pair, _quadruple, _reverse_repeat_tuple, consume_prefix_in_state_dict_if_present
    assert isinstance(nn.BatchNorm2d(3), _BatchNorm) and isinstance(nn.Conv2d(1, 1, 1), _ConvNd)
    assert nn.modules.linear.Linear is nn.Linear and nn.modules.rnn.LSTM is nn.LSTM
    assert nn.modules.activation.ReLU is nn.ReLU and nn.modules.loss.CrossEntropyLoss is nn.CrossEntropyLoss
    assert nn.modules.module.Module is nn.Module and nn.modules.activation.MultiheadAttention is nn.MultiheadAttention
    assert _pair(3) == (3, 3) and _pair((1, 2)) == (1, 2) and _pair(1.5) == (1.5, 1.5) and _quadruple(0) == (0,) * 4
    assert _reverse_repeat_tuple((1, 2), 2) == (2, 2, 1, 1)
    sd = {"module.fc.weight": 1, "module.fc.bias": 2, "other": 3}
    consume_prefix_in_state_dict_if_present(sd, "module.")
    assert sd == {"fc.weight": 1, "fc.bias": 2, "other": 3}
