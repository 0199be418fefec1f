"""Random numbers: a counter-based generator, so eager, LLVM and CUDA code agree bit for bit.

A draw of n values at key (seed, offset) hashes the counters offset..offset+n-1 with splitmix64;
the Generator advances its offset by n. The same hash is emitted by the code generators, so a
compiled dropout with the same seed gives the same mask as eager.
"""
from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix_seed(seed: int) -> np.uint64:
    """The per-seed constant added to every counter (a splitmix64 step of the seed)."""
    return splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]


def splitmix64(x):
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        x = x ^ (x >> np.uint64(31))
    return x


def random_bits(xp, seed: int, offset: int, n: int):
    """n 64-bit random words for counters offset .. offset+n-1."""
    with np.errstate(over="ignore"):
        c = xp.arange(offset, offset + n, dtype=np.uint64) * _GOLDEN + xp.uint64(mix_seed(seed))
    return splitmix64(c)


def uniform(xp, seed, offset, shape, np_dtype):
    n = int(np.prod(shape, dtype=np.int64))
    bits = random_bits(xp, seed, offset, n)
    # as many high bits as the type's significand holds -> [0, 1), exact in the type (more bits would
    # round 1 - 2^-24 up to 1.0 in a 16-bit float)
    np_dtype = np.dtype(np_dtype)
    if np_dtype == np.float64:
        u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    else:
        m = 24 if np_dtype == np.float32 else 11 if np_dtype == np.float16 else 8   # float32, half, bfloat16
        u = (bits >> np.uint64(64 - m)).astype(np.float32) * np.float32(2.0 ** -m)
    return u.reshape(shape).astype(np_dtype, copy=False)


def normal(xp, seed, offset, shape, np_dtype):
    """Box-Muller on the two 32-bit halves of one word: one counter per value."""
    n = int(np.prod(shape, dtype=np.int64))
    bits = random_bits(xp, seed, offset, n)
    hi = (bits >> np.uint64(32)).astype(np.float64)
    lo = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64)
    u1 = (hi + 1.0) * (1.0 / 4294967296.0)          # (0, 1]: log is finite
    u2 = lo * (1.0 / 4294967296.0)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2) if xp is np else \
        xp.sqrt(-2.0 * xp.log(u1)) * xp.cos(2.0 * np.pi * u2)
    return z.reshape(shape).astype(np_dtype)


class Generator:
    """ember.Generator: (seed, offset) state; manual_seed resets the offset."""

    def __init__(self, device="cpu"):
        self.device = device
        self._seed = 67280421310721
        self._offset = 0

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
        key = (self._seed, self._offset)
        self._offset += int(n)
        return key

    def numpy_rng(self, n_hint: int = 1):
        """A numpy Generator for eager-only sampling (randperm, multinomial), seeded from the state."""
        seed, off = self.take(max(1, n_hint))
        return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, off])


default_generator = Generator()
