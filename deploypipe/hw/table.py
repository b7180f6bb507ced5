"""The latency table: each prunable group's measured latency as a function of its width.

``T_g(w)`` is the latency of group ``g``'s isolated sub-graph with the group cut to ``w``
channels (every other group at full width), measured at a few widths and linearly
interpolated between them. The model's latency is predicted additively, as HALP does:

    predict(widths) = dense_ms + sum_g (T_g(w_g) - T_g(w0_g))

``dense_ms`` is the measured latency of the whole dense model, so the constant parts of
every sub-graph (input copies, per-call overhead) cancel. The additive model counts a
Conv between two pruned groups in both their tables, so it over-states the saving when
both shrink; the allocator weights each group's change by the coupling factors of
:mod:`deploypipe.hw.coupling` (exact for bilinear Conv costs), and the measure-and-correct
loop (:mod:`deploypipe.hw.latency_loop`) corrects what is left with one measured scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError

FORMAT = "deploypipe.latency_table/3"  # /2: groups timed beside the dense model; /3: settled sessions
NOISE = 0.02  # a narrower width must be this much slower (relative) to count as non-monotonic


@dataclass(frozen=True)
class GroupTable:
    """One group's samples: latency in ms at each sampled width (ascending)."""

    width: int  # the dense width
    widths: tuple[int, ...]
    ms: tuple[float, ...]
    key: tuple[str, int, int] = ("", 0, 0)  # (tensor, axis, offset) of its first member
    nodes: int = 0  # nodes in its sub-graph (0: measured on the whole model)

    def latency(self, width: float) -> float:
        """Linear interpolation between samples; clamped outside them."""
        return float(np.interp(width, self.widths, self.ms))

    def slower_than_wider(self, noise: float = NOISE) -> list[int]:
        """Sampled widths that measured slower than some wider sampled width."""
        ms = np.asarray(self.ms)
        best_wider = np.minimum.accumulate(ms[::-1])[::-1]  # min over this and wider widths
        return [w for i, w in enumerate(self.widths[:-1]) if ms[i] > best_wider[i + 1] * (1 + noise)]

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "widths": list(self.widths), "ms": [round(x, 6) for x in self.ms],
                "key": list(self.key), "nodes": self.nodes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GroupTable":
        key = d.get("key") or ("", 0, 0)
        return cls(int(d["width"]), tuple(int(w) for w in d["widths"]), tuple(float(x) for x in d["ms"]),
                   (str(key[0]), int(key[1]), int(key[2])), int(d.get("nodes", 0)))


@dataclass(frozen=True)
class LatencyTable:
    """Per-group latency tables of one model on one target and machine."""

    dense_ms: float  # the whole dense model, measured
    groups: Mapping[int, GroupTable]
    meta: Mapping[str, Any] = field(default_factory=dict)  # target, fingerprint, hashes, timings

    def latency(self, gid: int, width: float) -> float:
        return self._group(gid).latency(width)

    def cost_of_block(self, gid: int, width: int, block: int) -> float:
        """What removing ``block`` channels at ``width`` saves: T(width) - T(width - block)."""
        return self.latency(gid, width) - self.latency(gid, max(width - block, 0))

    def predict(self, widths: Sequence[int] | Mapping[int, int]) -> float:
        """Predicted latency (ms) of the model at ``widths`` (all groups, or {gid: width})."""
        items = widths.items() if isinstance(widths, Mapping) else enumerate(widths)
        delta = sum(t.latency(w) - t.latency(t.width) for g, w in items if (t := self.groups.get(int(g))))
        return float(self.dense_ms + delta)

    def non_monotonic(self, noise: float = NOISE) -> dict[int, list[int]]:
        """Groups with a pruned width that measured slower than a wider one."""
        out = {g: t.slower_than_wider(noise) for g, t in self.groups.items()}
        return {g: ws for g, ws in out.items() if ws}

    def _group(self, gid: int) -> GroupTable:
        try:
            return self.groups[gid]
        except KeyError:
            raise InputError(f"the latency table has no group {gid}",
                             hint="measure the table again for this model") from None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "dense_ms": self.dense_ms, "meta": dict(self.meta),
                "groups": {str(g): t.to_dict() for g, t in sorted(self.groups.items())},
                "non_monotonic": {str(g): ws for g, ws in self.non_monotonic().items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LatencyTable":
        if d.get("format") != FORMAT:
            raise InputError(f"this is not a deploypipe latency table (format {d.get('format')!r})",
                             hint=f"measure one with `deploypipe lut`; expected format {FORMAT!r}")
        groups = {int(g): GroupTable.from_dict(t) for g, t in d.get("groups", {}).items()}
        return cls(float(d["dense_ms"]), groups, dict(d.get("meta", {})))

    def summary(self) -> dict[str, Any]:
        """What a report needs: sizes, the dense latency and the flagged groups."""
        return {"dense_ms": self.dense_ms, "groups": len(self.groups),
                "samples": sum(len(t.widths) for t in self.groups.values()),
                "non_monotonic": {str(g): ws for g, ws in self.non_monotonic().items()},
                **{k: self.meta[k] for k in ("target", "fingerprint_key", "model_hash", "step", "seconds")
                   if k in self.meta}}
