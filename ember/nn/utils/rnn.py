"""ember.nn.utils.rnn: PackedSequence and the pack / pad helpers of torch.nn.utils.rnn.

In:  padded batches (T, B, *) or (B, T, *) with their lengths, or lists of variable-length tensors.
Out: PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices), PyTorch's layout: `data`
     holds the valid rows time step by time step, longest sequence first; `batch_sizes[t]` (an int64
     CPU tensor) is how many sequences are still running at step t.

Packing and padding are one gather each (index_select with indices computed from the lengths), so
gradients flow back through them. The lengths are read as Python numbers, so under ember.compile a
lengths *tensor* passed to the compiled function is a graph break (that call runs eagerly), as the
output's shape depends on the values.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from ...frontend import shape_ops as S
from ...frontend.creation import full, tensor
from ...frontend.tensor import Tensor
from ...ir import dtypes as dt

__all__ = ["PackedSequence", "invert_permutation", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence",
           "unpad_sequence", "pack_sequence", "unpack_sequence"]


class PackedSequence_(NamedTuple):
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None
    unsorted_indices: Tensor | None


def _bind(optional, fn):
    return None if optional is None else fn(optional)


class PackedSequence(PackedSequence_):
    """The data and batch sizes of a packed batch of sequences; every RNN module accepts one.

    Build it with pack_padded_sequence or pack_sequence rather than by hand."""

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        if batch_sizes is None:
            if not (isinstance(data, (list, tuple)) and len(data) == 2):
                raise TypeError("PackedSequence: expected (data, batch_sizes), or data and batch_sizes")
            data, batch_sizes = data
        if isinstance(batch_sizes, Tensor) and batch_sizes.device.type != "cpu":
            raise ValueError("batch_sizes should always be on CPU. Instances of PackedSequence should never be "
                             "created manually. They should be instantiated by functions like pack_sequence and "
                             "pack_padded_sequences in nn.utils.rnn.")
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args, **kwargs) -> "PackedSequence":
        """Move / convert `data` (indices follow it to its device; batch_sizes stays on the CPU)."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        return type(self)(data, self.batch_sizes, _bind(self.sorted_indices, lambda t: t.to(data.device)),
                          _bind(self.unsorted_indices, lambda t: t.to(data.device)))

    def cuda(self, *args, **kwargs):
        return self.to("cuda" if not args else args[0], **kwargs)

    def cpu(self, *args, **kwargs):
        return self.to("cpu")

    def pin_memory(self):
        return self

    def is_pinned(self) -> bool:
        return False

    @property
    def is_cuda(self) -> bool:
        return self.data.is_cuda

    def double(self):
        return self.to(dtype=dt.float64)

    def float(self):
        return self.to(dtype=dt.float32)

    def half(self):
        return self.to(dtype=dt.float16)

    def long(self):
        return self.to(dtype=dt.int64)

    def int(self):
        return self.to(dtype=dt.int32)

    def short(self):
        return self.to(dtype=dt.int16)

    def char(self):
        return self.to(dtype=dt.int8)

    def byte(self):
        return self.to(dtype=dt.uint8)


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    """The inverse of a 1-D permutation of indices (None stays None)."""
    if permutation is None:
        return None
    inv = np.empty(permutation.numel(), dtype=np.int64)
    inv[np.asarray(permutation.tolist(), dtype=np.int64)] = np.arange(permutation.numel())
    return tensor(inv, device=permutation.device)


def _lengths(lengths) -> list[int]:
    if isinstance(lengths, Tensor):
        if lengths.device.type != "cpu" or lengths.ndim != 1:
            raise RuntimeError(f"'lengths' argument should be a 1D CPU int64 tensor, but got {lengths.ndim}D "
                               f"{lengths.device} {lengths.dtype.name} tensor")
        return [int(v) for v in lengths.tolist()]
    return [int(v) for v in lengths]


