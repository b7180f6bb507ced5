"""Figures of the report, drawn with matplotlib's object API on the Agg canvas (no pyplot,
so no global backend is chosen or changed) and embedded as base64 PNG."""
from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np

DENSE, PRUNED, FROZEN = "#9aa7b4", "#0969da", "#d0d7de"


def new_figure(width: float = 9.0, height: float = 3.4):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def to_png_b64(fig) -> str:
    """The figure as a base64 PNG (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plain(text: object, limit: int = 48) -> str:
    """Text from the report as a label: shortened, and with ``$`` escaped so matplotlib
    never reads it as math (a stray ``$`` would otherwise fail to draw)."""
    s = str(text)
    if len(s) > limit:
        s = "…" + s[-(limit - 1):]
    return s.replace("\\", "\\\\").replace("$", r"\$")


def widths_figure(ids: Sequence[int], before: Sequence[int], after: Sequence[int], frozen: Sequence[bool]):
    """Channels per group, dense against pruned; frozen groups in grey."""
    fig = new_figure(9.0, 3.4)
    ax = fig.add_subplot()
    x = np.arange(len(ids))
    ax.bar(x - 0.2, before, 0.4, color=DENSE, label="dense")
    colors = [FROZEN if f else PRUNED for f in frozen]
    ax.bar(x + 0.2, after, 0.4, color=colors, label="pruned")
    ticks = x[:: max(1, len(ids) // 40)]
    ax.set_xticks(ticks, [str(ids[i]) for i in ticks], fontsize=7 if len(ids) > 30 else 9)
    ax.set_xlabel("channel group")
    ax.set_ylabel("channels")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def layers_figure(names: Sequence[str], dense_ms: Sequence[float], pruned_ms: Sequence[float]):
    """Per-layer time, dense against pruned, slowest layer on top."""
    fig = new_figure(9.0, 0.6 + 0.32 * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    ax.barh(y + 0.2, dense_ms, 0.4, color=DENSE, label="dense")
    ax.barh(y - 0.2, pruned_ms, 0.4, color=PRUNED, label="pruned")
    ax.set_yticks(y, [plain(n) for n in names], fontsize=8)
    ax.set_xlabel("time per run (ms)")
    ax.legend(frameon=False, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return fig
