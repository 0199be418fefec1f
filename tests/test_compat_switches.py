"""The switches PyTorch scripts set at the top (backends flags, threads, precision) are accepted."""
import ember as torch


def test_backends_flags_and_queries():
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = True
    assert torch.backends.mps.is_available() is False
    assert torch.backends.cudnn.benchmark is True


def test_threads_precision_determinism(monkeypatch):
    monkeypatch.delenv("EMBER_NUM_THREADS", raising=False)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.get_num_threads() == 1
        x = torch.randn(64, 64)
        assert torch.allclose(x @ torch.eye(64), x)
    finally:
        torch.set_num_threads(n)
    torch.set_float32_matmul_precision("high")
    assert torch.get_float32_matmul_precision() == "high"
    torch.use_deterministic_algorithms(True)
    assert torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)


def test_interop_threads_set_once(monkeypatch):
    import pytest

    import ember
    monkeypatch.setattr(ember, "_interop_threads", None)
    assert torch.get_num_interop_threads() == 1
    with pytest.raises(RuntimeError, match="positive integer"):
        torch.set_num_interop_threads(0)
    torch.set_num_interop_threads(2)
    assert torch.get_num_interop_threads() == 2
    with pytest.raises(RuntimeError, match="cannot set number of interop threads"):
        torch.set_num_interop_threads(3)
