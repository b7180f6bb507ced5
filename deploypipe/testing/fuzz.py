"""Fuzz the channel surgery: many random graphs, seeds recorded, failures shrunk.

``check(spec, drop_seed)`` is the property (analyse, drop random channels, shrink, check,
oracle, cost model). ``fuzz(seeds)`` runs it over seeded random specs; ``minimise`` shrinks
a failing spec by delta debugging (drop blocks, then simplify each block's fields) while
the failure persists, so what gets stored as a regression test is small.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import onnx

from ..graph import analyse, shrink, verify_shrink
from .graphs import build_cnn, random_spec


@dataclass
class Failure:
    seed: int
    spec: dict
    drop_seed: int
    error: str


@dataclass
class FuzzResult:
    graphs: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    prunable_groups: int = 0
    frozen_groups: int = 0


def random_drop(analysis, rng: np.random.Generator) -> dict[int, np.ndarray]:
    drop = {}
    for g in analysis.prunable:
        k = int(rng.integers(0, g.width))  # keep at least one channel
        if k:
            drop[g.id] = rng.choice(g.width, size=k, replace=False)
    return drop


def check(spec: dict, drop_seed: int = 0) -> tuple[int, int]:
    """Raise AssertionError (or any error) when the surgery is not exact for ``spec``."""
    analysis = analyse(build_cnn(spec))
    drop = random_drop(analysis, np.random.default_rng(drop_seed))
    small = shrink(analysis, drop)
    onnx.checker.check_model(small, full_check=True)
    report = verify_shrink(analysis, small, drop, trials=1)
    assert report.passed, report.sentence()
    widths = analysis.widths() - np.array([len(drop.get(g.id, ())) for g in analysis.groups])
    predicted, counted = analysis.cost.macs(widths), analyse(small, normalized=True).macs
    assert abs(predicted - counted) <= 1e-9 * max(1.0, counted), f"cost model {predicted} != graph {counted}"
    return len(analysis.prunable), len(analysis.groups) - len(analysis.prunable)


def fails(spec: dict, drop_seed: int) -> str | None:
    try:
        check(spec, drop_seed)
    except Exception as exc:  # any error is a finding
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    return None


def fuzz(seeds: Iterable[int], *, progress: Callable[[int, FuzzResult], None] | None = None,
         max_blocks: int = 6) -> FuzzResult:
    result = FuzzResult()
    start = time.perf_counter()
    for seed in seeds:
        spec = random_spec(seed, max_blocks=max_blocks)
        try:
            prunable, frozen = check(spec, seed)
            result.prunable_groups += prunable
            result.frozen_groups += frozen
        except Exception as exc:
            result.failures.append(Failure(seed, spec, seed, f"{type(exc).__name__}: {exc}"[:500]
                                           or traceback.format_exc(limit=1)))
        result.graphs += 1
        if progress:
            progress(seed, result)
    result.seconds = time.perf_counter() - start
    return result


_SIMPLER = {"c": [2, 4], "k": [1], "bn": [False, True], "act": ["none", "Relu"]}


def minimise(spec: dict, drop_seed: int, still_fails: Callable[[dict, int], bool] | None = None) -> dict:
    """The smallest spec (fewest blocks, simplest fields) that still fails."""
    still_fails = still_fails or (lambda s, d: fails(s, d) is not None)
    best = {**spec, "blocks": [dict(b) for b in spec["blocks"]]}
    changed = True
    while changed:
        changed = False
        for i in range(len(best["blocks"])):  # drop whole blocks
            trial = {**best, "blocks": best["blocks"][:i] + best["blocks"][i + 1:]}
            if trial["blocks"] and still_fails(trial, drop_seed):
                best, changed = trial, True
                break
        if changed:
            continue
        for i, block in enumerate(best["blocks"]):  # simplify fields
            for key, options in _SIMPLER.items():
                for value in options:
                    if block.get(key) == value:
                        break
                    trial = {**best, "blocks": [dict(b) for b in best["blocks"]]}
                    trial["blocks"][i][key] = value
                    if still_fails(trial, drop_seed):
                        best, changed = trial, True
                        break
    return best
