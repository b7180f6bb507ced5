"""ONNX Runtime on the GPU: provider options, the graph each provider gets, a check that
the session really runs on the GPU, and device-side IO binding for timing.

* The TensorRT provider gets the target's precision (``trt_fp16_enable``, and
  ``trt_int8_enable`` for a graph with Q/DQ nodes), a timing cache under deploypipe's cache
  folder, the workspace limit native TensorRT uses, and an engine cache folder of its own
  per model *content* and options: the provider names cached engines after the graph's
  file and node names, not its weights, so a later ``pruned.onnx`` or a latency-table
  sub-model saved under the same name would silently load an engine built for another
  graph.
* The CUDA provider runs fp32 convolutions and matrix products as TF32 unless told not to
  (``use_tf32``, on by default): an fp32 target turns it off, so fp32 means fp32.
* The CUDA provider has no precision switch, so an fp16 target gets the graph converted by
  :func:`deploypipe.backends.fp16.to_fp16`; int8 needs the TensorRT provider.
* ``session.disable_cpu_ep_fallback`` (see ``session_options``) makes a node without a GPU
  kernel an error; :func:`check_session_providers` also refuses a session in which
  ONNX Runtime dropped a requested GPU provider (it does so when the provider's libraries do
  not load), so a GPU target never silently runs on the CPU.
* Before a GPU session, torch is imported: its CUDA wheels load the CUDA and cuDNN
  libraries that onnxruntime-gpu then finds (ONNX Runtime's documented way to share them
  with PyTorch), so the image needs no separate CUDA toolkit on the library path.
* Timing binds inputs once as CUDA ``OrtValue``s and outputs to CUDA memory, so a timed run
  copies nothing between host and device, and waits for the outputs before it returns.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..errors import DeviceError, UnsupportedError
from ..targets import GPU_PROVIDERS, TargetProfile
from ..utils.cache_dir import default_cache_dir
from ..utils.files import sha256_file, write_bytes
from .trt_options import DEFAULT_WORKSPACE, QDQ_OPS

if TYPE_CHECKING:
    import onnxruntime

TRT_EP, CUDA_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider"


def on_gpu(target: TargetProfile) -> bool:
    return any(p in GPU_PROVIDERS for p in target.providers)


def provider_entries(target: TargetProfile, cache_dir: str | Path | None,
                     model_path: str | Path | None = None) -> list[Any]:
    """``providers=`` for InferenceSession: names, with options for the GPU providers
    (``model_path``, the graph the session loads, keys the TensorRT engine cache)."""
    entries: list[Any] = []
    for name in target.providers:
        if name == TRT_EP:
            entries.append((name, trt_ep_options(target, cache_dir, model_path)))
        elif name == CUDA_EP:
            entries.append((name, cuda_ep_options(target)))
        else:
            entries.append(name)
    return entries


def cuda_ep_options(target: TargetProfile) -> dict[str, Any]:
    """CUDA provider options: GPU 0, and TF32 only when the target is not fp32."""
    return {"device_id": 0, "use_tf32": 0 if target.precision == "fp32" else 1}


def trt_ep_options(target: TargetProfile, cache_dir: str | Path | None,
                   model_path: str | Path | None = None) -> dict[str, Any]:
    """TensorRT provider options from the target, with engine and timing caches on disk; the
    engine folder is keyed by the model's content and these options (see the module doc)."""
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "onnxruntime-trt"
    options: dict[str, Any] = {
        "device_id": 0, "trt_max_workspace_size": DEFAULT_WORKSPACE,
        "trt_fp16_enable": target.precision in ("fp16", "int8"),
        "trt_int8_enable": target.precision == "int8"}
    engines = root / "engines" / engine_folder_key(model_path, options)
    for folder in (engines, root / "timing"):
        folder.mkdir(parents=True, exist_ok=True)
    return {**options, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(engines),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(root / "timing")}


def engine_folder_key(model_path: str | Path | None, options: dict[str, Any]) -> str:
    """24 hex digits of the model file's content and the options that change its engine
    (``"any"`` without a model, for callers that only want the options)."""
    if model_path is None:
        return "any"
    payload = json.dumps({"model": sha256_file(Path(model_path)), "options": options},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def gpu_model_path(onnx_path: Path, target: TargetProfile, cache_dir: str | Path | None) -> Path:
    """The graph to load for ``target``: the fp16 conversion for the CUDA provider alone."""
    import onnx

    if target.precision == "fp32" or not on_gpu(target):
        return onnx_path
    model = onnx.load(str(onnx_path), load_external_data=False)
    if target.precision == "int8":
        if TRT_EP not in target.providers or not any(n.op_type in QDQ_OPS for n in model.graph.node):
            raise UnsupportedError(f"target {target.name!r} asks for int8, which ONNX Runtime "
                                   "runs only with the TensorRT provider on a quantized graph "
                                   "(Q/DQ nodes)", hint="quantize the model first or use fp16")
        return onnx_path
    if TRT_EP in target.providers:
        return onnx_path  # trt_fp16_enable lets TensorRT choose fp16 kernels itself
    from .fp16 import to_fp16

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / "onnxruntime" / "graphs" / f"{sha256_file(onnx_path)[:24]}-fp16.onnx"
    if not path.is_file():
        write_bytes(path, to_fp16(model).SerializeToString())
    return path


def preload_cuda_libraries() -> None:
    """Load the CUDA/cuDNN libraries of torch's CUDA wheels before ONNX Runtime looks for them."""
    try:
        import torch  # noqa: F401  (importing it is the point)
    except ImportError:
        pass


def check_session_providers(session: "onnxruntime.InferenceSession", target: TargetProfile) -> None:
    """Refuse a session that lost a GPU provider the target asked for."""
    have = list(session.get_providers())
    missing = [p for p in target.providers if p in GPU_PROVIDERS and p not in have]
    if missing:
        raise DeviceError(f"ONNX Runtime did not enable {', '.join(missing)} for target "
                          f"{target.name!r} (the session has {', '.join(have)}), so it would "
                          "not run on the GPU", hint="check that the CUDA, cuDNN and TensorRT "
                          "libraries onnxruntime-gpu needs are installed (run with -v)")


def device_bound_call(session: "onnxruntime.InferenceSession",
                      feeds: Mapping[str, np.ndarray]) -> Callable[[], None]:
    """One inference on inputs already on GPU 0, outputs left there; synchronised."""
    import onnxruntime as ort

    binding = session.io_binding()
    values = {n: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), "cuda", 0)
              for n, x in feeds.items()}
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", 0)
    run = session.run_with_iobinding

    def call() -> None:
        run(binding)
        binding.synchronize_outputs()

    call.values = values  # type: ignore[attr-defined]  # the device inputs live as long as the call
    return call
