"""Every way deploypipe can run a model, one name each, with what it needs and how to make it.

Two tables, one vocabulary:

* :data:`BACKENDS` holds the three engine families a target profile names (``backend =
  "onnxruntime" | "tensorrt" | "torch"``) and where each class lives; a family's module is
  imported only when it is created, so listing needs neither tensorrt nor a GPU.
* :data:`RUNTIMES` holds the concrete runtimes, a family on one device with its options:
  ``ort`` and ``torch`` on the CPU; ``trt``, ``ort-trt``, ``ort-cuda`` and ``torch-cuda``
  on an NVIDIA GPU (:data:`GPU_PREFERENCE` is their order by expected speed). Each lists
  the :class:`Requirement` s it needs; :meth:`Runtime.unavailable` is its one availability
  probe, answering ``None`` or one phrase saying what is missing.

``--target gpu`` (:mod:`.chooser`), ``deploypipe compare`` and :func:`backend_for_target`
all resolve a target to a runtime here. Probe answers are cached for the process
(:func:`forget_probes` clears them, for tests); the GPU's own answer is cached in
:mod:`._gpu`. A name never changes device on its own: a GPU runtime on a machine without
what it needs is refused in one sentence, never replaced by the CPU.
"""
from __future__ import annotations

import ctypes.util
import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass
from typing import Callable

from .._registry import Registry
from ..errors import DeviceError, InternalError, UnsupportedError
from ..targets import GPU_PROVIDERS, TargetProfile
from ._gpu import gpu_missing_reason
from .base import Backend

PRECISIONS = ("fp32", "fp16", "int8")
_answers: dict[str, str | None] = {}  # requirement name -> its probe's answer, per process


@dataclass(frozen=True)
class BackendSpec:
    """An engine family: its name, what it runs on, and where its class lives
    (``module:Class``); ``runtime`` is the runtime whose availability it reports."""

    name: str
    description: str
    entry_point: str
    gpu_only: bool
    runtime: str

    def load(self) -> type[Backend] | None:
        """The backend class, or ``None`` while its module is not written yet."""
        module_name, _, attr = self.entry_point.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attr)

    def unavailable_reason(self) -> str | None:
        """Why this family cannot run here, or ``None`` when it can."""
        if self.load() is None:
            return "not implemented in this version of deploypipe yet"
        return RUNTIMES.get(self.runtime).unavailable()


@dataclass(frozen=True)
class Requirement:
    """Something a runtime needs; ``probe`` answers ``None`` (present) or why not, in a
    phrase. ``cached``: ask once per process (the GPU probe caches its own answer)."""

    name: str
    probe: Callable[[], str | None]
    cached: bool = True

    def missing(self) -> str | None:
        if not self.cached:
            return self.probe()
        if self.name not in _answers:
            _answers[self.name] = self.probe()
        return _answers[self.name]


def forget_probes() -> None:
    """Forget every cached probe answer (tests that fake a library call this)."""
    _answers.clear()


@dataclass(frozen=True)
class Runtime:
    """One way to run a model: an engine family on one device, with its providers."""

    name: str
    label: str
    backend: str  # the engine family in BACKENDS
    providers: tuple[str, ...] = ()  # ONNX Runtime's execution providers, in order
    gpu: bool = False
    needs: tuple[Requirement, ...] = ()
    precisions: tuple[str, ...] = PRECISIONS
    factory: Callable[[], Backend] | None = None  # default: the family's class

    def unavailable(self, target: TargetProfile | None = None) -> str | None:
        """``None`` when this runtime can run here (at ``target``'s precision), else the
        first thing it lacks; cheap checks come first, and a probe runs only when every
        requirement before it is met."""
        if target is not None and target.precision not in self.precisions:
            allowed = " and ".join(self.precisions)
            return f"it runs {allowed} only, not {target.precision}"
        for requirement in self.needs:
            if reason := requirement.missing():
                return reason
        return None

    def create(self) -> Backend:
        """A backend that builds engines for this runtime."""
        if self.factory is not None:
            return self.factory()
        cls = BACKENDS.get(self.backend).load()
        if cls is None:
            raise UnsupportedError(f"backend {self.backend!r} is not implemented in this "
                                   "version of deploypipe yet",
                                   hint="use a target with backend 'onnxruntime'")
        return cls(self.providers) if self.providers else cls()

    def target(self, base: TargetProfile) -> TargetProfile:
        """``base`` (tolerances, batch, shapes) moved to this runtime's device and family;
        CPU runtimes always run fp32."""
        return dataclasses.replace(
            base, name=f"{base.name}:{self.name}", backend=self.backend,
            providers=self.providers, device="cuda" if self.gpu else "cpu",
            precision=base.precision if self.gpu else "fp32", requires_gpu=self.gpu,
            auto=False)


# --- the probes ------------------------------------------------------------------------------

def _gpu() -> str | None:
    return gpu_missing_reason()  # looked up here at call time, so tests can fake the GPU


def _tensorrt_package() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed"
    return None


def tensorrt_build_fails() -> str | None:
    """``None`` when TensorRT builds and deserializes a one-layer engine here, else why not:
    a TensorRT whose libraries load but that does not support this GPU, or whose CUDA does
    not match the driver, imports fine and fails only when it builds."""
    try:
        import tensorrt as trt

        return _tiny_engine_fails(trt)
    except Exception as exc:  # the bindings raise their own types, all with text
        return f"TensorRT imports but cannot build an engine here ({_first_line(exc)})"


