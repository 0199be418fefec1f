"""Random numbers: the Generator objects (seed, offset) that hand out counters to the generator.

The generator itself -- counters hashed with splitmix64, then the uniform and normal transforms -- is
defined once in ember/ir/rng.py, which the code generators follow operation for operation, so a
compiled dropout with the same seed gives the same mask as eager, bit for bit.  A draw of n values at
key (seed, offset) uses the counters offset .. offset+n-1; the Generator advances its offset by n.
"""
from __future__ import annotations

import threading

import numpy as np

from ..ir.rng import GOLDEN, mix_seed, normal, splitmix64, uniform, words

__all__ = ["Generator", "default_generator", "current_generator", "set_thread_generator", "mix_seed", "splitmix64",
           "random_bits", "uniform", "normal"]


def random_bits(xp, seed: int, offset: int, n: int):
    """n 64-bit random words for counters offset .. offset+n-1."""
    return words(xp, seed, xp.arange(offset, offset + n, dtype=np.uint64))


def _key_seed(seed: int) -> int:
    """The seed the words are drawn under: the user's seed plus the golden increment (as splitmix64's own
    state advances), in 63 bits (a non-negative int64 in the key tensor).  splitmix64(0) is 0, so under
    seed 0 itself counter 0 gave the word 0: manual_seed(0); rand(1) was exactly 0.0, randn(1) 6.7 sigma."""
    return (int(seed) + GOLDEN) & 0x7FFFFFFFFFFFFFFF


class Generator:
    """ember.Generator: (seed, offset) state; manual_seed resets the offset."""

    def __init__(self, device="cpu"):
        self.device = device
        self._seed = 67280421310721
        self._offset = 0
        self._lock = threading.Lock()   # threads drawing at once must get disjoint counters

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def manual_seed(self, seed: int):
        self._seed = int(seed)
        self._offset = 0
        return self

    def seed(self) -> int:
        import secrets
        self.manual_seed(secrets.randbits(63))
        return self._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        from .creation import tensor
        from ..ir import dtypes
        return tensor([self._seed, self._offset], dtype=dtypes.int64)

    def set_state(self, state):
        s, o = (int(v) for v in state.tolist())
        self._seed, self._offset = s, o
        return self

    def take(self, n: int):
        """Reserve n counters: returns the key (seed, offset) for them."""
        with self._lock:
            key = (_key_seed(self._seed), self._offset)
            self._offset += int(n)
        return key

    def numpy_rng(self, n_hint: int = 1):
        """A numpy Generator for eager-only sampling (randperm, multinomial), seeded from the state."""
        seed, off = self.take(max(1, n_hint))
        return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, off])


default_generator = Generator()

# A DataLoader worker thread draws from a generator of its own (seeded base_seed + worker id, as PyTorch
# seeds each worker process): threads sharing the default one would race, and a batch's augmentation
# would depend on which thread fetched it.
_thread = threading.local()


def current_generator() -> Generator:
    """The generator random ops without generator= use: this thread's own (a DataLoader worker's) or
    the default one."""
    return getattr(_thread, "generator", None) or default_generator


def set_thread_generator(generator: Generator | None) -> None:
    _thread.generator = generator
