"""Greedy backward elimination of input channels under a least-squares refit.

For each consumer the refit solves ``min_w w^T M w - 2 c^T w`` (:class:`LeastSquares`).
With ``H = M^-1`` and the optimum ``beta = H c``, forcing the columns J of one channel to
zero raises the minimum by exactly ``beta_J^T (H_JJ)^-1 beta_J`` per output (the group
form of Optimal Brain Surgeon); output o is weighted by ``weights[o]``. After a removal,
``H`` and ``beta`` are downdated in closed form, so each step rescores every remaining
channel with the refit already accounted for: the selection minimises the error that the
refit leaves, not the error of plain removal.

Each consumer's increase is divided by its weighted target energy (so layers of different
scale count alike) and averaged over the group's consumers; ``extra`` (per channel, e.g.
CPLI's lambda x Taylor term) is added. ``steps`` bounds the rounds of rescoring: each
round removes ``ceil(left / rounds left)`` channels (``steps >= count`` is one at a time).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .reconstruction import LeastSquares


@dataclass
class Problem:
    """One consumer's share of a group's selection."""

    stats: LeastSquares
    columns: np.ndarray  # [width, k] columns of each channel of the group
    prior: np.ndarray  # [D, O] current weights (the ridge pulls towards them)
    weights: np.ndarray  # [O] importance of each output channel
    ridge: float
    active: np.ndarray = field(init=False)  # column ids still in H
    h: np.ndarray = field(init=False)
    beta: np.ndarray = field(init=False)
    scale: float = field(init=False)

    def __post_init__(self) -> None:
        m, c = self.stats.system(self.prior, self.ridge)
        self.active = np.arange(self.stats.dim)
        self.h = np.linalg.inv(m)
        self.beta = self.h @ c
        self.scale = max(float(np.sum(self.weights * self.stats.energy)), 1e-12)

    def _positions(self, channels: np.ndarray) -> np.ndarray:
        where = np.full(self.stats.dim, -1)
        where[self.active] = np.arange(len(self.active))
        return where[self.columns[channels]]  # [n, k]

    def increase(self, channels: np.ndarray) -> np.ndarray:
        """Relative weighted error added by removing each of ``channels`` alone."""
        pos = self._positions(channels)
        blocks = self.h[pos[:, :, None], pos[:, None, :]]  # [n, k, k]
        jitter = 1e-12 * np.abs(np.diagonal(blocks, axis1=1, axis2=2)).mean() + 1e-300
        b = self.beta[pos]  # [n, k, O]
        qb = np.linalg.solve(blocks + jitter * np.eye(pos.shape[1]), b)
        return np.einsum("nko,nko,o->n", b, qb, self.weights) / self.scale

    def remove(self, channels: np.ndarray) -> None:
        """Downdate H and beta for removing ``channels`` together."""
        pos = self._positions(channels).reshape(-1)
        rest = np.setdiff1d(np.arange(len(self.active)), pos)
        h_jj = self.h[np.ix_(pos, pos)]
        h_rj = self.h[np.ix_(rest, pos)]
        solved = np.linalg.solve(h_jj, np.concatenate([self.h[np.ix_(pos, rest)], self.beta[pos]], axis=1))
        self.h = self.h[np.ix_(rest, rest)] - h_rj @ solved[:, : len(rest)]
        self.beta = self.beta[rest] - h_rj @ solved[:, len(rest):]
        self.active = self.active[rest]


def greedy_removal(problems: Sequence[Problem], width: int, count: int, extra: np.ndarray | None = None,
                   steps: int = 32) -> np.ndarray:
    """The ``count`` channels (of ``width``) to remove, in removal order."""
    extra = np.zeros(width) if extra is None else np.asarray(extra, dtype=np.float64)
    alive = np.ones(width, dtype=bool)
    removed: list[int] = []
    rounds = max(1, min(int(steps), count))
    for r in range(rounds):
        n = math.ceil((count - len(removed)) / (rounds - r))
        if n <= 0:
            break
        candidates = np.flatnonzero(alive)
        score = extra[candidates].copy()
        for p in problems:
            score += p.increase(candidates) / len(problems)
        picked = candidates[np.argsort(score, kind="stable")[:n]]
        for p in problems:
            p.remove(picked)
        alive[picked] = False
        removed.extend(int(c) for c in picked)
    return np.asarray(removed, dtype=np.int64)


def kept_columns(problem: Problem, removed: np.ndarray) -> np.ndarray:
    """Column ids of ``problem``'s consumer that survive removing ``removed`` channels."""
    gone = problem.columns[removed].reshape(-1) if len(removed) else np.zeros(0, dtype=np.int64)
    return np.setdiff1d(np.arange(problem.stats.dim), gone)
