"""ember.datasets.MNIST: the MNIST digits from IDX files, shaped like torchvision.datasets.MNIST.

In:  root (a folder holding the four IDX files, gzipped or raw, directly or in root/MNIST/raw — the
     torchvision layout — or root/mnist), train, transform, target_transform, download.
Out: dataset[i] -> (image, label): image is a uint8 tensor [28, 28] (torchvision gives a PIL image;
     ember has no PIL) or whatever `transform` makes of it (transforms.ToTensor() -> float32
     [1, 28, 28] in [0, 1]); label is an int. `.data` (uint8 [N, 28, 28]) and `.targets` (int64 [N])
     hold everything, for vectorised use.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct

import numpy as np

from ..frontend.creation import from_numpy
from ..utils.data import Dataset

__all__ = ["MNIST", "read_idx"]

MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
RESOURCES = [("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
             ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
             ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
             ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")]

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a numpy array, checking its header against its size."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise RuntimeError(f"MNIST: cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise RuntimeError(f"MNIST: {path} is not an IDX file (bad magic {raw[:4]!r})")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    n = int(np.prod(dims)) if dims else 1
    start = 4 + 4 * ndim
    if len(raw) - start != n * dtype.itemsize:
        raise RuntimeError(f"MNIST: {path} is truncated or damaged: header says {dims} ({n * dtype.itemsize} "
                           f"bytes of data), file has {len(raw) - start}")
    a = np.frombuffer(raw, dtype=dtype, count=n, offset=start).reshape(dims)
    return a.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else a


class MNIST(Dataset):
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
               "8 - eight", "9 - nine"]
    mirrors = MIRRORS
    resources = RESOURCES

    def __init__(self, root: str, train: bool = True, transform=None, target_transform=None,
                 download: bool = False):
        self.root = os.path.expanduser(os.fspath(root))
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        prefix = "train" if train else "t10k"
        images = self._find(f"{prefix}-images-idx3-ubyte")
        labels = self._find(f"{prefix}-labels-idx1-ubyte")
        if (images is None or labels is None) and download:
            self.download()
            images = self._find(f"{prefix}-images-idx3-ubyte")
            labels = self._find(f"{prefix}-labels-idx1-ubyte")
        if images is None or labels is None:
            raise RuntimeError(f"Dataset not found. MNIST looked for {prefix}-images-idx3-ubyte[.gz] and "
                               f"{prefix}-labels-idx1-ubyte[.gz] in {self._search_dirs()}. "
                               "You can use download=True to download it")
        x = read_idx(images)
        y = read_idx(labels)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise RuntimeError(f"MNIST: images {x.shape} and labels {y.shape} do not match")
        self._images = np.ascontiguousarray(x, dtype=np.uint8)
        self._labels = y.astype(np.int64)
        self.data = from_numpy(self._images)
        self.targets = from_numpy(self._labels)

    # --------------------------------------------------------------------------- files
    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, type(self).__name__, "raw")

    def _search_dirs(self):
        return [self.raw_folder, os.path.join(self.root, "mnist"), self.root]

    def _find(self, base):
        for d in self._search_dirs():
            for name in (base, base + ".gz"):
                p = os.path.join(d, name)
                if os.path.isfile(p):
                    return p
        return None

    def _check_exists(self) -> bool:
        return all(self._find(name[:-3]) is not None for name, _ in self.resources)

    def download(self) -> None:
        """Fetch the four files into root/MNIST/raw from the first mirror that answers, checking md5s."""
        if self._check_exists():
            return
        import urllib.error
        import urllib.request
        os.makedirs(self.raw_folder, exist_ok=True)
        for name, md5 in self.resources:
            if self._find(name[:-3]) is not None:
                continue
            errors = []
            for mirror in self.mirrors:
                url = mirror + name
                try:
                    with urllib.request.urlopen(url, timeout=30) as r:
                        blob = r.read()
                except (urllib.error.URLError, OSError) as e:
                    errors.append(f"{url}: {e}")
                    continue
                if hashlib.md5(blob).hexdigest() != md5:
                    errors.append(f"{url}: md5 mismatch (got {hashlib.md5(blob).hexdigest()}, expected {md5})")
                    continue
                tmp = os.path.join(self.raw_folder, name + ".part")
                with open(tmp, "wb") as f:
                    f.write(blob)
                os.replace(tmp, os.path.join(self.raw_folder, name))
                break
            else:
                raise RuntimeError(f"MNIST: could not download {name} (offline?). Tried:\n  " + "\n  ".join(errors)
                                   + f"\nCopy the four MNIST .gz files into {self.raw_folder} (the repository "
                                   "ships them in data/mnist) and pass download=False.")

    # --------------------------------------------------------------------------- items
    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int):
        img = from_numpy(self._images[index])
        target = int(self._labels[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    @property
    def class_to_idx(self):
        return {c: i for i, c in enumerate(self.classes)}

    @property
    def train_data(self):
        return self.data

    @property
    def train_labels(self):
        return self.targets

    @property
    def test_data(self):
        return self.data

    @property
    def test_labels(self):
        return self.targets

    def __repr__(self):
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}", f"    Split: {'Train' if self.train else 'Test'}"]
        if self.transform is not None:
            lines.append(f"    StandardTransform\n    Transform: {self.transform!r}")
        return "\n".join(lines)
