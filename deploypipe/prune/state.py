"""The per-group state that allocation speaks in: one frozen value instead of parallel
lists threaded through every signature."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .allocate import floors


def _frozen(values: Sequence[int]) -> np.ndarray:
    out = np.array(values, dtype=np.int64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class GroupState:
    """The channel groups of one model at one moment (index = group id).

    ``widths`` are the channels each group keeps now, ``dense`` the dense model's (ratios and
    ``--max-ratio`` count against them), ``scores`` each group's per-channel importance (current
    indexing), ``cost`` the dense model's :class:`~deploypipe.graph.cost.CostModel` (exact for
    any widths), ``planned`` the widths a measured latency plan fixed (latency budgets),
    ``frozen_by`` why each frozen group is (for the refusal of a model with nothing to prune)."""

    widths: np.ndarray
    scores: tuple[np.ndarray, ...]
    prunable: tuple[bool, ...]
    dense: np.ndarray | None = None
    cost: Any = None
    planned: np.ndarray | None = None
    frozen_by: tuple[str, ...] = ()  # per group, why it cannot be pruned ("" if it can; () if unknown)

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        put("widths", _frozen(self.widths))
        put("dense", self.widths if self.dense is None else _frozen(self.dense))
        put("scores", tuple(np.asarray(s) for s in self.scores))
        put("prunable", tuple(bool(p) for p in self.prunable))
        if self.planned is not None:
            put("planned", _frozen(self.planned))

    @classmethod
    def of(cls, analysis, scores: Sequence[np.ndarray] | None = None, **kw: Any) -> "GroupState":
        """The dense state of ``analysis`` (zero scores unless given)."""
        groups = analysis.groups
        scores = [np.zeros(g.width) for g in groups] if scores is None else scores
        return cls(analysis.widths(), scores, [g.prunable for g in groups], cost=analysis.cost,
                   frozen_by=tuple("" if g.prunable else (g.reasons or ("",))[0] for g in groups), **kw)

    def with_widths(self, widths: Sequence[int]) -> "GroupState":
        """The same groups at other current widths."""
        return dataclasses.replace(self, widths=widths)

    def floors(self, max_ratio: float, round_to: int = 1) -> np.ndarray:
        """The fewest channels each group may keep, from its current width."""
        return floors(self.widths, self.prunable, max_ratio, round_to)

    def prunable_ids(self) -> list[int]:
        return [g for g, p in enumerate(self.prunable) if p]
