"""What ``report.json`` holds, as one frozen value: :class:`BuildReport`, nested as the file
is. Both build paths (``deploypipe.pipeline``) fill it and return it; ``to_dict()`` is
``report.json``, which the benchmarks and the HTML page read, so its keys are the schema."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Mapping

OMIT_NONE = {"omit_none": True}  # the key is left out of report.json while the value is None
FLATTEN = {"flatten": True}  # the value's keys sit at the level of the field


@dataclass(frozen=True)
class TargetSummary:
    """The target as profiled: its backend, providers, batch and the machine it ran on."""

    name: str
    backend: str
    providers: tuple[str, ...]
    batch: int
    precision: str
    timing: str
    fingerprint: Mapping[str, Any]


@dataclass(frozen=True)
class MethodSummary:
    name: str
    importance: str
    params: Mapping[str, Any]
    allocation: str
    round_to: int
    distill: bool
    losses: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)  # a torch build's
    # BatchNorm statistics re-estimated after pruning: batches, images, accuracy before/after
    bn_recalibration: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    chosen_by: str | None = field(default=None, metadata=OMIT_NONE)  # why: the build's default, not options given


@dataclass(frozen=True)
class LatencyStats:
    """One profile's timing statistics, in ms (``throughput`` in inferences per second)."""

    median: float
    p90: float
    p99: float
    mean: float
    cv: float
    throughput: float
    batch: int
    iterations: int

    @classmethod
    def of(cls, profile) -> LatencyStats | None:
        if profile is None:
            return None
        s = profile.stats
        return cls(s.median, s.p90, s.p99, s.mean, s.cv, s.throughput, profile.batch, s.n)


@dataclass(frozen=True)
class ModelColumn:
    """One model of the comparison: dense or pruned."""

    macs: int
    params: int
    accuracy: float | None
    latency_ms: LatencyStats | None
    size_bytes: int | None = field(default=None, metadata=OMIT_NONE)  # with a quantized column


@dataclass(frozen=True)
class QuantizedColumn:
    """The pruned model quantized: its column, calibration, scheme and interleaved timing."""

    precision: str
    file: str
    macs: int
    params: int
    accuracy: float | None
    latency_ms: LatencyStats | None
    size_bytes: int
    target: str
    layers: Mapping[str, str]  # Conv/Gemm node -> the precision it runs in
    kept_fp32: tuple[Mapping[str, Any], ...]
    calibration: Mapping[str, Any]
    scheme: Any
    library: Any
    side_by_side: Mapping[str, Any]


@dataclass(frozen=True)
class GroupRow:
    id: int
    width_before: int
    width_after: int
    frozen: bool
    reason: str | None


@dataclass(frozen=True)
class Verification:
    torch_vs_onnx_max_abs: float | None  # None for a build from an ONNX file
    oracle_max_abs: float | None  # the surgery oracle; None when it did not run
    passed: bool  # every check, the quantized model's included
    quantized: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class LayerTimes:
    """The per-layer rows of each profile."""

    dense: tuple[Mapping[str, Any], ...]
    pruned: tuple[Mapping[str, Any], ...]
    quantized: tuple[Mapping[str, Any], ...] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float
    reused: bool | None = field(default=None, metadata=OMIT_NONE)  # True: from an earlier run


@dataclass(frozen=True)
class LatencyOutcome:
    """A latency budget's table summary, loop rounds and outcome (``latency_*`` in report.json)."""

    latency_table: Mapping[str, Any]
    latency_loop: tuple[Mapping[str, Any], ...]
    latency_result: Mapping[str, Any]


@dataclass(frozen=True)
class BuildReport:
    deploypipe_version: str
    created: str
    command: str
    target: TargetSummary
    method: MethodSummary
    budget: Mapping[str, Any]
    dataset: str | None
    dense: ModelColumn
    pruned: ModelColumn
    groups: tuple[GroupRow, ...]
    rounds: tuple[Mapping[str, Any], ...]  # what the method recorded per pruning round
    verification: Verification
    layers: LayerTimes
    stages: tuple[StageTime, ...]
    artifacts: tuple[str, ...]  # the files of the run directory, in the order they matter
    quantized: QuantizedColumn | None = field(default=None, metadata=OMIT_NONE)
    latency: LatencyOutcome | None = field(default=None, metadata={**OMIT_NONE, **FLATTEN})
    # the normalisation the data was given with: {"mean", "std", "from"} (None: no data)
    preprocessing: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    # an ONNX build with data: the least-squares refit and the accuracies it was judged by
    reconstruction: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    # dense and pruned timed in alternating bursts: medians, the speed-up with its interval and verdict
    # (a plain build on a CPU target; a latency build's final check and a quantized build's
    # side-by-side timing do the same for theirs)
    speed: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)

    @property
    def passed(self) -> bool:
        return self.verification.passed

    def to_dict(self) -> dict[str, Any]:
        """``report.json``: plain dicts, lists and numbers."""
        return to_plain(self)

    def __getitem__(self, key: str) -> Any:
        """Read-only ``report["pruned"]["macs"]`` over :meth:`to_dict`, for callers written
        when the build returned a dict (a transition: prefer the attributes)."""
        return self.to_dict()[key]


def to_plain(value: Any) -> Any:
    """``value`` with every dataclass a dict (its fields in order, ``OMIT_NONE`` and
    ``FLATTEN`` applied) and every tuple a list."""
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in fields(value):
            v = getattr(value, f.name)
            if v is None and f.metadata.get("omit_none"):
                continue
            if f.metadata.get("flatten"):
                out.update(to_plain(v))
            else:
                out[f.name] = to_plain(v)
        return out
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    return value
