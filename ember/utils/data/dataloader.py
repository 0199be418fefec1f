"""DataLoader and the collate functions, with torch.utils.data's behaviour.

In:  a dataset (map-style or iterable), batching options, an optional sampler / batch_sampler.
Out: an iterable of batches built by collate_fn (default_collate: PyTorch's rules).

num_workers > 0 fetches batches on a pool of threads (in the same process: no pickling, no fork),
still yielding them in sampler order, so results do not depend on num_workers. An IterableDataset
is read in the main thread. pin_memory, persistent_workers, timeout and multiprocessing_context are
accepted and have no effect.
"""
from __future__ import annotations

import collections
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from ...frontend.tensor import Tensor
from .dataset import IterableDataset, Subset, TensorDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info"]

_ERR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _np_to_tensor(a):
    from ...frontend.creation import as_tensor
    return as_tensor(np.asarray(a))


def default_collate(batch):
    """Merge a list of samples into a batch: tensors are stacked, numpy arrays become stacked tensors,
    Python floats a float64 tensor, ints an int64 tensor, strings stay a list; tuples and lists are
    transposed (a tuple of fields becomes a list of batched fields), dicts are collated per key."""
    from ...frontend.creation import tensor
    from ...frontend.shape_ops import stack
    from ...ir import dtypes as dt
    elem = batch[0]
    t = type(elem)
    if isinstance(elem, Tensor):
        return stack(list(batch), 0)
    if t.__module__ == "numpy" and t.__name__ not in ("str_", "string_", "bytes_"):
        if isinstance(elem, np.ndarray):
            if elem.dtype.kind in "OSUV":
                raise TypeError(_ERR.format(elem.dtype))
            return default_collate([_np_to_tensor(b) for b in batch])
        if elem.shape == ():
            return _np_to_tensor(np.array(batch))
    if isinstance(elem, float):
        return tensor(batch, dtype=dt.float64)
    if isinstance(elem, int):
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        out = {k: default_collate([d[k] for d in batch]) for k in elem}
        if t is dict:
            return out
        try:
            return t(out)
        except TypeError:
            return out
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return t(*(default_collate(s) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        n = len(elem)
        if any(len(e) != n for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        transposed = list(zip(*batch))       # (fields as tuples: a field of strings stays a tuple, as in PyTorch)
        if isinstance(elem, tuple):
            return [default_collate(s) for s in transposed]
        out = [default_collate(s) for s in transposed]
        if t is list:
            return out
        try:
            return t(out)
        except TypeError:
            return out
    raise TypeError(_ERR.format(t))


def default_convert(data):
    """Per-sample conversion when automatic batching is off: numpy arrays become tensors."""
    t = type(data)
    if isinstance(data, Tensor):
        return data
    if t.__module__ == "numpy" and t.__name__ not in ("str_", "string_", "bytes_"):
        if isinstance(data, np.ndarray) and data.dtype.kind in "OSUV":
            return data
        return _np_to_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        out = {k: default_convert(v) for k, v in data.items()}
        try:
            return out if t is dict else t(out)
        except TypeError:
            return out
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return t(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        out = [default_convert(d) for d in data]
        try:
            return out if t is list else t(out)
        except TypeError:
            return out
    return data


class WorkerInfo:
    def __init__(self, id, num_workers, seed, dataset):
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers})"


_worker = threading.local()


def get_worker_info():
    """Inside a DataLoader worker thread: its WorkerInfo; in the main thread: None."""
    return getattr(_worker, "info", None)


class _InfiniteConstantSampler(Sampler):
    def __iter__(self):
        while True:
            yield None


class DataLoader:
    """Iterate over a dataset in batches (torch.utils.data.DataLoader's arguments and behaviour)."""

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn: Callable | None = None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Callable | None = None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers > 0 else prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                                 f"shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got "
                                 f"sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified batch_sampler option, but "
                                 f"got batch_sampler={batch_sampler}")
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with "
                             "drop_last")
        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        self._auto_collation = batch_sampler is not None
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self):
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is not None:
                n = n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size
            return n
        return len(self._index_sampler)

    def __iter__(self):
        if self._iterable:
            return self._iter_iterable()
        if self.num_workers > 0:
            return self._iter_threads()
        return (self._fetch(idx) for idx in self._index_sampler)

    # ------------------------------------------------------------------------ fetching
    def _fetch(self, index):
        if not self._auto_collation:
            return self.collate_fn(self.dataset[index])
        fast = self._tensor_columns(index)
        if fast is not None:
            return fast
        ds = self.dataset
        getitems = getattr(ds, "__getitems__", None)
        data = getitems(index) if callable(getitems) else [ds[i] for i in index]
        return self.collate_fn(data)

    def _tensor_columns(self, index):
        """TensorDataset (or Subsets of one) with default_collate: one gather per tensor gives exactly
        what stacking the samples would, without a Python-level index per sample."""
        if self.collate_fn is not default_collate:
            return None
        ds = self.dataset
        while type(ds) is Subset:
            index = [ds.indices[i] for i in index]
            ds = ds.dataset
        if type(ds) is not TensorDataset:
            return None
        from ...frontend.creation import tensor
        from ...ir import dtypes as dt
        n = len(ds)
        if any(not -n <= i < n for i in index):
            raise IndexError(f"index out of range for a TensorDataset of length {n}")
        idx = tensor(index, dtype=dt.int64)
        return [t[idx] for t in ds.tensors]

    def _iter_threads(self):
        """Batch i is fetched by worker i % num_workers (a thread of its own, in order), as PyTorch deals
        batches round-robin to its worker processes; each worker draws random numbers from its own
        generator, seeded base_seed + id, base_seed drawn from the loader's generator once per iterator
        (each epoch): a seeded run's augmentations are the same every run and differ between epochs."""
        from ...frontend import rng
        gen = self.generator if self.generator is not None else rng.current_generator()
        base_seed = int(gen.numpy_rng(1).integers(0, 1 << 62))
        n = self.num_workers

        def init(wid):
            seed = base_seed + wid
            rng.set_thread_generator(rng.Generator().manual_seed(seed))
            _worker.info = WorkerInfo(wid, n, seed, self.dataset)
            if self.worker_init_fn is not None:
                self.worker_init_fn(wid)
        pools = [ThreadPoolExecutor(1, thread_name_prefix=f"ember-dataloader-{w}", initializer=init, initargs=(w,))
                 for w in range(n)]
        try:
            pending: collections.deque = collections.deque()
            batches = enumerate(self._index_sampler)
            for i, idx in itertools.islice(batches, n * (self.prefetch_factor or 2)):
                pending.append(pools[i % n].submit(self._fetch, idx))
            while pending:
                fut = pending.popleft()
                nxt = next(batches, None)
                if nxt is not None:
                    pending.append(pools[nxt[0] % n].submit(self._fetch, nxt[1]))
                yield fut.result()
        finally:
            for pool in pools:
                pool.shutdown(wait=True, cancel_futures=True)

    def _iter_iterable(self):
        it = iter(self.dataset)
        if not self._auto_collation:
            for sample in it:
                yield self.collate_fn(sample)
            return
        bs = self.batch_size if self.batch_size is not None else None
        if bs is None:  # a user batch_sampler is not allowed with an IterableDataset
            raise ValueError("DataLoader with IterableDataset needs batch_size")
        while True:
            batch = list(itertools.islice(it, bs))
            if not batch or (self.drop_last and len(batch) < bs):
                return
            yield self.collate_fn(batch)

    def __repr__(self):
        return f"<ember.utils.data.DataLoader of {type(self.dataset).__name__}, batch_size={self.batch_size}>"