def _tiny_engine_fails(trt) -> str | None:
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    x = network.add_input("x", trt.float32, (1, 8))
    network.mark_output(network.add_activation(x, trt.ActivationType.RELU).get_output(0))
    data = builder.build_serialized_network(network, builder.create_builder_config())
    if data is None:
        return f"TensorRT {trt.__version__} imports but could not build an engine on this GPU"
    if trt.Runtime(logger).deserialize_cuda_engine(bytes(data)) is None:
        return f"TensorRT {trt.__version__} built an engine it cannot load on this GPU"
    return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _ort_provider(name: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        import onnxruntime as ort

        if name in ort.get_available_providers():
            return None
        install = " (install onnxruntime-gpu)" if name in GPU_PROVIDERS else ""
        return f"this onnxruntime {ort.__version__} has no {name}{install}"
    return probe


def _libnvinfer() -> str | None:
    if ctypes.util.find_library("nvinfer") is None:
        return "the TensorRT library (libnvinfer) is not on the library path"
    return None


def _torch_cuda() -> str | None:
    import torch

    return None if torch.cuda.is_available() else f"torch {torch.__version__} has no CUDA device"


GPU = Requirement("an NVIDIA GPU", _gpu, cached=False)
TENSORRT = (Requirement("the tensorrt package", _tensorrt_package, cached=False),
            Requirement("a TensorRT that builds here", tensorrt_build_fails))
TORCH_CUDA = Requirement("torch with CUDA", _torch_cuda)


def ort_provider(name: str) -> Requirement:
    return Requirement(f"onnxruntime's {name}", _ort_provider(name))


# --- the tables ------------------------------------------------------------------------------

BACKENDS: Registry[BackendSpec] = Registry("backend")
for _spec in (
    BackendSpec("onnxruntime", "ONNX Runtime: CPU, plus CUDA and TensorRT execution "
                "providers with onnxruntime-gpu", "deploypipe.backends.ort:OrtBackend", False,
                "ort"),
    BackendSpec("tensorrt", "native TensorRT engines on an NVIDIA GPU (TensorRT 10 and 11)",
                "deploypipe.backends.tensorrt:TensorRTBackend", True, "trt"),
    BackendSpec("torch", "PyTorch eager or compiled on an NVIDIA GPU, for GPUs without TensorRT",
                "deploypipe.backends.torch_cuda:TorchBackend", True, "torch-cuda"),
):
    BACKENDS.add(_spec.name, _spec)

_TRT_EP = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
RUNTIMES: Registry[Runtime] = Registry("runtime")
for _runtime in (
    Runtime("torch", "PyTorch on the CPU", "torch", precisions=("fp32", "fp16")),
    Runtime("ort", "ONNX Runtime on the CPU", "onnxruntime", ("CPUExecutionProvider",)),
    Runtime("trt", "native TensorRT", "tensorrt", gpu=True, needs=(GPU, *TENSORRT)),
    Runtime("ort-trt", "ONNX Runtime's TensorRT provider", "onnxruntime", _TRT_EP, gpu=True,
            needs=(GPU, ort_provider(_TRT_EP[0]),
                   Requirement("libnvinfer", _libnvinfer))),
    Runtime("ort-cuda", "ONNX Runtime's CUDA provider", "onnxruntime",
            ("CUDAExecutionProvider",), gpu=True,
            needs=(GPU, ort_provider("CUDAExecutionProvider")), precisions=("fp32", "fp16")),
    Runtime("torch-cuda", "PyTorch on CUDA (cuDNN)", "torch", gpu=True,
            needs=(GPU, TORCH_CUDA), precisions=("fp32", "fp16")),
):
    RUNTIMES.add(_runtime.name, _runtime)

GPU_PREFERENCE = ("trt", "ort-trt", "ort-cuda", "torch-cuda")


# --- resolution ------------------------------------------------------------------------------

def runtime_for_target(target: TargetProfile) -> Runtime:
    """The runtime ``target`` runs on: the chooser's pick for ``auto`` (``--target gpu``),
    else the registered runtime of its family, device and providers; an ONNX Runtime
    profile with providers of its own gets a runtime that needs exactly those."""
    if target.auto:
        from .chooser import choose_gpu_runtime

        return choose_gpu_runtime(target)
    if target.backend is None:
        raise InternalError(f"target {target.name!r} has neither a backend nor auto = true")
    on_gpu = target.device == "cuda"
    for _, runtime in RUNTIMES.items():
        if (runtime.backend, runtime.gpu) == (target.backend, on_gpu) and (
                runtime.backend != "onnxruntime" or runtime.providers == target.providers):
            return runtime
    needs = (GPU,) if target.requires_gpu else ()
    return Runtime(target.backend, f"{target.backend} ({', '.join(target.providers)})",
                   target.backend, target.providers if target.backend == "onnxruntime" else (),
                   gpu=on_gpu, needs=needs + tuple(ort_provider(p) for p in target.providers
                                                   if p != "CPUExecutionProvider"))


def create_backend(name: str) -> Backend:
    """The engine family registered as ``name``; a GPU family without a GPU is a
    DeviceError."""
    spec = BACKENDS.get(name)
    if spec.gpu_only and (reason := _gpu()):
        raise DeviceError(f"backend {name!r} needs an NVIDIA GPU but {reason}",
                          hint="use --target cpu to run on the CPU with ONNX Runtime")
    cls = spec.load()
    if cls is None:
        raise UnsupportedError(f"backend {name!r} is not implemented in this version of "
                               "deploypipe yet", hint="use a target with backend 'onnxruntime'")
    return cls()


def backend_for_target(target: TargetProfile) -> Backend:
    """The backend that runs ``target``; checks the GPU before anything is built. A fixed
    target's family says what else it lacks when it builds, naming the target."""
    if target.requires_gpu and (reason := _gpu()):
        raise DeviceError(f"target {target.name!r} needs an NVIDIA GPU but {reason}",
                          hint="use --target cpu to run on the CPU")
    return runtime_for_target(target).create()
