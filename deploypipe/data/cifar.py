"""CIFAR-10 as a first-class dataset: ``cifar10:PATH`` reads the forms users have it in.

* the official python batches (``cifar-10-python.tar.gz`` or its extracted folder:
  ``data_batch_1..5``, ``test_batch``, ``batches.meta``), read with the numpy-only
  unpickler (:mod:`.safe_pickle`), so a crafted batch file cannot run code;
* the JPEG layout (``train/<class>/*.jpg`` and ``test/<class>/*.jpg``, as a folder or a
  ``.tar.gz``, optionally under one top folder).

Either way the dataset's own test split is kept (10,000 images) and the classes are in the
official order (airplane, automobile, bird, ..., truck; the JPEG layout's sorted folder
names give the same order). Decoding 60,000 JPEGs takes tens of seconds, so the decoded
arrays are cached as ``.npz`` under deploypipe's cache folder, keyed by the source's size
and modification time (a changed archive is decoded again); a second load takes a second.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from ..utils.files import write_bytes
from ..utils.log import get_logger
from .registry import RawData, register_dataset
from .safe_pickle import load_numpy_pickle

log = get_logger("data")

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@register_dataset("cifar10")
def cifar10(arg: str | None, *, image_size: tuple[int, int] | None) -> RawData:
    """cifar10:PATH, the official python batches or train/ and test/ image folders (a folder or a .tar.gz)."""
    if not arg:
        raise InputError("dataset 'cifar10' needs a path",
                         hint="write cifar10:cifar-10-python.tar.gz (or its folder, or a folder or "
                         ".tar.gz with train/<class>/ and test/<class>/ images)")
    path = Path(arg).expanduser()
    if not path.exists():
        raise InputError(f"CIFAR-10 source {str(path)!r} does not exist", hint="check the path")
    x_train, y_train, x_test, y_test, form = _cached(path)
    x, y = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
    test = np.arange(len(x_train), len(x))
    return RawData(x, y.astype(np.int64), f"CIFAR-10 from {path} ({form}; {len(x_train)} train, "
                   f"{len(x_test)} test images; Krizhevsky 2009)", class_names=CLASSES,
                   test_index=test)


def _cached(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """The decoded splits, from the cache when this source was decoded before."""
    from ..utils.cache_dir import default_cache_dir

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|1".encode()).hexdigest()[:24]
    cache = default_cache_dir() / "datasets" / f"cifar10-{key}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as d:
                return d["x_train"], d["y_train"], d["x_test"], d["y_test"], str(d["form"])
        except (OSError, ValueError, KeyError):
            log.info("the decoded CIFAR-10 cache %s is unreadable; decoding again", cache)
    log.info("decoding CIFAR-10 from %s (once; the result is cached in %s)", path, cache.parent)
    arrays = _decode(path)
    buf = io.BytesIO()
    np.savez(buf, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3],
             form=np.array(arrays[4]))
    try:
        write_bytes(cache, buf.getvalue())
    except OSError as exc:  # a read-only cache folder costs time, not the result
        log.info("could not cache the decoded CIFAR-10 (%s)", exc)
    return arrays


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    files = dict(_members(path))
    names = {Path(n).name: n for n in files}
    if all(b in names for b in (*_TRAIN_BATCHES, "test_batch")):
        train = [_batch(files[names[b]], b) for b in _TRAIN_BATCHES]
        x_test, y_test = _batch(files[names["test_batch"]], "test_batch")
        return (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]),
                x_test, y_test, "the official python batches")
    splits = {s: _images(files, s) for s in ("train", "test")}
    if all(len(v[0]) for v in splits.values()):
        return (*splits["train"], *splits["test"], "JPEG train/ and test/ folders")
    raise InputError(f"{str(path)!r} holds neither CIFAR-10's python batches (data_batch_1..5, "
                     "test_batch) nor train/<class>/ and test/<class>/ image folders",
                     hint="give cifar-10-python.tar.gz, its extracted folder, or a folder (or "
                     ".tar.gz) of train/ and test/ class folders")


def _members(path: Path) -> Iterator[tuple[str, "bytes | Path"]]:
    """(relative name, content or file) of every file in a folder or a tar archive."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                yield p.relative_to(path).as_posix(), p
        return
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                if m.isfile():
                    yield m.name, tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"cannot read {str(path)!r} as a folder or a tar archive ({exc})",
                         hint="give cifar-10-python.tar.gz or a folder") from None


def _read(content: "bytes | Path") -> bytes:
    return content.read_bytes() if isinstance(content, Path) else content


def _batch(content: "bytes | Path", name: str) -> tuple[np.ndarray, np.ndarray]:
    """One official batch: (N,3,32,32) uint8 images and their labels."""
    d = load_numpy_pickle(io.BytesIO(_read(content)), f"CIFAR-10 batch {name!r}")
    get = lambda k: d.get(k, d.get(k.encode())) if isinstance(d, dict) else None  # noqa: E731
    data, labels = get("data"), get("labels")
    if data is None or labels is None or np.asarray(data).shape[1:] != (3072,):
        raise InputError(f"CIFAR-10 batch {name!r} has no 'data' of 3072 bytes an image and "
                         "'labels'", hint="give the official cifar-10-python batches")
    return np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels, np.int64)


def _images(files: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N,3,32,32) uint8 images and labels of ``.../split/<class>/*.jpg`` (any top folder)."""
    from ..utils.extras import require

    Image = require("PIL.Image", "CIFAR-10 as JPEG files")

    xs, ys = [], []
    for name in sorted(files):
        parts = Path(name).parts
        if len(parts) < 3 or parts[-3] != split or Path(name).suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        if parts[-2] not in CLASSES:
            raise InputError(f"CIFAR-10 image {name!r} is in folder {parts[-2]!r}, not a CIFAR-10 "
                             "class", hint=f"the class folders are {', '.join(CLASSES)}")
        with Image.open(io.BytesIO(_read(files[name]))) as im:
            xs.append(np.asarray(im.convert("RGB").resize((32, 32)) if im.size != (32, 32)
                                 else im.convert("RGB")))
        ys.append(CLASSES.index(parts[-2]))
    if not xs:
        return np.zeros((0, 3, 32, 32), np.uint8), np.zeros(0, np.int64)
    return np.moveaxis(np.stack(xs), 3, 1), np.asarray(ys, np.int64)

