"""A target profile: the hardware, backend and measurement settings of one deployment target.

Profiles are data (TOML files under ``profiles/``) validated into a frozen
:class:`TargetProfile`; every mistake in a file is one :class:`InputError` sentence that
names the file, the field and what is allowed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from ..errors import InputError
from ..measure.stats import SAME_SPEED_MARGIN
from ._fields import Reader

BACKENDS = ("onnxruntime", "tensorrt", "torch")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "int8")
STATISTICS = ("median", "p90", "p99")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
# Execution providers that run on an NVIDIA GPU; requesting one makes a profile need a GPU.
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider",
                 "NvTensorRTRTXExecutionProvider")
_DEFAULT_PROVIDERS = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider",)}
# Fields that only word the report's verdicts: no stage's work and no measurement depends on them.
VERDICT_ONLY = ("same_speed_margin",)


@dataclass(frozen=True)
class Tolerances:
    """Output comparison tolerances: ``|a - b| <= atol + rtol * |b|`` elementwise."""

    atol: float = 1e-4
    rtol: float = 1e-3


@dataclass(frozen=True)
class TargetProfile:
    """Where and how a model runs and is measured. ``backend`` is ``None`` when ``auto``:
    the best available GPU backend is chosen at run time."""

    name: str
    description: str = ""
    backend: str | None = "onnxruntime"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    device: str = "cpu"
    precision: str = "fp32"
    batch: int = 1
    input_shape: tuple[int, ...] | None = None  # per-sample shape (C, H, W), no batch
    threads: int = 0  # intra-op threads; 0 = the library's default
    inter_op_threads: int = 0
    optimization: str = "all"  # ONNX Runtime graph optimisation level
    round_to: int = 1  # preferred channel multiple
    statistic: str = "median"
    warmup: int = 10
    iterations: int = 100
    tolerances: Tolerances = field(default_factory=Tolerances)
    requires_gpu: bool = False
    auto: bool = False
    timing_cache: str | None = None  # TensorRT timing cache file (default: the cache folder's)
    # speed ratios within this of 1 count as the same speed in a build's interleaved verdict
    same_speed_margin: float = SAME_SPEED_MARGIN
    source: str | None = field(default=None, compare=False)  # the file it came from

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str, default_name: str) -> "TargetProfile":
        """Validate a parsed TOML table; ``source`` names the file in error messages."""
        return _build(Reader(data, source), default_name)

    def to_dict(self, *, verdicts: bool = True) -> dict[str, Any]:
        """Every field; without the :data:`VERDICT_ONLY` ones when ``verdicts`` is false (keys of
        cached work)."""
        d = asdict(self)
        if not verdicts:
            for key in VERDICT_ONLY:
                d.pop(key)
        d["providers"] = list(self.providers)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d

    def overridden(self, *, precision: str | None = None,
                   shape: tuple[int, ...] | None = None,
                   timing_cache: str | None = None) -> "TargetProfile":
        """This profile with the command line's overrides: a precision (``--fp16``,
        ``--int8``), a full input shape with its batch (``--shapes``), a timing cache file."""
        changes: dict[str, Any] = {}
        if precision is not None and precision != self.precision:
            if precision == "fp16" and self.backend == "onnxruntime" and self.device == "cpu":
                raise InputError(f"target {self.name!r} runs ONNX Runtime on the CPU, whose x86 "
                                 "kernels gain nothing from fp16",
                                 hint="use --int8 (a quantized graph) here, or a GPU target "
                                 "(gpu, gpu-trt-fp16, torch-cuda) for fp16")
            if precision == "int8" and self.backend == "torch":
                raise InputError(f"target {self.name!r} runs PyTorch, which has no int8 path "
                                 "here", hint="use a TensorRT target for int8")
            changes["precision"] = precision
        if shape is not None:
            changes.update(batch=shape[0], input_shape=tuple(shape[1:]) or None)
        if timing_cache is not None:
            changes["timing_cache"] = str(timing_cache)
        return replace(self, **changes) if changes else self

    def summary(self) -> str:
        """One line for listings: backend, device, precision, batch, threads, multiple."""
        how = "best available GPU backend" if self.auto else (
            f"{self.backend} ({', '.join(self.providers)})" if self.backend == "onnxruntime"
            else f"{self.backend} on {self.device}")
        threads = f", {self.threads} thread{'s' * (self.threads != 1)}" if self.threads else ""
        return f"{how}, {self.precision}, batch {self.batch}{threads}, channels x{self.round_to}"


def _build(r: Reader, default_name: str) -> TargetProfile:
    auto = r.boolean("auto", False)
    device = r.choice("device", DEVICES, "cuda" if auto else "cpu")
    backend = r.choice("backend", BACKENDS, None if auto else "onnxruntime")
    _check_backend(r, auto, backend, device)
    providers = _providers(r, backend, device)
    gpu = auto or device == "cuda" or any(p in GPU_PROVIDERS for p in providers)
    requires_gpu = r.boolean("requires_gpu", gpu)
    if gpu and not requires_gpu:
        r.fail("requires_gpu", "cannot be false for a profile that runs on a GPU")
    profile = TargetProfile(
        name=r.string("name", default_name),
        description=r.string("description", ""),
        backend=backend, providers=providers, device=device,
        precision=_precision(r, backend, device),
        batch=r.integer("batch", 1, minimum=1),
        input_shape=r.shape("input_shape"),
        threads=r.integer("threads", 0, minimum=0),
        inter_op_threads=r.integer("inter_op_threads", 0, minimum=0),
        optimization=r.choice("optimization", OPTIMIZATION_LEVELS, "all"),
        round_to=r.integer("round_to", 1, minimum=1),
        statistic=r.choice("statistic", STATISTICS, "median"),
        warmup=r.integer("warmup", 10, minimum=0),
        iterations=r.integer("iterations", 100, minimum=1),
        tolerances=_tolerances(r),
        requires_gpu=requires_gpu, auto=auto, source=r.source,
        timing_cache=r.string("timing_cache", "") or None,
        same_speed_margin=_margin(r),
    )
    r.reject_unknown(TargetProfile.__dataclass_fields__.keys() - {"source"})
    return profile


def _check_backend(r: Reader, auto: bool, backend: str | None, device: str) -> None:
    if auto and "backend" in r:
        r.fail("backend", "must be left out when auto = true (the backend is chosen at run time)")
    if auto and device != "cuda":
        r.fail("device", "must be 'cuda' when auto = true")
    if backend == "tensorrt" and device != "cuda":
        r.fail("device", "must be 'cuda' for backend 'tensorrt'")


def _providers(r: Reader, backend: str | None, device: str) -> tuple[str, ...]:
    if backend != "onnxruntime":
        if "providers" in r:
            r.fail("providers", "is only for backend 'onnxruntime'; leave it out")
        return ()
    providers = r.string_list("providers", _DEFAULT_PROVIDERS[device])
    bad = [p for p in providers if not p.endswith("ExecutionProvider")]
    if bad or not providers:
        r.fail("providers", "must list ONNX Runtime execution providers such as "
               "'CPUExecutionProvider' or 'CUDAExecutionProvider'", bad or providers)
    on_gpu = any(p in GPU_PROVIDERS for p in providers)
    if on_gpu != (device == "cuda"):
        r.fail("device", f"must be {'cuda' if on_gpu else 'cpu'} for providers "
               f"{', '.join(providers)}")
    return providers


def _precision(r: Reader, backend: str | None, device: str) -> str:
    precision = r.choice("precision", PRECISIONS, "fp32")
    # int8 on the CPU is a Q/DQ graph (``build`` quantizes to it); fp16 has no fast x86 kernels
    if precision == "fp16" and backend == "onnxruntime" and device == "cpu":
        r.fail("precision", "must be 'fp32' or 'int8' for onnxruntime on cpu (ONNX Runtime's x86 "
               "CPU kernels gain nothing from fp16)")
    return precision


def _margin(r: Reader) -> float:
    margin = r.number("same_speed_margin", TargetProfile.same_speed_margin, minimum=0.0)
    if margin >= 0.5:
        r.fail("same_speed_margin", "must be below 0.5 (a fraction: 0.03 calls speed ratios within 3% of 1 "
               "the same speed)", margin)
    return margin


def _tolerances(r: Reader) -> Tolerances:
    sub = r.table("tolerances")
    tol = Tolerances(atol=sub.number("atol", Tolerances.atol, minimum=0.0),
                     rtol=sub.number("rtol", Tolerances.rtol, minimum=0.0))
    sub.reject_unknown({"atol", "rtol"})
    return tol
