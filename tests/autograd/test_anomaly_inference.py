"""torch.autograd's anomaly detection and the inference-mode flag, against PyTorch's behaviour."""
import warnings

import pytest

import ember


def test_anomaly_mode_names_the_function_that_returned_nan():
    x = ember.tensor([0.0, 1.0], requires_grad=True)
    (x.sqrt() * 0).sum().backward()            # off: NaN flows silently, as in PyTorch
    assert ember.isnan(x.grad).any()
    assert not ember.is_anomaly_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ember.autograd.detect_anomaly():
            assert ember.is_anomaly_enabled()
            x.grad = None
            with pytest.raises(RuntimeError, match="Function 'SqrtBackward0' returned nan values in its 0th output"):
                (x.sqrt() * 0).sum().backward()
    assert not ember.is_anomaly_enabled()
    ember.autograd.set_detect_anomaly(True)
    try:
        assert ember.is_anomaly_enabled() and ember.is_anomaly_check_nan_enabled()
        y = ember.tensor([2.0], requires_grad=True)
        (y * y).sum().backward()               # finite gradients pass
        assert y.grad.item() == 4.0
    finally:
        ember.autograd.set_detect_anomaly(False)
    with ember.autograd.set_detect_anomaly(True, check_nan=False):
        x.grad = None
        (x.sqrt() * 0).sum().backward()        # check_nan off: no error
    assert not ember.is_anomaly_enabled()


def test_inference_mode_flag_as_context_and_decorator():
    assert not ember.is_inference_mode_enabled()
    with ember.inference_mode():
        assert ember.is_inference_mode_enabled() and not ember.is_grad_enabled()
        with ember.inference_mode(False):
            assert not ember.is_inference_mode_enabled() and ember.is_grad_enabled()
        assert ember.is_inference_mode_enabled()

    @ember.inference_mode()
    def f():
        return ember.is_inference_mode_enabled()

    @ember.inference_mode
    def g():
        return ember.is_inference_mode_enabled(), ember.is_grad_enabled()

    assert f() and g() == (True, False)
    assert not ember.is_inference_mode_enabled() and ember.is_grad_enabled()


def test_grad_takes_the_parameters_layout():
    """PyTorch's gradient layout contract: .grad has its parameter's strides (a weight gradient computed
    transposed is copied), so the fused optimizer updates see one layout."""
    x = ember.randn(5, 3)
    w = ember.nn.Parameter(ember.randn(3, 4))
    (x @ w).sum().backward()
    assert w.grad.stride() == w.stride() == (4, 1)
    wt = ember.nn.Parameter(ember.randn(4, 3).t())          # a transposed (F-ordered) parameter
    (x @ wt).sum().backward()
    assert wt.grad.stride() == wt.stride() == (1, 3)
    lin = ember.nn.Linear(3, 4)
    lin(x).sum().backward()
    assert lin.weight.grad.stride() == lin.weight.stride() and lin.weight.grad.is_contiguous()
