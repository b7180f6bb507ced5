"""cifar10:PATH in both forms users have it (the official python batches; train/ and test/
JPEG folders, as a folder or a .tar.gz), with its own test split and the official class
order; a decoding cache; folder: learns the same train/test layout."""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from deploypipe.data import load_dataset
from deploypipe.data.cifar import CLASSES, cifar10
from deploypipe.errors import InputError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYPIPE_CACHE", str(tmp_path / "cache"))


def _batch(n: int, first_label: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"batch_label": "b", "labels": [(first_label + i) % 10 for i in range(n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"f{i}.png" for i in range(n)]}


def _official(folder: Path) -> dict[str, dict]:
    """A tiny cifar-10-batches-py folder: five train batches of 4 images (every class twice),
    a test batch of 3."""
    batches = {f"data_batch_{i}": _batch(4, 2 * i, i) for i in range(1, 6)}
    batches["test_batch"] = _batch(3, 7, 99)
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for name, content in batches.items():
        (root / name).write_bytes(pickle.dumps(content, protocol=2))
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CLASSES)}, protocol=2))
    return batches


def _tar(source: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        for p in sorted(source.iterdir()):
            tar.add(p, arcname=p.name)
    return out


@pytest.mark.parametrize("packed", [False, True])
def test_the_official_python_batches(tmp_path, packed):
    batches = _official(tmp_path / "src")
    path = _tar(tmp_path / "src", tmp_path / "cifar-10-python.tar.gz") if packed else tmp_path / "src"
    raw = cifar10(str(path), image_size=None)
    train = np.concatenate([batches[f"data_batch_{i}"]["data"] for i in range(1, 6)])
    assert raw.x.shape == (23, 3, 32, 32) and raw.x.dtype == np.uint8
    np.testing.assert_array_equal(raw.x[:20].reshape(20, -1), train)  # channel-major, as published
    assert list(raw.y[:20]) == [l for i in range(1, 6) for l in batches[f"data_batch_{i}"]["labels"]]
    assert list(raw.test_index) == [20, 21, 22] and list(raw.y[20:]) == [7, 8, 9]
    assert raw.class_names == CLASSES and raw.class_names[0] == "airplane"
    data = load_dataset(f"cifar10:{path}")
    assert len(data.test) == 3 and data.input_shape == (3, 32, 32) and data.num_classes == 10


def test_a_crafted_batch_cannot_run_code(tmp_path):
    root = tmp_path / "evil"
    _official(root)
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(InputError, match="not a plain numpy pickle"):
        cifar10(str(root), image_size=None)


def test_a_folder_of_something_else_is_one_sentence(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "readme.txt").write_text("hi")
    with pytest.raises(InputError, match="holds neither CIFAR-10's python batches"):
        cifar10(str(tmp_path / "x"), image_size=None)


def _jpeg_slice(tmp_path: Path, per_class: int = 2) -> Path:
    """A few images per class and split copied out of the shared CIFAR-10 JPEG archive."""
    if not SHARED.is_file():
        pytest.skip(f"the CIFAR-10 archive is not at {SHARED}")
    out, taken = tmp_path / "jpeg", {}
    with tarfile.open(SHARED) as tar:
        for m in tar:
            parts = Path(m.name).parts
            if m.isfile() and len(parts) == 3 and taken.get(parts[:2], 0) < per_class:
                taken[parts[:2]] = taken.get(parts[:2], 0) + 1
                target = out / m.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
            if len(taken) == 20 and all(v == per_class for v in taken.values()):
                break
    return out


def test_the_jpeg_layout_as_a_folder_and_as_an_archive(tmp_path, monkeypatch):
    folder = _jpeg_slice(tmp_path)
    packed = _tar(folder, tmp_path / "slice.tar.gz")
    for path in (folder, packed):
        raw = cifar10(str(path), image_size=None)
        assert raw.x.shape == (40, 3, 32, 32) and len(raw.test_index) == 20
        assert list(raw.y[:20]) == [c for c in range(10) for _ in range(2)]  # official order
        assert raw.class_names == CLASSES
    from deploypipe.data import cifar

    monkeypatch.setattr(cifar, "_decode", lambda p: pytest.fail("decoded again, not cached"))
    again = cifar10(str(packed), image_size=None)
    np.testing.assert_array_equal(again.x, raw.x)


def test_folder_learns_the_train_test_layout(tmp_path):
    folder = _jpeg_slice(tmp_path)
    data = load_dataset(f"folder:{folder}")
    assert len(data.test) == 20 and data.class_names == CLASSES
    assert sorted(int(y) for _, y in data.test) == sorted(list(range(10)) * 2)
