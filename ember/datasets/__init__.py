"""ember.datasets: small datasets shaped like torchvision.datasets, plus image transforms.

    from ember.datasets import MNIST, transforms
    train = MNIST("data", train=True, transform=transforms.Compose([
        transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]))
"""
from . import transforms
from .mnist import MNIST, read_idx

__all__ = ["MNIST", "read_idx", "transforms"]
