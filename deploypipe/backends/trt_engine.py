"""A deserialized TensorRT engine behind the :class:`Engine` contract.

Inputs and outputs are bound by name (``set_input_shape``, ``set_tensor_address``) to
device buffers that ``torch.cuda`` allocates, and ``execute_async_v3`` runs on a torch CUDA
stream. Timing binds once and times each run with CUDA events on that stream: GPU compute
time with inputs already on the device and no host copies (trtexec's "GPU Compute Time").
Per-layer profiling uses a second execution context with an ``IProfiler`` attached, so the
timed context never carries a profiler.

Engines are built with DETAILED profiling verbosity, so that the profiler and NVTX ranges
name every layer after its ONNX nodes; that verbosity slows ``enqueueV3``. The timed
context therefore lowers its ``nvtx_verbosity`` (TensorRT 10's run-time override, which may
lower the build's verbosity but never raise it) to NONE, and only the profiling context
keeps DETAILED.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import DeviceError, InputError
from ..targets import TargetProfile
from ._cuda import cuda_event_samples, device_empty, require_cuda, to_device
from .base import Engine, LayerTime
from .feeds import TensorSpec
from .layer_map import GraphIndex
from .trt_build import engine_from_bytes, trt_logger
from .trt_profile import LayerRecords, layers_from_records, make_profiler

if TYPE_CHECKING:
    import torch


class TensorRTEngine(Engine):
    """One TensorRT engine on GPU 0, its execution context and stream."""

    backend_name = "tensorrt"

    def __init__(self, trt: Any, engine_bytes: bytes, *, onnx_path: Path | None,
                 target: TargetProfile, engine_path: Path | None = None):
        import torch

        require_cuda()
        self._trt, self.target = trt, target
        self.path = Path(onnx_path) if onnx_path is not None else None  # maps layers to nodes
        self.engine_path = engine_path  # the serialized engine on disk, when it came from there
        self._runtime, self._engine = engine_from_bytes(trt, trt_logger(trt), engine_bytes)
        self._context = self._new_context(detailed=False)
        self._stream = torch.cuda.Stream()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [self._spec(n) for n in names if is_input[n]]
        self._outputs = [n for n in names if not is_input[n]]
        self._buffers: dict[str, "torch.Tensor"] = {}

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def providers(self) -> list[str]:
        return [f"TensorRT {self._trt.__version__} ({self.target.precision})"]

    timing = "GPU compute time (CUDA events, bound device buffers, no host copies)"

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self._check_open()
        buffers = self._bind(self._context, feeds)
        self._execute(self._context)
        self._stream.synchronize()
        return [buffers[n].cpu().numpy() for n in self._outputs]

    def _timed_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        self._check_open()
        self._buffers = self._bind(self._context, feeds)  # kept alive while timing
        context = self._context
        return lambda: self._execute(context)

    def _time_samples(self, call: Callable[[], object], *, warmup: int, iterations: int,
                      min_seconds: float) -> list[float]:
        return cuda_event_samples(call, self._stream, warmup=warmup, iterations=iterations,
                                  min_seconds=min_seconds)

    def profile_layers(self, batch: int, iterations: int, *, warmup: int = 2,
                       sample_shape: tuple[int, ...] | None = None) -> list[LayerTime]:
        """Per-layer times from ``IProfiler`` over ``iterations`` runs after ``warmup``."""
        self._check_open()
        context = self._new_context(detailed=True)
        buffers = self._bind(context, self.feeds(batch, sample_shape=sample_shape))
        for _ in range(warmup):
            self._execute(context)
        self._stream.synchronize()
        records = LayerRecords()
        profiler = make_profiler(self._trt, records)  # held here: the binding may not keep it
        context.profiler = profiler
        for _ in range(iterations):
            self._execute(context)
            self._stream.synchronize()
            if not getattr(context, "enqueue_emits_profile", True):
                context.report_to_profiler()
        del context, buffers, profiler
        return layers_from_records(records, GraphIndex.from_path(self.path) if self.path else None)

    def close(self) -> None:
        self._buffers = {}
        self._context = self._engine = self._runtime = None

    # -- binding and running ----------------------------------------------------------
    def _new_context(self, *, detailed: bool) -> Any:
        """An execution context; a timed one (``detailed=False``) without detailed NVTX."""
        context = self._engine.create_execution_context()
        if context is None:
            raise DeviceError("TensorRT could not create an execution context (out of GPU "
                              "memory?)", hint="free GPU memory or use a smaller batch")
        verbosity = getattr(self._trt, "ProfilingVerbosity", None)
        if not detailed and verbosity is not None and hasattr(context, "nvtx_verbosity"):
            context.nvtx_verbosity = verbosity.NONE
        return context

    def _bind(self, context: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, "torch.Tensor"]:
        """Copy inputs to the device, set their shapes, allocate outputs; bind all by name."""
        buffers = {}
        for spec in self._inputs:
            if spec.name not in feeds:
                raise InputError(f"no value for input {spec.name!r}", hint="feed every input")
            x = np.asarray(feeds[spec.name]).astype(spec.dtype, copy=False)
            if not context.set_input_shape(spec.name, tuple(x.shape)):
                raise InputError(f"input {spec.name!r} of shape {tuple(x.shape)} is outside the "
                                 "engine's optimisation profile",
                                 hint="rebuild for this batch (the target's batch sets it)")
            buffers[spec.name] = to_device(x, self._stream)
        for name in self._outputs:
            shape = tuple(context.get_tensor_shape(name))
            buffers[name] = device_empty(shape, self._dtype(name))
        for name, buf in buffers.items():
            context.set_tensor_address(name, buf.data_ptr())
        return buffers

    def _execute(self, context: Any) -> None:
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise DeviceError("TensorRT failed to run the engine (its log above says why)",
                              hint="run with -v for TensorRT's full log")

    def _spec(self, name: str) -> TensorSpec:
        shape = tuple(int(d) if int(d) >= 0 else None for d in self._engine.get_tensor_shape(name))
        return TensorSpec(name, shape, self._dtype(name))

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))

    def _check_open(self) -> None:
        if self._engine is None:
            raise InputError("this engine was closed", hint="build a new one")
