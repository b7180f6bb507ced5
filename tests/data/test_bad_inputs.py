"""Bad data inputs are one-sentence InputErrors that name the problem and the fix."""
from __future__ import annotations

import numpy as np
import pytest

from deploypipe.data import load_dataset
from deploypipe.errors import InputError


def _one_sentence(exc: InputError) -> str:
    text = exc.sentence()
    assert "\n" not in text and text.endswith((".", "?"))
    return text


def _png(path, value=0):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), value).save(path)


@pytest.mark.parametrize("spec, match", [
    ("nosuchset", "unknown dataset 'nosuchset'"),
    ("mnsit", "did you mean mnist"),
    ("folder", "needs a path"),
    ("digits:extra", "takes no argument"),
    ("synthetic:colour=3", "unknown synthetic option"),
    ("synthetic:classes=x", "is not a number"),
    ("synthetic:classes=1", "out of range"),
    ("npz:/no/such/file.npz", "does not exist"),
    ("mnist:/no/such/folder", "does not exist"),
])
def test_bad_specs(spec, match):
    with pytest.raises(InputError, match=match) as info:
        load_dataset(spec)
    _one_sentence(info.value)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(InputError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _png(tmp_path / "a" / "0.png")
    with pytest.raises(InputError, match="'.*b' has no image files"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_with_one_class(tmp_path):
    for i in range(4):
        _png(tmp_path / "only" / f"{i}.png")
    with pytest.raises(InputError, match="single class 'only'.*at least two") as info:
        load_dataset(f"folder:{tmp_path}")
    _one_sentence(info.value)


def test_unreadable_image_is_named(tmp_path):
    for cls in "ab":
        for i in range(3):
            _png(tmp_path / cls / f"{i}.png")
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match=r"cannot read image '.*broken\.png'") as info:
        load_dataset(f"folder:{tmp_path}")
    _one_sentence(info.value)


def test_npz_problems(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((4, 3, 3)), labels=np.zeros(4))
    with pytest.raises(InputError, match=r"no x or y"):
        load_dataset(f"npz:{path}")
    np.savez(path, x=np.zeros((5, 3, 3)), y=np.zeros(4, int))
    with pytest.raises(InputError, match="5 images but labels of shape"):
        load_dataset(f"npz:{path}")
    np.savez(path, x=np.zeros((5, 9)), y=np.zeros(5, int))
    with pytest.raises(InputError, match=r"shape \(5, 9\).*must be"):
        load_dataset(f"npz:{path}")
    np.savez(path, x=np.zeros((5, 3, 3)), y=np.full(5, 0.5))
    with pytest.raises(InputError, match="not whole numbers"):
        load_dataset(f"npz:{path}")
    np.savez(path, x=np.zeros((4, 3, 3)), y=np.array([{"a": 1}] * 4, dtype=object))
    with pytest.raises(InputError, match="cannot read npz"):
        load_dataset(f"npz:{path}")
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read npz"):
        load_dataset(f"npz:{path}")


def test_bad_arguments():
    with pytest.raises(InputError, match="limit must be a positive"):
        load_dataset("digits", limit=0)
    with pytest.raises(InputError, match="image size"):
        load_dataset("digits", image_size=(0, 4))