def pack_padded_sequence(input: Tensor, lengths, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded batch (T, B, *) (or (B, T, *) with batch_first) of sequences of the given lengths.

    With enforce_sorted=True the lengths must be decreasing; otherwise the batch is sorted here and
    the PackedSequence remembers the order (RNN outputs and pad_packed_sequence restore it)."""
    lens = _lengths(lengths)
    if input.ndim < 2:
        raise ValueError(f"pack_padded_sequence: expected an input of at least 2 dimensions, got {input.ndim}")
    bdim = 0 if batch_first else 1
    B, T = input.shape[bdim], input.shape[1 - bdim]
    if len(lens) != B:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got {len(lens)} "
                           f"(batch_size={B})")
    if any(n <= 0 for n in lens):
        raise RuntimeError("Length of all samples has to be greater than 0, but found an element in 'lengths' "
                           "that is <= 0")
    sorted_indices = None
    if enforce_sorted:
        if any(a < b for a, b in zip(lens, lens[1:])):
            raise RuntimeError("`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                               "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence "
                               "to sidestep this requirement if you do not need ONNX exportability.")
    else:
        order = np.argsort(-np.asarray(lens, dtype=np.int64), kind="stable")
        sorted_indices = tensor(order, device=input.device)
        input = S.index_select(input, bdim, sorted_indices)
        lens = [lens[i] for i in order]
    if lens[0] > T:
        raise RuntimeError(f"pack_padded_sequence: a sequence length ({lens[0]}) exceeds the padded length of the "
                           f"input ({T})")
    sizes = np.array([sum(1 for n in lens if n > t) for t in range(lens[0])], dtype=np.int64)
    # row of (t, b) in the input with its first two dims flattened
    rows = [(b * T + t) if batch_first else (t * B + b) for t in range(len(sizes)) for b in range(sizes[t])]
    flat = S.reshape(input, (B * T,) + tuple(input.shape[2:]))
    data = S.index_select(flat, 0, tensor(np.asarray(rows, dtype=np.int64), device=input.device))
    return PackedSequence(data, tensor(sizes), sorted_indices, None)


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Tensor, Tensor]:
    """The inverse of pack_padded_sequence: (padded (T, B, *) or (B, T, *), lengths int64 tensor), in
    the batch's original order."""
    sizes = [int(v) for v in sequence.batch_sizes.tolist()]
    T = len(sizes)
    if total_length is not None:
        if total_length < T:
            raise ValueError("Expected total_length to be at least the length of the longest sequence in input, "
                             f"but got total_length={total_length} and max sequence length being {T}")
        T = total_length
    data = sequence.data
    B = sizes[0]
    trail = tuple(data.shape[1:])
    pad_row = full((1,) + trail, padding_value, dtype=data.dtype, device=data.device)
    ext = S.cat([data, pad_row], 0)
    pad = data.shape[0]                        # index of the padding row
    idx = np.full((T, B), pad, dtype=np.int64)
    off = 0
    for t, bs in enumerate(sizes):
        idx[t, :bs] = np.arange(off, off + bs)
        off += bs
    if batch_first:
        idx = idx.T
    out = S.reshape(S.index_select(ext, 0, tensor(idx.reshape(-1).copy(), device=data.device)),
                    idx.shape + trail)
    lengths = np.array([sum(1 for s in sizes if s > b) for b in range(B)], dtype=np.int64)
    if sequence.unsorted_indices is not None:
        out = S.index_select(out, 0 if batch_first else 1, sequence.unsorted_indices)
        lengths = lengths[np.asarray(sequence.unsorted_indices.tolist(), dtype=np.int64)]
    return out, tensor(lengths)


def pad_sequence(sequences: Sequence[Tensor] | Tensor, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Stack sequences of shape (L_i, *) into (T, B, *) (or (B, T, *)), padding to the longest."""
    if isinstance(sequences, Tensor):
        sequences = S.unbind(sequences, 0)
    if not isinstance(sequences, Iterable):
        raise RuntimeError("pad_sequence: Expected iterable for input sequences, but got arg of type: "
                           f"{type(sequences)}")
    seqs = list(sequences)
    if not seqs:
        raise RuntimeError("received an empty list of sequences")
    if padding_side not in ("left", "right"):
        raise ValueError(f"Expected padding_side to be one of left or right, but got {padding_side}.")
    trail = tuple(seqs[0].shape[1:])
    for i, s in enumerate(seqs):
        if tuple(s.shape[1:]) != trail:
            raise RuntimeError(f"pad_sequence: every sequence must have the trailing shape {list(trail)} of the "
                               f"first, but sequence {i} has shape {list(s.shape)}")
    T = max(s.shape[0] for s in seqs)
    padded = []
    for s in seqs:
        n = T - s.shape[0]
        if n:
            fill = full((n,) + trail, padding_value, dtype=s.dtype, device=s.device)
            s = S.cat([s, fill] if padding_side == "right" else [fill, s], 0)
        padded.append(s)
    return S.stack(padded, 0 if batch_first else 1)


def unpad_sequence(padded_sequences: Tensor, lengths, batch_first: bool = False) -> list[Tensor]:
    """The list of sequences a padded batch holds (each cut to its length)."""
    lens = _lengths(lengths)
    x = padded_sequences if batch_first else S.transpose(padded_sequences, 0, 1)
    return [x[b, :n] for b, n in enumerate(lens)]


def pack_sequence(sequences: Sequence[Tensor], enforce_sorted: bool = True) -> PackedSequence:
    """pad_sequence then pack_padded_sequence."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    """The list of sequences a PackedSequence holds, in their original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
