"""Choose channels to drop on an ONNX graph from weights alone (``deploypipe shrink``)."""
from __future__ import annotations

import numpy as np

from ..graph import Analysis
from ..graph.scores import weight_scores
from .allocate import select_drop, uniform


def plan_drop(analysis: Analysis, *, ratio: float, importance: str = "l1", round_to: int = 1,
              seed: int = 0) -> dict[int, np.ndarray]:
    """Uniformly remove ``ratio`` of every prunable group's channels, least important first."""
    rng = np.random.default_rng(seed)
    groups = analysis.groups
    keep = uniform([g.width for g in groups], ratio, prunable=[g.prunable for g in groups],
                   round_to=round_to)
    scores = [weight_scores(analysis, g, importance, rng=rng) if g.prunable else np.zeros(g.width)
              for g in groups]
    return select_drop(scores, keep)
