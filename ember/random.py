"""ember.random: torch.random's seeding functions and fork_rng (a block whose draws do not disturb
the global generator's sequence)."""
from __future__ import annotations

import contextlib

from .frontend.creation import get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .frontend.rng import default_generator

__all__ = ["manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state", "fork_rng", "default_generator"]


@contextlib.contextmanager
def fork_rng(devices=None, enabled: bool = True, _caller: str = "fork_rng", _devices_kw: str = "devices",
             device_type: str = "cuda"):
    """Inside the block random numbers may be drawn freely; on exit the generator state is restored."""
    if not enabled:
        yield
        return
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
