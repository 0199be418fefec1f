"""ember.utils.data: collate rules, samplers, DataLoader options, reproducible shuffling."""
import collections

import numpy as np
import pytest

import ember
from ember.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, IterableDataset, RandomSampler,
                              SequentialSampler, Subset, SubsetRandomSampler, TensorDataset, WeightedRandomSampler,
                              default_collate, default_convert, get_worker_info, random_split)


def _plain(x):
    """A nested structure with tensors replaced by (dtype name, values) for comparisons."""
    if hasattr(x, "dtype") and hasattr(x, "shape") and not isinstance(x, np.ndarray):
        return (str(x.dtype).split(".")[-1], np.asarray(x.detach().cpu().numpy()).tolist())
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x).__name__, [_plain(v) for v in x]
    return x


Point = collections.namedtuple("Point", "x y")

COLLATE_CASES = {
    "ints": [1, 2, 3],
    "floats": [1.5, 2.0],
    "bools": [True, False],
    "strings": ["a", "bc"],
    "tuples": [(1, 2.0), (3, 4.0)],
    "lists": [[1, 2], [3, 4]],
    "dicts": [{"a": 1, "b": [1.0, 2.0]}, {"a": 2, "b": [3.0, 4.0]}],
    "numpy_arrays": [np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)],
    "numpy_int_arrays": [np.arange(3), np.arange(3)],
    "numpy_scalars_f64": [np.float64(1.5), np.float64(2.5)],
    "numpy_scalars_f32": [np.float32(1.5), np.float32(2.5)],
    "namedtuples": [Point(1, 2.0), Point(3, 4.0)],
}


@pytest.mark.parametrize("case", sorted(COLLATE_CASES))
def test_default_collate_matches_torch(case):
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as tcollate
    batch = COLLATE_CASES[case]
    got, want = _plain(default_collate(batch)), _plain(tcollate(batch))
    assert got == want


def test_default_collate_tensors_and_errors():
    a = default_collate([ember.ones(2, 3), ember.zeros(2, 3)])
    assert tuple(a.shape) == (2, 2, 3)
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="found <class 'object'>"):
        default_collate([object(), object()])
    with pytest.raises(RuntimeError):
        default_collate([ember.ones(2), ember.ones(3)])


def test_default_convert():
    out = default_convert({"a": np.arange(3), "b": (np.float32(1.0), "s")})
    assert isinstance(out["a"], ember.Tensor) and out["a"].dtype is ember.int64
    assert isinstance(out["b"], list) and out["b"][1] == "s"


def _ds(n=10):
    return TensorDataset(ember.arange(n).float().reshape(n, 1), ember.arange(n))


def test_loader_batches_len_and_drop_last():
    ds = _ds(10)
    loader = DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    assert batches[0][0].shape == (4, 1) and batches[2][1].tolist() == [8, 9]
    assert loader.dataset is ds
    loader = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(b[1]) for b in loader] == [4, 4]


def test_fast_path_equals_sample_path():
    class Wrapped(Dataset):   # same data through the per-sample path
        def __init__(self, d):
            self.d = d

        def __getitem__(self, i):
            return self.d[i]

        def __len__(self):
            return len(self.d)
    ds = _ds(13)
    a = list(DataLoader(ds, batch_size=5))
    b = list(DataLoader(Wrapped(ds), batch_size=5))
    for x, y in zip(a, b):
        assert _plain(x) == _plain(y)


def test_shuffle_is_reproducible_with_manual_seed_and_generator():
    ds = _ds(50)
    ember.manual_seed(3)
    a = [b[1].tolist() for b in DataLoader(ds, batch_size=8, shuffle=True)]
    ember.manual_seed(3)
    b = [b[1].tolist() for b in DataLoader(ds, batch_size=8, shuffle=True)]
    assert a == b and sorted(sum(a, [])) == list(range(50)) and sum(a, []) != list(range(50))
    g1, g2 = ember.Generator().manual_seed(7), ember.Generator().manual_seed(7)
    c = [b[1].tolist() for b in DataLoader(ds, batch_size=8, shuffle=True, generator=g1)]
    d = [b[1].tolist() for b in DataLoader(ds, batch_size=8, shuffle=True, generator=g2)]
    assert c == d
    loader = DataLoader(ds, batch_size=50, shuffle=True)
    assert next(iter(loader))[1].tolist() != next(iter(loader))[1].tolist()   # a new order each epoch


def test_num_workers_keep_order():
    class Slow(Dataset):
        def __getitem__(self, i):
            import time
            time.sleep(0.001 * (i % 3))
            return {"i": i, "w": get_worker_info() is not None}

        def __len__(self):
            return 40
    ref = [b["i"].tolist() for b in DataLoader(Slow(), batch_size=3)]
    inits = []
    loader = DataLoader(Slow(), batch_size=3, num_workers=3, worker_init_fn=inits.append,
                        persistent_workers=True, pin_memory=True)
    batches = list(loader)
    assert [b["i"].tolist() for b in batches] == ref
    assert all(b["w"].all().item() for b in batches) and sorted(inits) == [0, 1, 2]


def test_batch_size_none_and_custom_collate():
    ds = _ds(3)
    items = list(DataLoader(ds, batch_size=None))
    assert len(items) == 3 and items[1][1].item() == 1
    out = list(DataLoader(ds, batch_size=2, collate_fn=lambda b: len(b)))
    assert out == [2, 1]


