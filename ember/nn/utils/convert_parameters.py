"""parameters_to_vector / vector_to_parameters (one cat; slices written back in place)."""
from __future__ import annotations

from ...frontend import autograd as ag
from ...frontend.shape_ops import cat, reshape
from ...frontend.tensor import Tensor


def parameters_to_vector(parameters) -> Tensor:
    params = list(parameters)
    device = None
    for p in params:
        if device is None:
            device = p.device
        elif p.device != device:
            raise TypeError("Found two parameters on different devices, this is currently not supported.")
    return cat([reshape(p, (-1,)) for p in params])


def vector_to_parameters(vec: Tensor, parameters) -> None:
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {type(vec).__name__}")
    pointer = 0
    with ag.no_grad():
        for p in parameters:
            n = p.numel()
            p.data = reshape(vec[pointer:pointer + n], tuple(p.shape)).clone()
            pointer += n
