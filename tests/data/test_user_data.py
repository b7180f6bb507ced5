"""``py:`` datasets from the user's code, and the user's normalisation kept."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from deploypipe.data import load_dataset
from deploypipe.errors import InputError


def _write(tmp_path, body: str):
    path = tmp_path / "mydata.py"
    path.write_text(textwrap.dedent(body))
    return path


def _digits_arrays():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images * 16).astype(np.uint8), bunch.target


ARRAYS = """
    import numpy as np
    def load():
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(90, 8, 8), dtype=np.uint8)
        return x, np.arange(90) % 3
"""


def test_py_file_arrays_are_split_by_the_seed(tmp_path):
    path = _write(tmp_path, ARRAYS)
    data = load_dataset(f"py:{path}:load", seed=1)
    assert sum(data.sizes()) == 90
    assert data.input_shape == (1, 8, 8) and data.num_classes == 3
    again = load_dataset(f"py:{path}:load", seed=1)
    assert torch.equal(data.test.tensors[0], again.test.tensors[0])


def test_py_module_dict_keeps_its_splits_and_statistics(tmp_path, monkeypatch):
    (tmp_path / "userdata_mod.py").write_text(textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        def load():
            g = torch.Generator().manual_seed(0)
            train = TensorDataset(torch.rand(40, 3, 6, 6, generator=g), torch.arange(40) % 4)
            test = [(torch.rand(3, 6, 6, generator=g), i % 4) for i in range(12)]
            return {"train": DataLoader(train, batch_size=16), "test": test,
                    "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "class_names": list("abcd")}
    """))
    monkeypatch.chdir(tmp_path)
    data = load_dataset("py:userdata_mod:load")
    assert len(data.test) == 12 and len(data.train) + len(data.val) == 40
    assert data.mean == (0.5, 0.5, 0.5) and data.std == (0.25, 0.25, 0.25)
    assert data.class_names == tuple("abcd")
    # the images were normalised with the given statistics, not the computed ones
    assert float(data.test.tensors[0].min()) >= -2.0 - 1e-6 and float(data.test.tensors[0].max()) <= 2.0 + 1e-6


def test_caller_statistics_override_the_computed_ones(tmp_path):
    path = _write(tmp_path, ARRAYS)
    computed = load_dataset(f"py:{path}:load")
    given = load_dataset(f"py:{path}:load", mean=(0.5,), std=(0.5,))
    assert given.mean == (0.5,) and computed.mean != (0.5,)
    raw = given.train.tensors[0] * 0.5 + 0.5  # back to [0, 1]
    assert torch.allclose(raw, computed.train.tensors[0] * computed.std[0] + computed.mean[0], atol=1e-5)


def test_wrong_statistics_score_lower():
    """The user's --mean/--std are what the model sees: a model trained with one
    normalisation, evaluated under another, loses accuracy."""
    from deploypipe.models import create_model
    from deploypipe.train import TrainConfig, evaluate, fit

    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = create_model("test_resnet_cifar", num_classes=10, in_channels=1, input_size=8)
    fit(model, data, TrainConfig(epochs=4, lr=0.05, progress=False))
    right = evaluate(model, load_dataset("digits", seed=0, mean=data.mean, std=data.std).test)
    wrong = evaluate(model, load_dataset("digits", seed=0, mean=(0.0,), std=(1.0,)).test)
    assert right == pytest.approx(evaluate(model, data.test))
    assert right > 0.8 and wrong < right - 0.05


@pytest.mark.parametrize("body, words", [
    ("def load():\n    return {'train': ([1], [0])}\n", "needs 'train' and 'test'"),
    ("def load():\n    raise ValueError('no disk')\n", "raised ValueError: no disk"),
    ("def load():\n    return 42\n", "not images and labels"),
    ("x = 1\n", "has no attribute 'load'"),
])
def test_bad_user_data_is_one_sentence(tmp_path, body, words):
    path = _write(tmp_path, body)
    with pytest.raises(InputError, match=words):
        load_dataset(f"py:{path}:load")


def test_missing_file_and_statistics_mismatch(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(f"py:{tmp_path}/nope.py:load")
    path = _write(tmp_path, ARRAYS)
    with pytest.raises(InputError, match="3 values for 1-channel"):
        load_dataset(f"py:{path}:load", mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="without a std"):
        load_dataset(f"py:{path}:load", mean=(0.1,))


def test_loader_of_batches_matches_arrays():
    x = torch.rand(20, 1, 5, 5)
    y = torch.arange(20) % 2
    from deploypipe.data.user import to_arrays

    xs, ys = to_arrays(DataLoader(TensorDataset(x, y), batch_size=7), "loader")
    assert np.allclose(xs, x.numpy()) and np.array_equal(ys, y.numpy())
    xs, ys = to_arrays(TensorDataset(x, y), "dataset")
    assert np.allclose(xs, x.numpy()) and np.array_equal(ys, y.numpy())
