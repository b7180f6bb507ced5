"""The user's data function (``--dataset py:examples/custom_cnn/data.py:load``): scikit-learn's
digits with the user's own split and normalisation, which deploypipe keeps as given."""
from __future__ import annotations

import numpy as np

MEAN, STD = (0.3,), (0.4,)  # the statistics the weights were trained with, fixed by the user


def load() -> dict:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    y = bunch.target
    order = np.random.default_rng(0).permutation(len(y))
    test, val, train = order[:360], order[360:540], order[540:]
    return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test]),
            "mean": MEAN, "std": STD, "class_names": [str(d) for d in range(10)]}
