"""Splits are seeded, stratified, disjoint and complete; limit subsamples deterministically."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deploypipe.data import load_dataset
from deploypipe.data.splits import stratified_split, stratified_subsample
from deploypipe.errors import InputError


def _labels(n_per_class=(40, 30, 20)) -> np.ndarray:
    return np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])


def test_same_seed_same_split_and_different_seed_different():
    y = _labels()
    a, b, c = stratified_split(y, 0), stratified_split(y, 0), stratified_split(y, 1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_split_is_disjoint_complete_and_stratified():
    y = _labels()
    train, val, test = stratified_split(y, 3)
    joined = np.concatenate([train, val, test])
    assert len(joined) == len(y) and len(np.unique(joined)) == len(y)
    for part, frac in ((train, 0.70), (val, 0.15), (test, 0.15)):
        counts = np.bincount(y[part], minlength=3)
        assert np.all(np.abs(counts - frac * np.array([40, 30, 20])) <= 1)


def test_class_with_too_few_images_is_an_input_error():
    with pytest.raises(InputError, match="class 1 has only 2"):
        stratified_split(np.array([0, 0, 0, 1, 1]), 0)


def test_subsample_keeps_proportions_and_is_deterministic():
    y = _labels((60, 30, 10))
    index = np.arange(len(y))
    a = stratified_subsample(index, y, 50, seed=5)
    assert np.array_equal(a, stratified_subsample(index, y, 50, seed=5))
    assert not np.array_equal(a, stratified_subsample(index, y, 50, seed=6))
    assert len(a) == 50 and np.all(np.abs(np.bincount(y[a]) - [30, 15, 5]) <= 1)
    assert stratified_subsample(index, y, None, 0) is index


def test_load_dataset_is_deterministic_per_seed():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=0)
    c = load_dataset("digits", seed=1)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.train.tensors[1], c.train.tensors[1])
    assert a.sizes() == (1259, 269, 269) and sum(a.sizes()) == 1797


def test_limit_caps_every_split_and_is_repeatable():
    a = load_dataset("digits", limit=100, seed=2)
    b = load_dataset("digits", limit=100, seed=2)
    assert a.sizes() == (100, 100, 100)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert len(torch.unique(a.train.tensors[1])) == 10


def test_normalisation_uses_train_statistics():
    d = load_dataset("digits")
    x = d.train.tensors[0]
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-2
    assert len(d.mean) == len(d.std) == 1 and 0 < d.mean[0] < 1


def test_every_head_of_a_class_ordered_source_is_a_fair_sample(tmp_path):
    """A source listed by class (CIFAR-10's JPEG folders, any folder:) must not give splits
    whose first images are all one class: quick evaluations and training subsets read heads."""
    y = np.repeat(np.arange(5), 60)  # 0,0,...,1,1,...: file order by class
    x = np.random.default_rng(0).integers(0, 255, (len(y), 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "sorted.npz", x=x, y=y)
    splits = load_dataset(f"npz:{tmp_path / 'sorted.npz'}", seed=0)
    for part in (splits.train, splits.val, splits.test):
        head = part.tensors[1][: len(part) // 3]
        assert set(head.tolist()) == set(range(5))
    again = load_dataset(f"npz:{tmp_path / 'sorted.npz'}", seed=0)
    assert torch.equal(again.train.tensors[1], splits.train.tensors[1])
