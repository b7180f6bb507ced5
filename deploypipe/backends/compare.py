"""Cross-backend comparison: the same seeded inputs through several runtimes, every output
checked against the first runtime's, with the tolerance that would have passed.

The runtimes are those of the registry (:mod:`.runtimes`: ``torch`` and ``ort`` on the CPU,
``torch-cuda``, ``ort-cuda``, ``ort-trt`` and ``trt`` on the GPU). An element passes when
``|got - ref| <= atol + rtol * |ref|`` (:mod:`deploypipe.utils.closeness`, per element).
For each output the report gives the largest absolute and relative errors, the tolerances
it was held to, the smallest atol (at this rtol) and rtol (at this atol) that would have
passed, and the worst element, so a failure says how far off it was.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DeviceError, InputError
from ..targets import TargetProfile, Tolerances
from ..utils.closeness import ErrorSummary, compare_arrays
from .runtimes import RUNTIMES, Runtime


@dataclass(frozen=True)
class OutputComparison(ErrorSummary):
    """One output of one backend against the reference, over all trials."""

    output: str
    shape: tuple[int, ...]
    note: str = ""
    worst: str = ""

    def line(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        if self.note:
            return f"{status}  {self.output}: {self.note}"
        worst = f" | {self.worst}" if self.worst and not self.passed else ""
        return (f"{status}  {self.output} {list(self.shape)}: max abs {self.max_abs:.3g}, "
                f"max rel {self.max_rel:.3g} | tolerance atol {self.atol:g}, rtol {self.rtol:g} "
                f"| would pass with atol {self.passing_atol:.3g} or rtol {self.passing_rtol:.3g}"
                f"{worst}")


@dataclass(frozen=True)
class BackendComparison:
    backend: str
    label: str
    providers: tuple[str, ...]
    outputs: tuple[OutputComparison, ...]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)


@dataclass(frozen=True)
class ComparisonReport:
    model: str
    reference: str
    reference_providers: tuple[str, ...]
    batch: int
    trials: int
    seed: int
    tolerances_from: str
    results: tuple[BackendComparison, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def lines(self) -> list[str]:
        out = [f"comparing {len(self.results) + 1} backends on {self.model}: {self.trials} "
               f"seeded inputs (seed {self.seed}) at batch {self.batch}, tolerances from "
               f"target {self.tolerances_from!r}",
               f"reference: {self.reference} ({', '.join(self.reference_providers)})"]
        for r in self.results:
            out.append(f"{r.backend} ({', '.join(r.providers)}) against {self.reference}:")
            out += [f"  {o.line()}" for o in r.outputs]
        n_ok = sum(r.passed for r in self.results)
        out.append(f"{'PASSED' if self.passed else 'FAILED'}: {n_ok} of {len(self.results)} "
                   f"backends match {self.reference} within tolerance")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        for r, rd in zip(self.results, d["results"]):
            rd["passed"] = r.passed
        return _finite(d)


def compare_outputs(name: str, refs: Sequence[np.ndarray], gots: Sequence[np.ndarray],
                    tol: Tolerances) -> OutputComparison:
    """One output over all trials: errors, verdict, the tolerances that would pass and
    the worst element."""
    c = compare_arrays(zip(refs, gots), atol=tol.atol, rtol=tol.rtol)
    return OutputComparison(c.max_abs, c.max_rel, tol.atol, tol.rtol, c.passing_atol, c.passing_rtol,
                            c.passed, output=name, shape=tuple(refs[0].shape), note=c.note, worst=c.worst())


def parse_backends(text: str) -> list[Runtime]:
    """``torch,ort,trt`` -> the runtimes, in order; at least two, no repeats."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise InputError(f"unknown backend {unknown[0]!r} for compare",
                         hint=f"choose from {', '.join(RUNTIMES.names())}")
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError(f"compare needs at least two different backends, got {text!r}",
                         hint="for example --backends torch,ort,trt")
    return [RUNTIMES.get(n) for n in names]


def refuse_missing(runtimes: Sequence[Runtime], target: TargetProfile) -> None:
    """Refuse, in one sentence, the first runtime that cannot run on this machine."""
    for r in runtimes:
        if reason := r.unavailable(r.target(target)):
            raise DeviceError(f"backend {r.name!r} ({r.label}) cannot run here: {reason}",
                              hint="leave it out of --backends or run on a machine with an "
                              "NVIDIA GPU (the GPU Docker image has every backend)")


def compare_backends(onnx_path: str | Path, backends: Sequence[Runtime], *,
                     target: TargetProfile, checkpoint: Any = None, batch: int | None = None,
                     trials: int = 3, seed: int = 0, tolerances: Tolerances | None = None,
                     cache_dir: str | Path | None = None) -> ComparisonReport:
    """Run ``trials`` seeded inputs through every backend and compare each with the first.
    ``checkpoint`` (a module or a file) is what the torch backends run."""
    import onnx

    refuse_missing(backends, target)  # before building anything
    onnx_path = Path(onnx_path)
    names = [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]
    tol = tolerances or target.tolerances
    engines = [_build(b, onnx_path, target, checkpoint, cache_dir) for b in backends]
    try:
        reference_providers = tuple(_providers(engines[0]))
        batch = batch or _batch(engines[0], target)
        feeds = [engines[0].feeds(batch, seed=seed + t, sample_shape=target.input_shape)
                 for t in range(trials)]
        outs = [[_run(e, f, len(names)) for f in feeds] for e in engines]
        results = tuple(
            BackendComparison(b.name, b.label, tuple(_providers(e)), tuple(
                compare_outputs(n, [o[i] for o in outs[0]], [o[i] for o in outs[k]], tol)
                for i, n in enumerate(names)))
            for k, (b, e) in enumerate(zip(backends, engines)) if k > 0)
    finally:
        for e in engines:
            e.close()
    return ComparisonReport(model=str(onnx_path), reference=backends[0].name,
                            reference_providers=reference_providers, batch=batch,
                            trials=trials, seed=seed, tolerances_from=target.name,
                            results=results)


def _build(b: Runtime, onnx_path: Path, target: TargetProfile, checkpoint: Any,
           cache_dir: str | Path | None):
    backend, sub = b.create(), b.target(target)
    if b.backend == "torch":
        return backend.build(onnx_path if checkpoint is None else checkpoint, sub,
                             cache_dir=cache_dir, onnx_path=onnx_path)
    return backend.build(onnx_path, sub, cache_dir=cache_dir)


def _batch(engine, target: TargetProfile) -> int:
    first = engine.inputs[0].shape[0] if engine.inputs and engine.inputs[0].shape else None
    return first if isinstance(first, int) else max(target.batch, 2)


def _run(engine, feeds: dict[str, np.ndarray], n_outputs: int) -> list[np.ndarray]:
    outs = [np.asarray(o) for o in engine.run(feeds)]
    if len(outs) != n_outputs:
        raise InputError(f"backend {engine.backend_name!r} returned {len(outs)} outputs but the "
                         f"ONNX model has {n_outputs}", hint="compare a checkpoint with the "
                         "ONNX file exported from it")
    return outs


def _providers(engine) -> list[str]:
    return list(getattr(engine, "providers", [engine.backend_name]))


def _finite(obj: Any) -> Any:
    """JSON has no infinity: write it as the string "inf"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