def test_option_conflicts():
    ds = _ds()
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_sampler=BatchSampler(SequentialSampler(ds), 2, False), batch_size=3)
    with pytest.raises(ValueError, match="drop_last"):
        DataLoader(ds, batch_size=None, drop_last=True)
    with pytest.raises(ValueError, match="persistent_workers"):
        DataLoader(ds, persistent_workers=True)


def test_batch_sampler_and_sampler_arguments():
    ds = _ds(10)
    bs = BatchSampler(SequentialSampler(ds), 3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]] and len(bs) == 4
    loader = DataLoader(ds, batch_sampler=bs)
    assert [b[1].tolist() for b in loader] == list(bs)
    loader = DataLoader(ds, batch_size=4, sampler=[9, 8, 7, 6, 5])
    assert [b[1].tolist() for b in loader] == [[9, 8, 7, 6], [5]]


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


def test_iterable_dataset():
    loader = DataLoader(Stream(7), batch_size=3)
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]] and len(loader) == 3
    loader = DataLoader(Stream(7), batch_size=3, drop_last=True, num_workers=2)
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5]] and len(loader) == 2
    assert list(DataLoader(Stream(2), batch_size=None)) == [0, 1]   # ints pass through, as in torch
    with pytest.raises(ValueError, match="shuffle"):
        DataLoader(Stream(3), shuffle=True)


def test_samplers():
    ds = list(range(20))
    ember.manual_seed(0)
    r = list(RandomSampler(ds))
    assert sorted(r) == ds and r != ds
    g = ember.Generator().manual_seed(1)
    r2 = list(RandomSampler(ds, replacement=True, num_samples=50, generator=g))
    assert len(r2) == 50 and all(0 <= i < 20 for i in r2)
    r3 = list(RandomSampler(ds, num_samples=45))
    assert len(r3) == 45 and sorted(r3[:20]) == ds
    s = list(SubsetRandomSampler([3, 5, 7]))
    assert sorted(s) == [3, 5, 7]
    w = list(WeightedRandomSampler([0, 0, 1.0, 0], 10))
    assert w == [2] * 10
    w2 = list(WeightedRandomSampler([1, 1, 1, 1], 4, replacement=False))
    assert sorted(w2) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        RandomSampler([], num_samples=None)
    with pytest.raises(ValueError, match="num_samples"):
        WeightedRandomSampler([1.0], 0)


def test_subset_concat_random_split():
    ds = _ds(10)
    sub = Subset(ds, [4, 2])
    assert len(sub) == 2 and sub[1][1].item() == 2
    assert [b[1].tolist() for b in DataLoader(sub, batch_size=2)] == [[4, 2]]
    cat = ConcatDataset([ds, _ds(3)])
    assert len(cat) == 13 and cat[11][1].item() == 1 and cat[-1][1].item() == 2
    assert len(ds + ds) == 20
    g = ember.Generator().manual_seed(0)
    a, b = random_split(ds, [7, 3], generator=g)
    assert len(a) == 7 and len(b) == 3
    assert sorted(a.indices + b.indices) == list(range(10))
    g = ember.Generator().manual_seed(0)
    a2, _ = random_split(ds, [7, 3], generator=g)
    assert a2.indices == a.indices
    parts = random_split(range(10), [0.5, 0.3, 0.2])
    assert [len(p) for p in parts] == [5, 3, 2]
    parts = random_split(range(11), [0.5, 0.5])
    assert [len(p) for p in parts] == [6, 5]
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [3, 3])


def test_tensor_dataset_checks_sizes():
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(ember.ones(3), ember.ones(4))


class _Augmented(Dataset):
    """A dataset that draws random numbers in __getitem__ (an augmentation)."""

    def __len__(self):
        return 48

    def __getitem__(self, i):
        w = get_worker_info()
        return ember.randn(3) * 0.1 + i, -1 if w is None else w.id


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_deal_batches_round_robin_with_their_own_seeded_generators(workers):
    """Batch i goes to worker i % num_workers and each worker draws from a generator of its own (seeded
    base_seed + id, base_seed drawn per epoch): a seeded run is reproducible, epochs differ -- threads
    sharing the default generator had raced on it (PyTorch's processes have one each)."""
    def epoch():
        batches = list(DataLoader(_Augmented(), batch_size=4, num_workers=workers))
        return ember.cat([x.flatten() for x, _ in batches]), [w.tolist() for _, w in batches]
    ember.manual_seed(0)
    a, wa = epoch()
    b, _ = epoch()
    ember.manual_seed(0)
    c, wc = epoch()
    assert bool((a == c).all()) and not bool((a == b).all())
    assert wa == wc == [[i % workers] * 4 for i in range(12)]

    class Seeds(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return ember.initial_seed() - get_worker_info().seed
    assert [int(s) for s in DataLoader(Seeds(), batch_size=1, num_workers=2)] == [0, 0, 0, 0]


def test_default_collate_keeps_string_fields_as_tuples():
    """A field of strings comes back as the tuple zip() made, as PyTorch's collate returns it."""
    names, values = next(iter(DataLoader([("x", 1.5), ("y", 2.5)], batch_size=2)))
    assert names == ("x", "y") and values.tolist() == [1.5, 2.5]
