"""The one rule by which deploypipe compares two computations' outputs.

An element passes when ``|got - ref| <= atol + rtol * scale``. ``scale`` is ``|ref|`` for
each element (``per="element"``, ``numpy.isclose``'s and Polygraphy's default), or the
largest ``|ref|`` of the whole tensor (``per="tensor"``): the surgery oracle uses the
latter, because removing channels only reorders sums, whose rounding error follows the
tensor's magnitude and not that of an element that happens to be near zero. A shape
mismatch, or a NaN or infinity on either side, fails outright.

:func:`compare_arrays` folds any number of (reference, result) pairs (outputs, trials)
into one :class:`Closeness`: the largest absolute and relative errors, the smallest atol (at
this rtol) and rtol (at this atol) that would have passed, and the worst element. Every
comparison of outputs (ONNX against PyTorch, engine against reference, shrunk graph against
the dead-channel original) goes through it, each with its own tolerances.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Literal, Sequence

import numpy as np

Per = Literal["element", "tensor"]


@dataclass(frozen=True)
class ErrorSummary:
    """The largest absolute and relative errors, the tolerances they were held to, the
    smallest atol (at this rtol) and rtol (at this atol) that would have passed, the verdict."""

    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    passing_atol: float
    passing_rtol: float
    passed: bool


@dataclass(frozen=True)
class Closeness(ErrorSummary):
    """How far results are from their references, and whether that is within tolerance.
    ``worst_pair`` and ``worst_index`` locate the element with the largest absolute error
    (``worst_pair``: its position among the pairs compared)."""

    worst_pair: int = -1
    worst_index: tuple[int, ...] = ()
    worst_ref: float = 0.0
    worst_got: float = 0.0
    note: str = ""  # why it failed outright (shapes differ), else empty

    @classmethod
    def exact(cls, atol: float, rtol: float) -> "Closeness":
        """Nothing compared yet, or every element equal."""
        return cls(0.0, 0.0, atol, rtol, 0.0, 0.0, True)

    def worst(self, outputs: int = 1, names: Sequence[str] = ()) -> str:
        """The worst element in words (``""`` when nothing differs), for pairs compared
        trial by trial with ``outputs`` outputs each (``names``: theirs)."""
        if self.worst_pair < 0:
            return ""
        trial, output = divmod(self.worst_pair, max(outputs, 1))
        name = names[output] if output < len(names) else output
        which = f"output {name}, " if outputs > 1 else ""
        return (f"worst element {list(self.worst_index)} of {which}trial {trial}: "
                f"{self.worst_got:.6g} against {self.worst_ref:.6g}")

    def merged(self, other: "Closeness") -> "Closeness":
        """Both comparisons as one: the larger errors, the stricter verdict."""
        worst = self if self.max_abs >= other.max_abs else other
        return replace(worst, max_rel=max(self.max_rel, other.max_rel),
                       passing_atol=max(self.passing_atol, other.passing_atol),
                       passing_rtol=max(self.passing_rtol, other.passing_rtol),
                       passed=self.passed and other.passed, note=self.note or other.note)


def compare_arrays(pairs: Iterable[tuple[np.ndarray, np.ndarray]], *, atol: float, rtol: float,
                   per: Per = "element") -> Closeness:
    """Every (reference, result) pair held to ``|got - ref| <= atol + rtol * scale``."""
    result = Closeness.exact(atol, rtol)
    for k, (ref, got) in enumerate(pairs):
        result = result.merged(_one_pair(k, np.asarray(ref), np.asarray(got), atol, rtol, per))
    return result


def _one_pair(k: int, ref: np.ndarray, got: np.ndarray, atol: float, rtol: float,
              per: Per) -> Closeness:
    if ref.shape != got.shape:
        return Closeness(math.inf, math.inf, atol, rtol, math.inf, math.inf, False, k,
                         note=f"shape {list(got.shape)} differs from the reference's "
                         f"{list(ref.shape)}")
    if ref.size == 0:
        return Closeness.exact(atol, rtol)
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    finite = np.isfinite(ref64) & np.isfinite(got64)
    magnitude = np.where(finite, np.abs(ref64), 0.0)
    scale = magnitude if per == "element" else np.full_like(magnitude, magnitude.max())
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(finite, np.abs(got64 - ref64), np.inf)
        rel = np.where(diff == 0, 0.0, diff / scale)
        need_rtol = np.where(diff <= atol, 0.0, (diff - atol) / scale)
    passed = bool(np.all(diff <= atol + rtol * scale) and finite.all())
    at = int(np.argmax(diff))
    where = tuple(int(i) for i in np.unravel_index(at, diff.shape))
    return Closeness(float(diff.flat[at]), float(rel.max()), atol, rtol,
                     max(float((diff - rtol * scale).max()), 0.0), float(need_rtol.max()),
                     passed, k, where, float(ref64.flat[at]), float(got64.flat[at]))
