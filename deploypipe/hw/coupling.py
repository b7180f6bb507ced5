"""Correcting the additive latency model for Convs shared by two pruned groups.

A Conv between groups ``a`` (its input) and ``b`` (its output) costs about ``c * w_a * w_b``
and sits in both groups' sub-graphs, each measured with the other group at full width.
Adding both tables' savings counts ``c * dw_a * dw_b`` twice: prune both groups by half
and the additive model predicts the Conv's time goes to zero, not to a quarter.

Weighting each group's saving by the mean of the other side's ratio before and after,
``(1 + w_other / w0_other) / 2`` (the trapezoid rule), is exact for every bilinear term:

    dw_a * (w0_b + w_b) / 2 + dw_b * (w0_a + w_a) / 2 = w_a * w_b - w0_a * w0_b

So the model becomes ``dense + sum_g rho_g(w) * (T_g(w_g) - T_g(w0_g))`` where ``rho_g`` is
that factor averaged over ``g``'s Convs weighted by their MACs per channel of ``g``. The
measured tables keep what MACs miss (alignment steps, overheads); the graph supplies how
the groups interact. ``rho_g = 1`` for a group whose Convs have no pruned other side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..graph import Analysis


@dataclass(frozen=True)
class Coupling:
    """Per group: weights of its Convs and the dim row of each Conv's other side (-1: none)."""

    weights: dict[int, np.ndarray]
    others: dict[int, np.ndarray]
    analysis: Analysis

    @classmethod
    def of(cls, analysis: Analysis) -> "Coupling":
        weights: dict[int, list[float]] = {}
        others: dict[int, list[int]] = {}
        elems = _elements_per_channel(analysis)
        for m in analysis.mac_nodes:
            sides = [(m.out_dim, None if m.grouped else m.in_dim)]
            if not m.grouped:
                sides.append((m.in_dim, m.out_dim))
            for mine, other in sides:
                if mine is None:
                    continue
                for gid, per_channel in elems.get(mine.id, {}).items():
                    weights.setdefault(gid, []).append(m.macs * per_channel / mine.length)
                    others.setdefault(gid, []).append(-1 if other is None else other.id)
        return cls({g: np.array(w) for g, w in weights.items()},
                   {g: np.array(o, dtype=np.int64) for g, o in others.items()}, analysis)

    def rho(self, widths: Sequence[int]) -> dict[int, float]:
        """The factor of each group's table saving at ``widths`` (all groups)."""
        ratios = self.analysis.cost.ratios(widths)  # one per dim, and 1.0 at index -1
        out = {}
        for gid, w in self.weights.items():
            total = float(w.sum())
            out[gid] = float(np.dot(w, (1 + ratios[self.others[gid]]) / 2) / total) if total > 0 else 1.0
        return out


def _elements_per_channel(analysis: Analysis) -> dict[int, dict[int, int]]:
    """dim id -> {group id: elements per channel of that group in the dim}."""
    out: dict[int, dict[int, int]] = {}
    for g in analysis.groups:
        for dim_id, runs in g.layout:
            out.setdefault(dim_id, {})[g.id] = sum(k for _, k in runs) * analysis.dims[dim_id].block
    return out
