"""ONNX Runtime backend: the CPU, and the CUDA and TensorRT execution providers (with
onnxruntime-gpu) on the same session code; a GPU session never falls back to the CPU
(:mod:`.ort_gpu` has the GPU specifics: provider options, fp16 graphs, IO binding)."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from ..errors import DeviceError, InputError, InternalError, UnsupportedError
from ..targets import GPU_PROVIDERS, TargetProfile
from ..utils.log import get_logger
from ..utils.ort_session import load_refusal
from ._gpu import gpu_missing_reason
from .base import Backend, Engine, LayerTime
from .feeds import TensorSpec
from .ort_gpu import (check_session_providers, device_bound_call, gpu_model_path, on_gpu,
                      preload_cuda_libraries, provider_entries)
from .ort_profile import layers_from_events, node_index, read_trace

if TYPE_CHECKING:  # onnxruntime loads when an engine is built, not when deploypipe is imported
    import onnxruntime

log = get_logger("backends.ort")

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
           "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(double)": np.float64, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
                "tensor(bool)": np.bool_}


MAX_THREADS_PER_CORE = 4  # more only oversubscribes the machine (and thousands stall the session's start)


def check_threads(target: TargetProfile) -> None:
    """Refuse more threads than MAX_THREADS_PER_CORE per core (100000 hung the session's start)."""
    cores, asked = os.cpu_count() or 1, max(target.threads, target.inter_op_threads)
    if asked > MAX_THREADS_PER_CORE * cores:
        raise InputError(f"target {target.name!r} asks for {asked} threads, more than {MAX_THREADS_PER_CORE} per "
                         f"core of this machine's {cores}", hint=f"use at most {MAX_THREADS_PER_CORE * cores} threads, "
                         f"{cores} to use each core once (0: ONNX Runtime's default)")


def session_options(target: TargetProfile, *,
                    profile_prefix: str | None = None) -> "onnxruntime.SessionOptions":
    """ONNX Runtime session options for ``target``: threads, optimisation level, and no CPU
    fallback when GPU providers are requested (a GPU run must never silently use the CPU)."""
    import onnxruntime as ort

    check_threads(target)
    so = ort.SessionOptions()
    so.intra_op_num_threads = target.threads
    so.inter_op_num_threads = target.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[target.optimization])
    so.log_severity_level = 3  # errors only: warnings would break the CLI's one-line contract
    if any(p in GPU_PROVIDERS for p in target.providers):
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


SETTLE_SECONDS = 0.05


def settle_seconds(target: TargetProfile) -> float:
    """The pause to take before timing one of several live sessions of ``target``.

    On the CPU with a thread pool (``threads`` other than 1) every session keeps worker
    threads that spin-wait after a run on the cores the next session needs, so sessions
    timed back to back slow each other down at random; a pause of ``SETTLE_SECONDS`` lets
    those threads fall asleep first. Single-threaded and GPU targets need none."""
    cpu_pool = target.backend == "onnxruntime" and target.device == "cpu" and target.threads != 1
    return SETTLE_SECONDS if cpu_pool else 0.0


def check_providers(target: TargetProfile) -> None:
    """Fail in one sentence when ``target`` asks for a provider this install cannot give."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    missing = [p for p in target.providers if p not in have]
    if not missing:
        return
    if any(p in GPU_PROVIDERS for p in missing) and (reason := gpu_missing_reason()):
        raise DeviceError(f"target {target.name!r} asks for {', '.join(missing)} but {reason}",
                          hint="use --target cpu to run on the CPU")
    raise DeviceError(f"target {target.name!r} asks for {', '.join(missing)}, which this "
                      f"onnxruntime {ort.__version__} does not provide (it has "
                      f"{', '.join(sorted(have))})",
                      hint="install deploypipe[gpu] (onnxruntime-gpu) for the GPU providers")


class OrtBackend(Backend):
    """ONNX Runtime with the target's providers; ``providers`` overrides them for a target
    that chooses its backend at run time (``--target gpu``), as the chooser decides."""

    name = "onnxruntime"
    description = "ONNX Runtime"

    def __init__(self, providers: tuple[str, ...] | None = None):
        self.providers = tuple(providers) if providers else None

    def build(self, onnx_path: str | Path, target: TargetProfile, *,
              cache_dir: str | Path | None = None) -> "OrtEngine":
        """A session for ``onnx_path``; ``cache_dir`` holds the TensorRT provider's engine and
        timing caches and fp16 graphs (CPU sessions build in well under a second)."""
        target = self.resolve(target)
        check_providers(target)
        return OrtEngine(Path(onnx_path), target, cache_dir=cache_dir)

    def resolve(self, target: TargetProfile) -> TargetProfile:
        """``target`` with this backend's providers filled in for an ``auto`` target."""
        if target.backend not in (None, self.name):
            raise InputError(f"target {target.name!r} is for backend {target.backend!r}, "
                             f"not {self.name!r}", hint="pick an onnxruntime target")
        if self.providers and (target.auto or not target.providers):
            target = dataclasses.replace(target, backend=self.name, providers=self.providers)
        if not target.providers:
            raise InternalError(f"target {target.name!r} reached ONNX Runtime without providers")
        return target


