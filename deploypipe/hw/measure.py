"""Measuring a latency table: every prunable group's sub-graph at a few widths, on the target.

Results are cached (see :mod:`deploypipe.hw.cache`) and written after every group, so an
interrupted run resumes where it stopped and a second run measures nothing; a run that
starts while another measures the same table waits for it (:mod:`deploypipe.utils.locks`).

Every group's widths are timed in one interleaved call together with the whole dense
model, and scaled by how fast the dense model ran in that call relative to the table's
dense latency: groups measured minutes apart, under different load, then speak the same
unit (otherwise their savings can sum to more than the model's whole latency).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..graph import Analysis
from ..graph.view import GraphView
from ..targets import TargetProfile
from ..utils.files import remove_stale_temps, write_json
from ..utils.locks import device_lock, entry_lock
from ..utils.log import get_logger, progress
from .cache import architecture_hash, table_path, target_key
from .subgraph import GroupSubgraph, group_subgraph, whole_model, with_batch
from .table import FORMAT, GroupTable, LatencyTable
from .timer import TargetTimer, Timer

log = get_logger("hw")

MAX_SAMPLES = 64  # per group; a finer step is widened to a multiple of the block


@dataclass(frozen=True)
class TableSpec:
    """What to measure: the sampling step (default: the target's channel multiple), the
    groups (default: every prunable one) and where to cache (``None``: no cache)."""

    step: int | None = None
    groups: tuple[int, ...] | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    show_progress: bool = True


def sample_widths(width: int, step: int, block: int, max_samples: int = MAX_SAMPLES) -> list[int]:
    """Widths to measure: one block, every multiple of ``step`` below ``width``, and ``width``
    (and width 1 for a group no wider than a block, which may lose any number of channels)."""
    block = max(1, min(block, width))
    if math.ceil(width / step) > max_samples:
        step = block * math.ceil(width / (block * max_samples))
    widths = {block, width, *range(step, width, step)}
    if width <= max(block, 1) or block == 1:
        widths.add(1)
    return sorted(w for w in widths if 1 <= w <= width)


def measure_table(analysis: Analysis, target: TargetProfile, spec: TableSpec = TableSpec(), *,
                  timer: Timer | None = None) -> LatencyTable:
    """The latency table of ``analysis.model`` on ``target`` (from the cache when it is there).
    One process at a time works on a cached table: a second one waits (saying so), then
    finds the table the first one measured."""
    from ..measure.fingerprint import hardware_fingerprint

    step = spec.step or target.round_to
    fingerprint = hardware_fingerprint()
    arch = architecture_hash(analysis.model)
    path = table_path(arch, target, fingerprint.key(), step, spec.cache_dir) if spec.use_cache else None
    with entry_lock(path, "the latency table") if path else contextlib.nullcontext():
        if path is not None:
            remove_stale_temps(path.parent, path.name)  # a run killed while writing it
        state = _load_partial(path)
        state["meta"].update({"target": target.name, "target_key": target_key(target), "model_hash": arch,
                              "fingerprint_key": fingerprint.key(), "fingerprint": fingerprint.to_dict(),
                              "step": step, "round_to": target.round_to, "batch": target.batch,
                              "statistic": target.statistic, "cache": str(path) if path else None})
        return _complete(analysis, target, spec, state, path, step, timer or TargetTimer(target))


def _complete(analysis: Analysis, target: TargetProfile, spec: TableSpec, state: dict, path: Path | None,
              step: int, timer: Timer) -> LatencyTable:
    """Measure what ``state`` lacks (saving after every group, so a killed run resumes)."""
    static = with_batch(analysis.model, target.batch, target.input_shape)
    todo = [g for g in _wanted(analysis, spec.groups) if str(g.id) not in state["groups"]]
    state["meta"]["from_cache"] = not todo and state["dense_ms"] is not None
    clock = (state["meta"].get("seconds", 0.0), time.perf_counter())
    with contextlib.nullcontext() if state["meta"]["from_cache"] else device_lock(target.device):
        if state["dense_ms"] is None:
            state["dense_ms"] = timer.time([static])[0]
        view = GraphView(static)
        bar = progress(total=len(todo), desc="latency table", unit="group",
                       disable=None if spec.show_progress else True)
        try:
            for g in todo:
                bar.set_postfix_str(f"group {g.id} ({g.width} ch)")
                state["groups"][str(g.id)] = _measure_group(static, view, g, step, target, timer,
                                                            state["dense_ms"]).to_dict()
                _save(path, state, clock)
                bar.update(1)
        finally:
            bar.close()
    state["meta"]["complete"] = all(str(g.id) in state["groups"] for g in _wanted(analysis, None))
    _save(path, state, clock)
    return LatencyTable.from_dict(state)


def _wanted(analysis: Analysis, groups: Sequence[int] | None):
    prunable = [g for g in analysis.groups if g.prunable and g.activations]
    if groups is None:
        return prunable
    ids = {g.id for g in prunable}
    bad = [gid for gid in groups if gid not in ids]
    if bad:
        raise InputError(f"group {bad[0]} is not a prunable group of this model",
                         hint=f"choose among {', '.join(str(i) for i in sorted(ids)) or 'none'} "
                         "(see `deploypipe inspect`)")
    return [g for g in prunable if g.id in set(groups)]


def _measure_group(static, view: GraphView, group, step: int, target: TargetProfile, timer: Timer,
                   dense_ms: float) -> GroupTable:
    """The group's sub-graph at each sampled width, in the unit of the table's dense latency."""
    sub = _isolate(static, view, group)
    widths = sample_widths(group.width, step, target.round_to)
    now, *raw = timer.time([static, *(sub.at_width(w) for w in widths)])
    ms = [m * dense_ms / now for m in raw]
    log.debug("group %d: %s", group.id, ", ".join(f"{w}:{m:.4f}" for w, m in zip(widths, ms)))
    return GroupTable(group.width, tuple(widths), tuple(ms), sub.key, len(sub.node_names))


def _isolate(static, view: GraphView, group) -> GroupSubgraph:
    """The group's sub-graph, or the whole model when the sub-graph cannot isolate it."""
    try:
        sub = group_subgraph(static, group, view)
        sub.local_id  # noqa: B018  (raises when the group is not prunable inside)
        return sub
    except InputError as exc:
        log.info("group %d is measured on the whole model (%s)", group.id, exc.message)
        return whole_model(static, group)


def _load_partial(path: Path | None) -> dict:
    """A table in progress from the cache (or a fresh one)."""
    fresh = {"format": FORMAT, "dense_ms": None, "groups": {}, "meta": {"complete": False}}
    if path is None or not path.is_file():
        return fresh
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.info("ignoring an unreadable cached latency table %s", path)
        return fresh
    if data.get("format") != FORMAT:
        return fresh
    data.setdefault("meta", {})
    log.info("latency table: %d groups from the cache %s", len(data.get("groups", {})), path)
    return data


def _save(path: Path | None, state: dict, clock: tuple[float, float]) -> None:
    """Write the table so far; ``clock`` is (seconds of earlier runs, this run's start)."""
    state["meta"]["seconds"] = round(clock[0] + time.perf_counter() - clock[1], 3)
    if path is not None:
        write_json(path, LatencyTable.from_dict(state).to_dict() if state["dense_ms"] is not None else state)
