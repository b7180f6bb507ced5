"""A benchmark suite: which models to time, at which batches and shapes, on which targets,
and how the regression gate judges them. Suites are TOML files validated into frozen
objects; every mistake is one sentence naming the file and the field.

```toml
name = "smoke"                 # default: the file name
targets = ["cpu-batch32"]      # profiles the suite is for; --target picks one (default: first)
batches = [8]                  # default batches of every model (default: the target's batch)
repeats = 10                   # interleaved rounds; each times every case once
warmup = 3                     # untimed iterations before each round's timing (default: target's)
iterations = 20                # timed iterations per round (default: target's)
seed = 0                       # round order and bootstrap

[gate]
statistic = "median"           # median | p90 | p99 (default: the target's)
max_slowdown = 0.10            # a case fails only beyond +10 % ...
confidence = 0.95              # ... and beyond this bootstrap interval of the ratio
drift_factor = 2.0             # see deploypipe.bench.regression_gate
confirm_fastest = true         # a regression must also slow each round's fastest iteration
reference = true               # time the fixed reference model to measure machine drift

[[models]]
zoo = "resnet20"               # or checkpoint = "model.pt" (arch, trust) or onnx = "m.onnx"
name = "resnet20"              # the case label (default: zoo name or file stem)
kwargs = { num_classes = 10 }  # zoo arguments
shapes = [[3, 32, 32]]         # per-sample input shapes (default: the model's own)
batches = [1, 8]
```
File paths are relative to the suite file.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..targets import load_target
from ..targets.target_profile import STATISTICS
from ..utils.toml_file import read_toml
from ._fields import KIND, Scalar, SuiteReader
from .regression_gate import GateSettings

ZOO, CHECKPOINT, ONNX = "zoo", "checkpoint", "onnx"
MIN_REPEATS = 3
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_TOP = {"name", "description", "targets", "batches", "repeats", "warmup", "iterations",
        "seed", "gate", "models"}
_GATE = {"statistic", "max_slowdown", "confidence", "drift_factor", "confirm_fastest",
         "reference", "resamples"}
_MODEL = {"name", ZOO, CHECKPOINT, ONNX, "kwargs", "arch", "trust", "shapes", "batches"}


@dataclass(frozen=True)
class ModelSpec:
    """One model of a suite: a zoo name with arguments, a checkpoint or an ONNX file."""

    name: str
    kind: str  # zoo | checkpoint | onnx
    source: str  # the zoo name, or the file's resolved path
    kwargs: tuple[tuple[str, Scalar], ...] = ()
    arch: str | None = None
    trust: bool = False
    shapes: tuple[tuple[int, ...], ...] = ()  # () = the model's own
    batches: tuple[int, ...] = ()  # () = the suite's

    def describe(self) -> dict[str, Any]:
        """What the model is, for the run's record."""
        d: dict[str, Any] = {"name": self.name, self.kind: self.source}
        if self.kwargs:
            d["kwargs"] = dict(self.kwargs)
        if self.arch:
            d["arch"] = self.arch
        return d


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    models: tuple[ModelSpec, ...]
    gate: GateSettings
    description: str = ""
    targets: tuple[str, ...] = ()
    batches: tuple[int, ...] = ()
    repeats: int = 10
    warmup: int | None = None  # None: the target's
    iterations: int | None = None
    seed: int = 0
    statistic_given: bool = False  # the suite chose the statistic; else the target's

    def default_target(self) -> str:
        return self.targets[0] if self.targets else "cpu"


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file."""
    path = Path(path)
    data = read_toml(path, "benchmark suite",
                     missing_hint="give the path of a TOML suite such as benchmarks/suites/smoke.toml")
    return _suite(SuiteReader(data, str(path)), path)


def _suite(r: SuiteReader, path: Path) -> Suite:
    name = r.string("name", path.stem)
    if not _NAME_RE.match(name):
        r.fail("name", "must be letters, digits, '.', '_', '+' or '-'", name)
    gate_reader = r.table("gate")
    suite = Suite(
        name=name, path=path, description=r.string("description", ""),
        targets=_targets(r), batches=r.int_list("batches", minimum=1),
        repeats=r.integer("repeats", 10, minimum=MIN_REPEATS),
        warmup=r.optional_integer("warmup", minimum=0),
        iterations=r.optional_integer("iterations", minimum=1),
        seed=r.integer("seed", 0, minimum=0),
        gate=_gate(gate_reader), statistic_given="statistic" in gate_reader,
        models=_models(r, path.parent),
    )
    r.reject_unknown(_TOP)
    return suite


def _targets(r: SuiteReader) -> tuple[str, ...]:
    names = r.string_list("targets", ())
    for name in names:
        try:
            load_target(name)
        except InputError as exc:
            r.fail("targets", f"names a target that cannot be loaded ({exc.message})", name)
    return names


def _gate(g: SuiteReader) -> GateSettings:
    settings = GateSettings(
        statistic=g.choice("statistic", STATISTICS, "median"),
        max_slowdown=g.number("max_slowdown", GateSettings.max_slowdown, minimum=0.0),
        confidence=g.fraction("confidence", GateSettings.confidence),
        drift_factor=g.number("drift_factor", GateSettings.drift_factor, minimum=0.0),
        confirm_fastest=g.boolean("confirm_fastest", GateSettings.confirm_fastest),
        reference=g.boolean("reference", GateSettings.reference),
        resamples=g.integer("resamples", GateSettings.resamples, minimum=100),
    )
    g.reject_unknown(_GATE)
    return settings


def _models(r: SuiteReader, root: Path) -> tuple[ModelSpec, ...]:
    readers = r.table_list("models")
    if not readers:
        r.fail("models", "must list at least one model ([[models]] with zoo, checkpoint or "
               "onnx)")
    specs = tuple(_model(m, root) for m in readers)
    seen: set[str] = set()
    for m, spec in zip(readers, specs):
        if spec.name in seen:
            m.fail("name", "repeats another model's name; give each model its own name",
                   spec.name)
        seen.add(spec.name)
    return specs


def _model(m: SuiteReader, root: Path) -> ModelSpec:
    kinds = [k for k in (ZOO, CHECKPOINT, ONNX) if k in m]
    if len(kinds) != 1:
        m.fail("zoo", "(or 'checkpoint' or 'onnx'): give exactly one of them"
               + (f", not {' and '.join(kinds)}" if kinds else ""))
    kind = kinds[0]
    source = _zoo_name(m) if kind == ZOO else _file(m, kind, root)
    spec = ModelSpec(
        name=m.string("name", source if kind == ZOO else Path(source).stem),
        kind=kind, source=source, kwargs=_kwargs(m, kind), arch=_only(m, "arch", kind, CHECKPOINT),
        trust=bool(_only(m, "trust", kind, CHECKPOINT, boolean=True)),
        shapes=m.shape_list("shapes"), batches=m.int_list("batches", minimum=1))
    if not _NAME_RE.match(spec.name):
        m.fail("name", "must be letters, digits, '.', '_', '+' or '-'", spec.name)
    m.reject_unknown(_MODEL)
    return spec


def _zoo_name(m: SuiteReader) -> str:
    from ..models import list_models  # imports torch: only for suites with zoo models

    name = m.string(ZOO, "")
    known = list_models(include_test=True)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        m.fail(ZOO, f"must be a zoo model{f' such as {close[0]!r}' if close else ''} "
               "(`deploypipe list archs` lists them)", name)
    return name


def _file(m: SuiteReader, kind: str, root: Path) -> str:
    text = m.string(kind, "")
    path = (root / text).resolve()
    if not text or not path.is_file():
        m.fail(kind, f"must name an existing file (relative to {str(root)!r})", text)
    return str(path)


def _kwargs(m: SuiteReader, kind: str) -> tuple[tuple[str, Scalar], ...]:
    if "kwargs" not in m:
        return ()
    if kind != ZOO:
        m.fail("kwargs", "is only for zoo models; leave it out")
    kwargs = m.scalar_table("kwargs")
    for key in ("input_size", "in_channels"):
        if key in kwargs:
            m.fail(f"kwargs.{key}", "comes from the input shape; set 'shapes' instead")
    return tuple(sorted(kwargs.items()))


def _only(m: SuiteReader, key: str, kind: str, allowed: str, *, boolean: bool = False) -> Any:
    if key not in m:
        return None
    if kind != allowed:
        m.fail(key, f"is only for {allowed} models; leave it out")
    return m.boolean(key, False) if boolean else m.string(key, "")


__all__ = ["CHECKPOINT", "KIND", "ModelSpec", "ONNX", "Suite", "ZOO", "load_suite"]