class OrtEngine(Engine):
    """An ONNX Runtime inference session for one model on one target."""

    backend_name = "onnxruntime"

    def __init__(self, onnx_path: Path, target: TargetProfile, *,
                 cache_dir: str | Path | None = None):
        self.path, self.target, self.cache_dir = onnx_path, target, cache_dir
        self.model_path = gpu_model_path(onnx_path, target, cache_dir)
        self.session = self._new_session(session_options(target))
        self._inputs = [_spec(a) for a in self.session.get_inputs()]

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def timing(self) -> str:
        """What :meth:`time` measures."""
        if on_gpu(self.target):
            return ("host clock around a run whose inputs and outputs are bound on the GPU "
                    "(no host copies; waits for the outputs)")
        return "host clock"

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self._check_open()
        return self.session.run(None, dict(feeds))

    def _timed_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        self._check_open()
        if on_gpu(self.target):
            return device_bound_call(self.session, feeds)
        run, none = self.session.run, None
        return lambda: run(none, feeds)

    def profile_layers(self, batch: int, iterations: int, *, warmup: int = 2,
                       sample_shape: tuple[int, ...] | None = None) -> list[LayerTime]:
        """Per-node kernel times from ONNX Runtime's profiler, mapped to ONNX nodes."""
        events = self.trace_events(batch, iterations, warmup=warmup, sample_shape=sample_shape)
        return layers_from_events(events, node_index(self.path), skip_runs=warmup)

    def trace_events(self, batch: int, iterations: int, *, warmup: int = 2,
                     sample_shape: tuple[int, ...] | None = None) -> list[dict]:
        """The profiler's raw trace of ``warmup + iterations`` runs, from a separate session:
        profiling slows every run, so the timed session never profiles."""
        self._check_open()
        feeds = self.feeds(batch, sample_shape=sample_shape)
        with tempfile.TemporaryDirectory(prefix="deploypipe-ort-prof-") as tmp:
            so = session_options(self.target, profile_prefix=os.path.join(tmp, "profile"))
            session = self._new_session(so)
            for _ in range(warmup + iterations):
                session.run(None, feeds)
            return read_trace(Path(session.end_profiling()))

    def close(self) -> None:
        self.session = None

    def _new_session(self, so: "onnxruntime.SessionOptions") -> "onnxruntime.InferenceSession":
        if on_gpu(self.target):
            preload_cuda_libraries()
        session = _session(self.model_path, self.target, so,
                           provider_entries(self.target, self.cache_dir, self.model_path))
        if on_gpu(self.target):
            check_session_providers(session, self.target)
        return session

    def _check_open(self) -> None:
        if self.session is None:
            raise InputError("this engine was closed", hint="build a new one")


def _session(path: Path, target: TargetProfile, so: "onnxruntime.SessionOptions",
             providers: list) -> "onnxruntime.InferenceSession":
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types, all with text
        error = exc
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if target.requires_gpu:
        raise UnsupportedError(f"ONNX Runtime cannot run {str(path)!r} on "
                               f"{', '.join(target.providers)} alone: {reason}",
                               hint="some op has no GPU kernel; try another GPU target")
    raise load_refusal(repr(str(path)), error)


def _spec(arg: "onnxruntime.NodeArg") -> TensorSpec:
    dtype = _NUMPY_TYPES.get(arg.type)
    if dtype is None:
        raise InputError(f"input {arg.name!r} has type {arg.type}, which deploypipe cannot feed",
                         hint="use float or integer inputs")
    shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(dtype))
