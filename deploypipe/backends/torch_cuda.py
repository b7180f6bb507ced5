"""PyTorch backend: the model's own PyTorch module, eager or ``torch.compile``d, on an
NVIDIA GPU through cuDNN, for GPUs without TensorRT (and on the CPU as the reference that
``deploypipe compare`` checks the other backends against).

It runs a PyTorch module, so ``build`` takes the model itself where there is one:

* an ``nn.Module`` (copied, so the caller's module is left as it was);
* a checkpoint path, loaded with :func:`deploypipe.checkpoint.load_model` (weights-only
  unless the backend was made with ``trust_model=True``);
* an ONNX path with its checkpoint beside it under the same stem (``pruned.onnx`` and
  ``pruned.pt``, as ``deploypipe build`` writes them): the pruned PyTorch module itself;
* or an ONNX path alone (the latency table's sub-models, the loop's candidates, a graph
  shrunk by ONNX surgery): a module built from the graph by
  :func:`deploypipe.backends.onnx_torch.module_from_onnx`, whose convolutions and linear
  layers are real ``nn.Conv2d``/``nn.Linear`` modules named after the ONNX weights.

Inputs take their names and shapes from the ONNX file when there is one (so the same feeds
run every backend), else from the shape the checkpoint records, else the target's
``input_shape``. fp16 is ``.half()`` weights and inputs (true fp16, as TensorRT runs it, not
autocast); on the GPU, 4-d inputs use the channels-last layout that cuDNN's tensor-core
kernels prefer, cuDNN autotuning is on, and an fp32 target runs without TF32.

Timing on the GPU replays the forward pass captured once as a CUDA graph, between CUDA
events on its stream: GPU compute time with inputs already on the device and no host
copies, as trtexec's "GPU Compute Time" is, without the Python launch overhead that eager
PyTorch adds at small batches (a resnet50 launches ~160 kernels). A model that cannot be
captured is timed eagerly, and ``timing`` says which (``providers`` shows it too).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError, UnsupportedError
from ..targets import TargetProfile
from ..utils.log import get_logger
from ..utils.outputs import flat_tensors
from ._cuda import MIXED_TF32_APIS, cuda_event_samples, require_cuda, torch_math
from .base import Backend, Engine, LayerTime
from .feeds import TensorSpec
from .layer_map import GraphIndex
from .torch_profile import CudaClock, HostClock, ModuleTimer, layers_from_timer

if TYPE_CHECKING:
    import torch
    from torch import nn

log = get_logger("backends.torch")


class TorchBackend(Backend):
    name = "torch"
    description = "PyTorch eager or compiled (cuDNN)"

    def __init__(self, *, compile: bool = False, compile_mode: str = "max-autotune-no-cudagraphs",
                 trust_model: bool = False, cuda_graph: bool = True, fold_batchnorm: bool = True):
        self.compile, self.compile_mode, self.trust_model = compile, compile_mode, trust_model
        self.cuda_graph = cuda_graph  # time GPU runs as CUDA-graph replays (else eager)
        self.fold_batchnorm = fold_batchnorm  # as TensorRT and ONNX Runtime do when they build

    def build(self, model: Any, target: TargetProfile, *, cache_dir: str | Path | None = None,
              onnx_path: str | Path | None = None) -> "TorchEngine":
        """An engine running ``model`` (module, checkpoint, or ONNX path with its checkpoint
        beside it) on ``target.device``; ``onnx_path`` names the inputs and maps layers."""
        if target.backend not in (None, self.name):
            raise InputError(f"target {target.name!r} is for backend {target.backend!r}, "
                             f"not {self.name!r}", hint="pick a torch target")
        if target.precision == "int8":
            raise UnsupportedError("the torch backend runs fp32 and fp16 only",
                                   hint="use a TensorRT target for int8")
        if target.device == "cuda":
            require_cuda()
        module, found_onnx, sample = resolve_model(model, trust_model=self.trust_model,
                                                   fold_batchnorm=self.fold_batchnorm)
        onnx_file = Path(onnx_path) if onnx_path is not None else found_onnx
        return TorchEngine(module, target, onnx_path=onnx_file, sample_shape=sample,
                           compile_mode=self.compile_mode if self.compile else None,
                           cuda_graph=self.cuda_graph)


def resolve_model(model: Any, *, trust_model: bool = False, fold_batchnorm: bool = False
                  ) -> tuple["nn.Module", Path | None, tuple[int, ...] | None]:
    """(module, ONNX file it was exported to if known, per-sample input shape if known);
    ``fold_batchnorm`` folds every BatchNorm that follows a convolution into it."""
    from torch import nn

    from .batchnorm_fold import fold_module

    fold = fold_module if fold_batchnorm else (lambda m: (m, 0))
    if isinstance(model, nn.Module):
        return fold(copy.deepcopy(model))[0], None, None
    path = Path(model)
    onnx_path = None
    if path.suffix.lower() == ".onnx":
        onnx_path, path = path, path.with_suffix(".pt")
        if not path.is_file():
            return _from_onnx(onnx_path, fold_batchnorm), onnx_path, None
    from ..checkpoint import load_model

    loaded = load_model(path, trust_model=trust_model)
    return fold(loaded.model)[0], onnx_path, loaded.input_shape


def _from_onnx(onnx_path: Path, fold_batchnorm: bool) -> "nn.Module":
    """A module built from the ONNX graph (BatchNorm folded into the convolutions first)."""
    import onnx

    from .batchnorm_fold import fold_onnx
    from .onnx_torch import module_from_onnx

    model = onnx.load(str(onnx_path))
    if fold_batchnorm:
        model, count = fold_onnx(model)
        log.debug("%s: %d BatchNorm(s) folded into their convolutions", onnx_path, count)
    log.debug("no checkpoint beside %s: running a module built from the ONNX graph", onnx_path)
    return module_from_onnx(model)


class TorchEngine(Engine):
    """A PyTorch module in eval mode on one device, in one precision."""

    backend_name = "torch"

    def __init__(self, module: "nn.Module", target: TargetProfile, *, onnx_path: Path | None,
                 sample_shape: tuple[int, ...] | None, compile_mode: str | None = None,
                 cuda_graph: bool = True):
        import torch

        self.target, self.onnx_path = target, onnx_path
        self.device = torch.device("cuda" if target.device == "cuda" else "cpu")
        self.half = target.precision == "fp16"
        self._inputs = _input_specs(onnx_path, sample_shape or target.input_shape)
        self.channels_last = self.device.type == "cuda" and all(len(s.shape) == 4 for s in self._inputs)
        self.module = _prepare(module, self.device, self.half, self.channels_last)
        self.forward = torch.compile(self.module, mode=compile_mode) if compile_mode else self.module
        self.mode = f"compiled ({compile_mode})" if compile_mode else "eager"
        on_gpu = self.device.type == "cuda"
        self.timing = ("cuda graph" if cuda_graph else "eager launches") if on_gpu else "host clock"
        self._replays: dict[tuple, Callable[[], object]] = {}
        self._legacy_tf32 = False  # set when torch refuses its new TF32 API (see torch_math)

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def providers(self) -> list[str]:
        return [f"torch {self.mode} on {self.device.type} ({self.target.precision}, "
                f"timed by {self.timing})"]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self._check_open()
        out = self._call(self.forward, self._device_inputs(feeds))()
        return [t.detach().float().cpu().numpy() for t in flat_tensors(
            out, hint="use a model whose forward returns tensors")]

    def _timed_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        """One inference on inputs already on the device; on the GPU, the replay of its CUDA
        graph, captured once per input shape and kept with its buffers for later bursts."""
        self._check_open()
        call = self._call(self.forward, self._device_inputs(feeds))
        if self.timing != "cuda graph":
            return call
        key = tuple((name, np.shape(x)) for name, x in sorted(feeds.items()))
        if key not in self._replays:
            replay = self._capture(call)
            if replay is None:
                return call
            self._replays[key] = replay
        return self._replays[key]

    def _time_samples(self, call: Callable[[], object], *, warmup: int, iterations: int,
                      min_seconds: float) -> list[float]:
        if self.device.type != "cuda":
            return super()._time_samples(call, warmup=warmup, iterations=iterations,
                                         min_seconds=min_seconds)
        import torch

        return cuda_event_samples(call, torch.cuda.current_stream(), warmup=warmup,
                                  iterations=iterations, min_seconds=min_seconds)

    def _capture(self, call: Callable[[], object]) -> Callable[[], object] | None:
        """``call`` captured as a CUDA graph (after eager runs on the capture stream, which
        also let cuDNN autotune), or ``None`` when capture fails: ``timing`` then says
        "eager launches" and the caller times ``call`` itself."""
        import torch

        stream = torch.cuda.Stream()
        try:
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    call()
            stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                outputs = call()
        except Exception as exc:  # capture refuses some ops (host syncs, CPU tensors)
            log.info("timing %s eagerly: it cannot be captured as a CUDA graph (%s)",
                     self.onnx_path or "the model", (str(exc).splitlines() or [""])[0][:200])
            self.timing = "eager launches"
            torch.cuda.synchronize()
            return None

        def replay() -> object:
            graph.replay()
            return outputs  # the graph's memory: valid until the next replay
        replay.inputs = call  # type: ignore[attr-defined]  # the graph reads their memory
        return replay

    def profile_layers(self, batch: int, iterations: int, *, warmup: int = 2,
                       sample_shape: tuple[int, ...] | None = None) -> list[LayerTime]:
        """Per-module times of the eager module (a compiled one fuses modules away)."""
        self._check_open()
        call = self._call(self.module, self._device_inputs(self.feeds(batch, sample_shape=sample_shape)))
        for _ in range(warmup):
            call()
        timer = ModuleTimer(self.module, CudaClock() if self.device.type == "cuda" else HostClock())
        try:
            for _ in range(iterations):
                timer.run(call)
        finally:
            timer.remove()
        index = GraphIndex.from_path(self.onnx_path) if self.onnx_path else None
        return layers_from_timer(timer, index)

    def close(self) -> None:
        self.module = self.forward = None
        self._replays = {}

    # -- helpers ------------------------------------------------------------------------
    def _device_inputs(self, feeds: Mapping[str, np.ndarray]) -> list["torch.Tensor"]:
        import torch

        xs = []
        for spec in self._inputs:
            if spec.name not in feeds:
                raise InputError(f"no value for input {spec.name!r}", hint="feed every input")
            x = torch.from_numpy(np.ascontiguousarray(feeds[spec.name])).to(self.device)
            if self.half and x.is_floating_point():
                x = x.half()
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            xs.append(x)
        return xs

    def _call(self, fn: Callable, xs: list["torch.Tensor"]) -> Callable[[], object]:
        """One inference: no autograd; on the GPU with cuDNN autotuning, and TF32 only
        when the target is not fp32."""
        import torch

        tf32, benchmark = self.target.precision != "fp32", self.device.type == "cuda"

        def call() -> object:
            try:
                with torch.no_grad(), torch_math(tf32=tf32, benchmark=benchmark,
                                                 legacy=self._legacy_tf32):
                    return fn(*xs)
            except RuntimeError as exc:  # a torch whose kernels still read the old switches
                if MIXED_TF32_APIS not in str(exc) or self._legacy_tf32:
                    raise
                log.info("this torch mixes its two TF32 APIs; using the allow_tf32 switches")
                self._legacy_tf32 = True
                return call()
        return call

    def _check_open(self) -> None:
        if self.module is None:
            raise InputError("this engine was closed", hint="build a new one")


def _prepare(module: "nn.Module", device: "torch.device", half: bool,
             channels_last: bool) -> "nn.Module":
    import torch

    module = module.eval().to(device)
    if half:
        module = module.half()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def _input_specs(onnx_path: Path | None, sample: tuple[int, ...] | None) -> list[TensorSpec]:
    if onnx_path is not None:
        import onnx

        from .trt_options import onnx_inputs

        return onnx_inputs(onnx.load(str(onnx_path), load_external_data=False))
    if sample is None:
        raise InputError("the torch backend does not know the model's input shape",
                         hint="give the ONNX file too, or set input_shape in the target profile")
    return [TensorSpec("input", (None, *sample), np.dtype(np.float32))]
