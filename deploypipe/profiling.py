"""Profile an ONNX model on a target: latency statistics, per-layer times, the machine.

This is the step behind ``deploypipe profile``: build an engine with the target's backend,
time it (warm-up excluded), profile its layers in a separate session, and record the
hardware fingerprint so that the numbers can be compared and cached honestly. It sits above
both :mod:`deploypipe.backends` (which engines run) and :mod:`deploypipe.measure` (the
statistics and the fingerprint the backends themselves use), so neither imports the other
back.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .measure.fingerprint import Fingerprint, hardware_fingerprint
from .measure.stats import LatencyStats
from .targets import TargetProfile, load_target
from .utils.locks import device_lock
from .utils.log import get_logger

if TYPE_CHECKING:
    from .backends import LayerTime

log = get_logger("profiling")

MAX_LAYER_ITERATIONS = 50  # profiling slows each run; 50 runs give steady medians


@dataclass(frozen=True)
class ProfileResult:
    """One profiling run: latency statistics, per-layer times and where it ran."""

    model: str
    target: TargetProfile
    backend: str
    providers: tuple[str, ...]
    batch: int
    input_shapes: dict[str, tuple[int, ...]]
    stats: LatencyStats
    fingerprint: Fingerprint
    layers: list["LayerTime"] = field(default_factory=list)  # in execution order
    engine_file: str | None = None  # the serialized engine that ran (TensorRT), if any
    timing: str = "host clock"  # what the latency measures (GPU compute time on GPUs)

    @property
    def latency_ms(self) -> float:
        """The latency by the target's statistic (median, p90 or p99)."""
        return self.stats.statistic(self.target.statistic)

    def top_layers(self, n: int = 10) -> list["LayerTime"]:
        """The ``n`` layers with the largest total time."""
        return sorted(self.layers, key=lambda l: l.timeMs, reverse=True)[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "target": self.target.to_dict(),
            "backend": self.backend,
            "providers": list(self.providers),
            "batch": self.batch,
            "inputShapes": {k: list(v) for k, v in self.input_shapes.items()},
            "latency": self.stats.to_dict(),
            "statistic": self.target.statistic,
            "latencyMs": self.latency_ms,
            "layers": [layer.to_dict() for layer in self.layers],
            "fingerprint": self.fingerprint.to_dict(),
            "engineFile": self.engine_file,
            "timing": self.timing,
        }


ENGINE_SUFFIXES = (".plan", ".engine", ".trt")  # serialized TensorRT engines


def profile_onnx(path: str | Path, target: str | Path | TargetProfile = "cpu", *,
                 batch: int | None = None, threads: int | None = None, per_layer: bool = True,
                 warmup: int | None = None, iterations: int | None = None) -> ProfileResult:
    """Time ``path`` (an ONNX file, or a TensorRT engine ``.plan``) on ``target`` (a profile,
    its name or TOML path); keyword arguments override the profile's batch, threads,
    warm-up and iteration counts."""
    target = _override(load_target(target), batch=batch, threads=threads, warmup=warmup,
                       iterations=iterations)
    backend, engine = _engine(Path(path), target)
    with device_lock(target.device), engine:
        feeds = engine.feeds(target.batch, sample_shape=target.input_shape)
        log.debug("timing %s on %s: %d warm-up + %d iterations at batch %d", path, target.name,
                  target.warmup, target.iterations, target.batch)
        stats = engine.time(target.batch, target.warmup, target.iterations,
                            sample_shape=target.input_shape)
        layers = engine.profile_layers(target.batch, min(target.iterations, MAX_LAYER_ITERATIONS),
                                       sample_shape=target.input_shape) if per_layer else []
        providers = tuple(getattr(engine, "providers", target.providers))
        engine_file = getattr(engine, "engine_path", None)
    return ProfileResult(model=str(path), target=target, backend=backend,
                         providers=providers, batch=target.batch,
                         input_shapes={k: tuple(v.shape) for k, v in feeds.items()},
                         stats=stats, fingerprint=hardware_fingerprint(), layers=layers,
                         engine_file=str(engine_file) if engine_file else None,
                         timing=timing_of(engine))


def _engine(path: Path, target: TargetProfile) -> tuple[str, Any]:
    """(backend name, engine) for an ONNX file, or for a serialized TensorRT engine."""
    from .backends import backend_for_target

    if path.suffix.lower() in ENGINE_SUFFIXES:
        from .backends.tensorrt import TensorRTBackend

        if target.backend not in (None, "tensorrt"):
            raise InputError(f"{str(path)!r} is a TensorRT engine, and target {target.name!r} "
                             f"runs {target.backend}", hint="profile it with --target gpu-trt-fp16 "
                             "(or the TensorRT target it was built for)")
        return "tensorrt", TensorRTBackend().load(path, target)
    backend = backend_for_target(target)
    return backend.name, backend.build(check_onnx_file(path), target)


_TIMING = {
    "cuda graph": "GPU compute time: CUDA events around a CUDA-graph replay of the forward "
                  "pass (inputs on the device, no host copies, no launch overhead)",
    "eager launches": "GPU time by CUDA events around eager launches (inputs on the device, "
                      "no host copies; gaps while the host launches kernels included)",
}


def timing_of(engine: Any) -> str:
    """What an engine's latency measures, in words (GPU engines say it themselves)."""
    how = getattr(engine, "timing", None)
    if how is None or how == "host clock":
        return "host wall clock per inference"
    return _TIMING.get(how, how)


def check_onnx_file(path: str | Path) -> Path:
    """Refuse a missing file or one that is not an ONNX model, in one sentence."""
    import onnx

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder, not an ONNX file", hint="give the path of the .onnx file")
    if not path.is_file():
        raise InputError(f"ONNX file {str(path)!r} does not exist", hint="check the path")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends
        model = None
    if model is None or not model.graph.node:
        raise InputError(f"{str(path)!r} is not an ONNX model ("
                         + ("it cannot be parsed)" if model is None else "its graph has no nodes)"),
                         hint="give an ONNX file; a PyTorch checkpoint becomes one with `deploypipe export`")
    from .graph.load import check_finite

    check_finite(model, f"ONNX file {str(path)!r}")
    return path


def _override(target: TargetProfile, **values: int | None) -> TargetProfile:
    changes = {k: v for k, v in values.items() if v is not None}
    for key, value in changes.items():
        minimum = 0 if key in ("threads", "warmup") else 1
        if value < minimum:
            raise InputError(f"{key} must be at least {minimum}, got {value}")
    return dataclasses.replace(target, **changes) if changes else target
