"""Running a suite: prepare every case, build every engine, then time the cases in
interleaved rounds (each round times every case once, in a shuffled order) so that a
drifting machine hits all cases alike instead of whichever case ran last."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..measure.fingerprint import hardware_fingerprint
from ..measure.stats import LatencyStats
from ..targets import TargetProfile, load_target
from ..utils.locks import device_lock
from ..utils.log import get_logger
from .prepare import Case, count_models, prepare_cases
from .reference import reference_case
from .results import BenchRun, CaseResult, RunSettings
from .suite import Suite

log = get_logger("bench")

Measure = Callable[[Case], LatencyStats]


def resolve_target(suite: Suite, target: str | Path | TargetProfile | None) -> TargetProfile:
    """The target to run on: the one asked for (which the suite must list, if it lists
    any), else the suite's first."""
    profile = load_target(suite.default_target() if target is None else target)
    listed = {load_target(t).name for t in suite.targets}
    if listed and profile.name not in listed:
        raise InputError(f"suite {suite.name!r} is for targets {', '.join(sorted(listed))}, "
                         f"not {profile.name!r}",
                         hint="pick one of them with --target or add it to the suite's targets")
    return profile


def run_settings(suite: Suite, target: TargetProfile) -> RunSettings:
    """The suite's timing settings, the target's where the suite leaves them out."""
    return RunSettings(
        repeats=suite.repeats,
        warmup=target.warmup if suite.warmup is None else suite.warmup,
        iterations=target.iterations if suite.iterations is None else suite.iterations,
        statistic=suite.gate.statistic if suite.statistic_given else target.statistic,
        seed=suite.seed)


def run_suite(suite: Suite, target: str | Path | TargetProfile | None = None) -> BenchRun:
    """Prepare, build and time every case of ``suite`` on ``target`` (see module doc)."""
    profile = resolve_target(suite, target)
    settings = run_settings(suite, profile)
    with tempfile.TemporaryDirectory(prefix="deploypipe-bench-") as tmp:
        start = time.perf_counter()
        cases = prepare_cases(suite, profile, Path(tmp))
        ref = reference_case(Path(tmp)) if suite.gate.reference else None
        log.info("prepared %d cases from %d models in %.1f s", len(cases), count_models(cases),
                 time.perf_counter() - start)
        return time_cases(suite.name, cases, ref, profile, settings)


def time_cases(suite_name: str, cases: Sequence[Case], reference: Case | None,
               target: TargetProfile, settings: RunSettings) -> BenchRun:
    """Build an engine per ONNX file and time ``cases`` (and the reference) in rounds."""
    from ..backends import backend_for_target
    from ..backends.ort import settle_seconds

    load_before = _load_average()
    everything = [*cases, *([reference] if reference else [])]
    backend = backend_for_target(target)
    with contextlib.ExitStack() as stack:
        stack.enter_context(device_lock(target.device))  # no other deploypipe run times beside these rounds
        engines = {}
        for case in everything:
            if case.onnx_path not in engines:
                engines[case.onnx_path] = stack.enter_context(backend.build(case.onnx_path, target))

        settle = settle_seconds(target) if len(engines) > 1 else 0.0

        def measure(case: Case, warmup: int = settings.warmup) -> LatencyStats:
            time.sleep(settle)  # other sessions' spinning threads fall asleep first
            return engines[case.onnx_path].time(case.batch, warmup, settings.iterations,
                                                sample_shape=case.shape)

        for case in everything:  # first contact: allocations, caches, lazy kernel choice
            measure(case, warmup=max(target.warmup, settings.warmup))
        log.info("timing %d cases in %d interleaved rounds of %d iterations on %s",
                 len(everything), settings.repeats, settings.iterations, target.name)
        rounds = interleaved_rounds(everything, settings.repeats, measure, seed=settings.seed)
    results = [_result(case, rounds[i]) for i, case in enumerate(everything)]
    return BenchRun(
        suite=suite_name, target=target.to_dict(), fingerprint=hardware_fingerprint(),
        settings=settings, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        cases=tuple(results[:len(cases)]), reference=results[-1] if reference else None,
        load_average={"before": load_before, "after": _load_average()})


def interleaved_rounds(items: Sequence[Case], repeats: int, measure: Measure, *,
                       seed: int) -> list[list[LatencyStats]]:
    """``repeats`` rounds; each measures every item once, in a fresh seeded random order
    (so no case always follows the same neighbour). Returns per item, its rounds in order."""
    rng = np.random.default_rng(seed)
    out: list[list[LatencyStats]] = [[] for _ in items]
    for r in range(repeats):
        for i in rng.permutation(len(items)):
            out[int(i)].append(measure(items[int(i)]))
        log.debug("round %d/%d done", r + 1, repeats)
    return out


def _result(case: Case, rounds: list[LatencyStats]) -> CaseResult:
    return CaseResult(id=case.id, batch=case.batch, shape=case.shape, model=case.model,
                      onnx_sha256=case.onnx_sha256, rounds=tuple(rounds))


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (how busy the machine was), where known."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


__all__ = ["interleaved_rounds", "resolve_target", "run_settings", "run_suite", "time_cases"]
