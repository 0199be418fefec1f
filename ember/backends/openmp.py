"""ember.backends.openmp: ember's CPU threads are its own pool, not OpenMP."""
from __future__ import annotations


def is_available() -> bool:
    return False
