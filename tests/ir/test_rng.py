"""The counter-based generator's definition (ember/ir/rng.py): splitmix64 known answers, the accuracy
of its own log and cos, the distributions' range and moments, and counters that address values (a
draw at offset k is the tail of a draw at offset 0)."""
import math

import numpy as np
import pytest

from ember.ir import rng


def test_splitmix64_known_answers():
    # the reference splitmix64 stream from state 0: next() = mix(state += GOLDEN)
    state = np.array([rng.GOLDEN, 2 * rng.GOLDEN % 2 ** 64], dtype=np.uint64)
    assert [int(v) for v in rng.splitmix64(state)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]


def test_log_is_within_one_ulp_on_its_domain():
    x = np.concatenate([np.arange(1, 2 ** 12, dtype=np.float64),
                        np.random.default_rng(0).integers(1, 2 ** 32 + 1, 200_000).astype(np.float64)]) * 2.0 ** -32
    x = np.concatenate([x, [1.0, 0.5, math.sqrt(0.5), np.nextafter(math.sqrt(2) / 2, 1)]])
    got, want = rng.log_unit(np, x), np.log(x)
    assert np.max(np.abs(got - want) / np.spacing(np.abs(want) + 1e-300)) <= 1.0
    assert rng.log_unit(np, np.array([1.0]))[0] == 0.0


def test_cos_turns_matches_cos_to_a_few_ulp():
    lo = np.concatenate([np.arange(0, 2 ** 32, 2 ** 20 + 13, dtype=np.int64),
                         np.array([0, 1 << 30, 1 << 31, 1 << 29, (1 << 29) - 1, 3 << 30, (1 << 32) - 1], np.int64)])
    got = rng.cos_turns(np, lo)
    want = np.array([math.cos(2 * math.pi * (int(v) / 2 ** 32)) for v in lo])
    assert np.max(np.abs(got - want)) < 1e-15
    special = got[len(lo) - 7:len(lo) - 4]             # whole quarter turns are exact
    assert special[0] == 1.0 and special[1] == 0.0 and special[2] == -1.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_uniform_range_and_moments(dtype):
    u = rng.uniform(np, 7, 0, (200_000,), dtype)
    assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
    bits = {np.float16: 11, np.float32: 24, np.float64: 53}[dtype]
    assert np.all(u * 2.0 ** bits == np.floor(u * 2.0 ** bits))       # k / 2**bits, exact
    assert abs(u.astype(np.float64).mean() - 0.5) < 0.005 and abs(u.astype(np.float64).var() - 1 / 12) < 0.002


def test_normal_moments_and_tails():
    z = rng.normal(np, 11, 0, (400_000,), np.float64)
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(np.abs(z) > 3) - 0.0027) < 0.0005         # two-sided 3-sigma tail mass


def test_counters_address_values():
    a = rng.normal(np, 5, 0, (3, 100_000), np.float32)            # spans two numpy chunks
    b = rng.normal(np, 5, 70_000, (5,), np.float32)
    assert a.reshape(-1)[70_000:70_005].tobytes() == b.tobytes()
    assert rng.uniform(np, 6, 0, (5,), np.float32).tobytes() != rng.uniform(np, 5, 0, (5,), np.float32).tobytes()


def test_taylor_coefficients():
    assert rng.COS_C[0] == 1.0 and rng.SIN_C[0] == math.pi / 2
    assert rng.COS_C[1] == -(math.pi / 2) ** 2 / 2
