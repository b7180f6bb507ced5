"""Datasets from the user's files: ``folder:DIR`` (one sub-folder of images per class) and
``npz:FILE`` (arrays ``x`` and ``y``)."""
from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..utils.extras import require
from . import prepare
from .registry import RawData, register_dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@register_dataset("folder")
def folder(arg: str | None, *, image_size: tuple[int, int] | None) -> RawData:
    """folder:DIR, one sub-folder of images per class (classes in sorted order), or train/ and test/ folders of them."""
    root = _need_path("folder", arg, "folder:DIR")
    require("PIL", "dataset 'folder:' (decoding images)")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _train_test(root, image_size)
    classes = _class_folders(root)
    images, labels = _read_classes(classes)
    x = _stack(images, image_size)
    return RawData(x, np.asarray(labels, dtype=np.int64), f"image folder {root} ({len(images)} "
                   f"images, {len(classes)} classes; licence as given by its owner)",
                   class_names=tuple(c.name for c in classes))


def _train_test(root: Path, image_size: tuple[int, int] | None) -> RawData:
    """DIR/train/<class>/ and DIR/test/<class>/ with the same classes: the test split kept."""
    train, test = _class_folders(root / "train"), _class_folders(root / "test")
    names = [c.name for c in train]
    if [c.name for c in test] != names:
        raise InputError(f"{str(root / 'test')!r} has classes {[c.name for c in test]}, not the "
                         f"{names} of {str(root / 'train')!r}",
                         hint="give train/ and test/ the same class folders")
    (train_images, train_labels), (test_images, test_labels) = map(_read_classes, (train, test))
    x = _stack(train_images + test_images, image_size)
    return RawData(x, np.asarray(train_labels + test_labels, dtype=np.int64),
                   f"image folder {root} ({len(train_images)} train and {len(test_images)} test "
                   f"images, {len(names)} classes; licence as given by its owner)",
                   class_names=tuple(names),
                   test_index=np.arange(len(train_images), len(train_images) + len(test_images)))


def _read_classes(classes: list[Path]) -> tuple[list, list[int]]:
    """The decoded images of each class folder and their labels (the folder's index)."""
    images, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in cls.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise InputError(f"class folder {str(cls)!r} has no image files",
                             hint=f"add images ({', '.join(sorted(IMAGE_SUFFIXES))}) or remove the folder")
        images += [_open_image(p) for p in files]
        labels += [label] * len(files)
    return images, labels


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise InputError(f"dataset folder {str(root)!r} does not exist or is not a folder",
                         hint="give a folder with one sub-folder of images per class")
    classes = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    if not classes:
        raise InputError(f"dataset folder {str(root)!r} has no class sub-folders",
                         hint="put the images of each class in a sub-folder named after the class")
    if len(classes) == 1:
        raise InputError(f"dataset folder {str(root)!r} has a single class {classes[0].name!r}",
                         hint="a classifier needs at least two class sub-folders")
    return classes


def _open_image(path: Path):
    """Decode one image to 'L' (grey sources) or 'RGB'; a file PIL cannot read is an InputError."""
    from PIL import Image, UnidentifiedImageError  # require()d by the caller

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("L" if im.mode in _GREY_MODES else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot read image {str(path)!r} ({exc})",
                         hint="remove or replace the file") from None


def _stack(images: list, image_size: tuple[int, int] | None) -> np.ndarray:
    """(N,C,H,W) uint8: all images at ``image_size`` or the most common size; RGB if any is."""
    from PIL import Image

    if image_size is None:
        (w, h), _ = Counter(im.size for im in images).most_common(1)[0]
        image_size = (h, w)
    mode = "RGB" if any(im.mode == "RGB" for im in images) else "L"
    size_wh = (image_size[1], image_size[0])
    arrays = [np.asarray(_resized(im, size_wh, Image.BILINEAR).convert(mode)) for im in images]
    x = np.stack(arrays)
    return x[:, None] if x.ndim == 3 else np.moveaxis(x, 3, 1)


def _resized(im, size_wh: tuple[int, int], method):
    return im if im.size == size_wh else im.resize(size_wh, method)


@register_dataset("npz")
def npz(arg: str | None, *, image_size: tuple[int, int] | None) -> RawData:
    """npz:FILE with arrays x (N,H,W), (N,C,H,W) or (N,H,W,C) and integer labels y."""
    path = _need_path("npz", arg, "npz:FILE")
    if not path.is_file():
        raise InputError(f"npz file {str(path)!r} does not exist", hint="check the path")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise InputError(f"npz file {str(path)!r} has arrays {sorted(data.files)} but no "
                                 f"{' or '.join(missing)}", hint="save it with np.savez(path, x=images, y=labels)")
            x, y = data["x"], data["y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"cannot read npz file {str(path)!r} ({exc})",
                         hint="save numeric arrays with np.savez(path, x=images, y=labels)") from None
    what = f"npz file {str(path)!r}"
    x = prepare.to_nchw(x, f"{what} array x")
    y = prepare.check_labels(y, len(x), what)
    return RawData(x, y, f"npz file {path} ({len(x)} images; licence as given by its owner)")


def _need_path(name: str, arg: str | None, form: str) -> Path:
    if not arg:
        raise InputError(f"dataset {name!r} needs a path", hint=f"write {form}")
    return Path(arg).expanduser()
