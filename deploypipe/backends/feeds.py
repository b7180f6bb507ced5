"""Input descriptions and random inputs that fit them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape (int, or str/None for a dynamic dim), dtype."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype

    def concrete_shape(self, batch: int, sample_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """The shape with the batch dim set to ``batch`` and the rest from the model, or from
        ``sample_shape`` (per-sample dims, no batch) where the model leaves them dynamic."""
        dims = list(self.shape)
        if not dims:
            return ()
        if isinstance(dims[0], int) and dims[0] < 1:
            raise InputError(f"input {self.name!r} has a batch dimension of {dims[0]}",
                             hint="export the model again with a positive or a dynamic batch")
        if isinstance(dims[0], int) and dims[0] != batch:
            raise InputError(f"input {self.name!r} has a fixed batch of {dims[0]}, not {batch}",
                             hint=f"run it at batch {dims[0]} (--batch, --shapes, or a suite's batches), "
                                  "or export the model with a dynamic batch")
        dims[0] = batch
        if sample_shape is not None:
            dims = self._override(dims, sample_shape)
        if not all(isinstance(d, int) for d in dims):
            raise InputError(f"input {self.name!r} has dynamic dimensions {tuple(self.shape)}",
                             hint=dynamic_dims_hint(self.name))
        return tuple(int(d) for d in dims)

    def _override(self, dims: list, sample_shape: tuple[int, ...]) -> list:
        if len(sample_shape) != len(dims) - 1:
            raise InputError(f"input shape {sample_shape} does not fit input {self.name!r} of "
                             f"rank {len(dims)}", hint="give every dimension except the batch")
        for i, (have, want) in enumerate(zip(dims[1:], sample_shape), start=1):
            if isinstance(have, int) and have != want:
                raise InputError(f"input {self.name!r} has a fixed dimension {i} of {have}, "
                                 f"not {want}", hint="leave input_shape out or match the model")
            dims[i] = want
        return dims


def random_feeds(specs: Sequence[TensorSpec], batch: int, *, seed: int = 0,
                 sample_shape: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
    """Standard-normal floats (small non-negative ints for integer inputs), seeded."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = spec.concrete_shape(batch, sample_shape)
        if np.issubdtype(spec.dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif np.issubdtype(spec.dtype, np.integer):
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(spec.dtype)
        elif spec.dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise InputError(f"input {spec.name!r} has dtype {spec.dtype}, which deploypipe "
                             "cannot fill with random data", hint="use float or integer inputs")
    return feeds


def dynamic_dims_hint(name: str) -> str:
    """How to give the sizes of an input with dynamic dims (one wording for every command)."""
    return f"give them with --shapes {name}:1x3x224x224 (your sizes), or as input_shape in the target profile"

