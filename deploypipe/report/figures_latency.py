"""Figures about latency and rounds: the latency table's curves, accuracy against MACs
over the pruning rounds, and the latency loop's predicted against measured times."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .figures import DENSE, PRUNED, new_figure, plain


@dataclass(frozen=True)
class Curve:
    """One group's row of the latency table, and the width the build kept (if known)."""

    label: str
    widths: Sequence[int]
    ms: Sequence[float]
    chosen: int | None = None


def table_figure(curves: Sequence[Curve]):
    """Latency against width for each group, the kept width marked."""
    fig = new_figure(9.0, 3.6)
    ax = fig.add_subplot()
    for curve in curves:
        line, = ax.plot(curve.widths, curve.ms, marker="o", ms=3, label=plain(curve.label, 40))
        if curve.chosen is not None and len(curve.widths):
            at = float(np.interp(curve.chosen, curve.widths, curve.ms))
            ax.plot([curve.chosen], [at], marker="*", ms=11, color=line.get_color(), markeredgecolor="black")
    ax.set_xlabel("kept channels")
    ax.set_ylabel("measured latency (ms)")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3)
    return fig


@dataclass(frozen=True)
class Point:
    label: str
    macs: float
    accuracy: float | None


def rounds_figure(points: Sequence[Point], final: Point | None):
    """Accuracy against MACs: dense, after each pruning round, and the final model."""
    fig = new_figure(9.0, 3.4)
    ax = fig.add_subplot()
    seen = [p for p in points if p.accuracy is not None]
    ax.plot([p.macs for p in seen], [100 * p.accuracy for p in seen], marker="o", color=PRUNED,
            label="after each round (before fine-tuning)")
    for p in seen:
        ax.annotate(plain(p.label, 12), (p.macs, 100 * p.accuracy), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    if final is not None and final.accuracy is not None:
        ax.plot([final.macs], [100 * final.accuracy], marker="*", ms=14, color="#1a7f37", linestyle="none",
                label="final (after fine-tuning)")
    ax.margins(x=0.06, y=0.15)
    ax.invert_xaxis()
    ax.set_xlabel("MACs (fewer to the right)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def macs_figure(rounds: Sequence[int], macs: Sequence[float], dense: float):
    """MACs after each round, when the rounds carry no accuracy."""
    fig = new_figure(9.0, 3.0)
    ax = fig.add_subplot()
    ax.plot([0, *rounds], [dense, *macs], marker="o", color=PRUNED)
    ax.set_xticks([0, *rounds], ["dense", *map(str, rounds)])
    ax.set_xlabel("round")
    ax.set_ylabel("MACs")
    ax.grid(alpha=0.3)
    return fig


def loop_figure(rounds: Sequence[int], predicted: Sequence[float], measured: Sequence[float],
                budget: Sequence[float], dense_ms: float | None):
    """The latency loop: what the table predicted against what was measured, per round."""
    fig = new_figure(9.0, 3.2)
    ax = fig.add_subplot()
    ax.plot(rounds, predicted, marker="o", color=DENSE, label="predicted (table)")
    ax.plot(rounds, measured, marker="s", color=PRUNED, label="measured")
    ax.plot(rounds, budget, linestyle="--", marker="_", ms=28, mew=2, color="#cf222e", label="budget")
    if dense_ms is not None:
        ax.axhline(dense_ms, color="#57606a", linestyle=":", label="dense")
    ax.set_xticks(list(rounds))
    ax.margins(x=0.15)
    ax.set_xlabel("loop round")
    ax.set_ylabel("latency (ms)")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    return fig
