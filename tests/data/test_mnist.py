"""ember.datasets.MNIST and transforms: the repository's copy of MNIST, torchvision's conventions."""
import gzip
import os

import numpy as np
import pytest

import ember
from ember.datasets import MNIST, read_idx, transforms
from ember.utils.data import DataLoader

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data")


@pytest.fixture(scope="module")
def test_set():
    return MNIST(DATA, train=False)


def test_shapes_dtypes_and_labels(test_set):
    assert len(test_set) == 10_000
    assert test_set.data.dtype is ember.uint8 and tuple(test_set.data.shape) == (10_000, 28, 28)
    assert test_set.targets.dtype is ember.int64
    img, label = test_set[0]
    assert img.dtype is ember.uint8 and tuple(img.shape) == (28, 28)
    assert isinstance(label, int) and label == 7           # the first test digit is a 7
    counts = np.bincount(test_set.targets.numpy(), minlength=10)
    assert counts.sum() == 10_000 and counts.min() > 800
    assert test_set.class_to_idx["3 - three"] == 3


def test_train_split_and_pixel_statistics():
    train = MNIST(DATA, train=True)
    assert len(train) == 60_000 and train.targets[:5].tolist() == [5, 0, 4, 1, 9]
    mean = train.data.numpy().mean() / 255
    assert abs(mean - 0.1307) < 1e-3                       # the constant every MNIST script normalises with


def test_transforms_like_torchvision(test_set):
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    ds = MNIST(DATA, train=False, transform=tf, target_transform=transforms.Lambda(lambda y: y + 100))
    x, y = ds[3]
    raw = test_set.data[3].numpy().astype(np.float32) / 255
    assert tuple(x.shape) == (1, 28, 28) and x.dtype is ember.float32 and y == test_set.targets[3].item() + 100
    np.testing.assert_allclose(x.numpy()[0], (raw - 0.1307) / 0.3081, rtol=1e-6, atol=1e-6)
    xb, yb = next(iter(DataLoader(ds, batch_size=32)))
    assert tuple(xb.shape) == (32, 1, 28, 28) and yb.dtype is ember.int64


def test_transforms_match_torchvision_formulas():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10   # HWC
    t = transforms.ToTensor()(img)
    assert tuple(t.shape) == (3, 2, 3)
    np.testing.assert_allclose(t.numpy(), img.transpose(2, 0, 1) / 255, rtol=1e-6)
    n = transforms.Normalize([0.5, 0.4, 0.3], [0.1, 0.2, 0.3])(t)
    want = (img.transpose(2, 0, 1) / 255 - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array([.1, .2, .3])[:, None, None]
    np.testing.assert_allclose(n.numpy(), want, rtol=1e-5)
    with pytest.raises(TypeError, match="float tensor"):
        transforms.Normalize(0.5, 0.5)(ember.ones(1, 2, 2, dtype=ember.uint8))


@pytest.mark.parametrize("layout", ["MNIST/raw", "mnist", "."])
def test_layouts_and_raw_files(tmp_path, layout):
    d = tmp_path / layout
    d.mkdir(parents=True, exist_ok=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(os.path.join(DATA, "mnist", name + ".gz")) as f:
            (d / name).write_bytes(f.read())     # uncompressed this time
    ds = MNIST(str(tmp_path), train=False)
    assert len(ds) == 10_000 and ds[0][1] == 7


def test_missing_files_and_offline_download(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="Dataset not found.*download=True"):
        MNIST(str(tmp_path), train=False)
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(RuntimeError, match="could not download .*offline"):
        MNIST(str(tmp_path), train=False, download=True)


def test_damaged_file(tmp_path):
    src = os.path.join(DATA, "mnist", "t10k-labels-idx1-ubyte.gz")
    with gzip.open(src) as f:
        raw = f.read()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw[:-10])
    with pytest.raises(RuntimeError, match="truncated or damaged"):
        read_idx(str(tmp_path / "t10k-labels-idx1-ubyte"))
    (tmp_path / "bad").write_bytes(b"hello world")
    with pytest.raises(RuntimeError, match="not an IDX file"):
        read_idx(str(tmp_path / "bad"))
