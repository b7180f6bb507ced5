"""Native TensorRT backend, written to the Python API of TensorRT 10 and 11.

``tensorrt`` is imported only when an engine is built, so this module (and ``deploypipe
--help``) loads without it. A build is: read the ONNX graph and plan the options
(:mod:`.trt_options`: precision flags on 10, fp16 graph conversion and strongly typed
networks on 11, optimisation profile for a dynamic batch), look the engine up in the cache
(:mod:`.trt_cache`), else parse, configure with the machine's timing cache, build and store
both (:mod:`.trt_build`), then deserialize it into a :class:`TensorRTEngine`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import DeviceError, InputError
from ..measure.fingerprint import Fingerprint, hardware_fingerprint
from ..targets import TargetProfile
from ..utils.files import sha256_file, write_bytes
from ..utils.locks import entry_lock
from ..utils.log import get_logger
from ._gpu import gpu_missing_reason
from .base import Backend
from .trt_build import (config_from_options, engine_bytes_from_network, network_from_onnx_path,
                        timing_cache_bytes, trt_logger)
from .trt_cache import EngineCache, engine_key
from .trt_options import (DEFAULT_MAX_BATCH, DEFAULT_WORKSPACE, TrtBuildOptions, has_qdq,
                          onnx_inputs, plan_build)

log = get_logger("backends.tensorrt")


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or a DeviceError sentence saying how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise DeviceError("the tensorrt backend needs the tensorrt Python package "
                          "(TensorRT 10 or 11), which is not installed here",
                          hint="install deploypipe[gpu] or use the GPU Docker image") from None
    return tensorrt


@dataclass(frozen=True)
class PreparedBuild:
    """The graph TensorRT will parse, the options, and the cache key of the result."""

    source: Path  # the ONNX file to parse (the fp16 conversion on TensorRT 11)
    options: TrtBuildOptions
    key: str


class TensorRTBackend(Backend):
    name = "tensorrt"
    description = "native TensorRT engines"

    def __init__(self, *, workspace_bytes: int = DEFAULT_WORKSPACE,
                 max_batch: int = DEFAULT_MAX_BATCH,
                 fingerprint: Fingerprint | None = None):
        self.workspace_bytes, self.max_batch = workspace_bytes, max_batch
        self._fingerprint = fingerprint

    def build(self, onnx_path: str | Path, target: TargetProfile, *,
              cache_dir: str | Path | None = None) -> Any:
        """A :class:`TensorRTEngine` for ``onnx_path``, from the cache when it is there;
        ``engine.engine_path`` is the serialized engine on disk (to copy into a run)."""
        from .trt_engine import TensorRTEngine

        if reason := gpu_missing_reason():
            raise DeviceError(f"the tensorrt backend needs an NVIDIA GPU but {reason}",
                              hint="use --target cpu to run on the CPU")
        trt = import_tensorrt()
        path = self.engine_file(trt, onnx_path, target, cache_dir=cache_dir)
        return TensorRTEngine(trt, path.read_bytes(), onnx_path=Path(onnx_path), target=target,
                              engine_path=path)

    def load(self, engine_path: str | Path, target: TargetProfile) -> Any:
        """A :class:`TensorRTEngine` from a serialized engine (``.plan``) built elsewhere, e.g.
        by ``deploypipe build`` or trtexec; the ONNX file of the same stem beside it, when
        there is one, names the layers."""
        from .trt_engine import TensorRTEngine

        path = Path(engine_path)
        if not path.is_file():
            raise InputError(f"TensorRT engine {str(path)!r} does not exist", hint="check the path")
        if reason := gpu_missing_reason():
            raise DeviceError(f"a TensorRT engine needs an NVIDIA GPU but {reason}",
                              hint="run it on the GPU it was built for")
        trt = import_tensorrt()
        onnx_path = path.with_suffix(".onnx")
        return TensorRTEngine(trt, path.read_bytes(), target=target, engine_path=path,
                              onnx_path=onnx_path if onnx_path.is_file() else None)

    def engine_bytes(self, trt: ModuleType, onnx_path: str | Path, target: TargetProfile, *,
                     cache_dir: str | Path | None = None) -> bytes:
        """The serialized engine (see :meth:`engine_file`)."""
        return self.engine_file(trt, onnx_path, target, cache_dir=cache_dir).read_bytes()

    def engine_file(self, trt: ModuleType, onnx_path: str | Path, target: TargetProfile, *,
                    cache_dir: str | Path | None = None) -> Path:
        """The engine's file in the cache: the one for this key, else built now."""
        cache = EngineCache(cache_dir, timing_file=target.timing_cache)
        prepared = self.prepare(trt.__version__, Path(onnx_path), target, cache)
        path = cache.engine_path(prepared.key)
        with entry_lock(path, "the TensorRT engine"):  # a second run waits, then reuses it
            if path.is_file():
                log.info("reusing the TensorRT engine %s from %s", prepared.key, cache.folder)
                return path
            log.info("building a TensorRT %s engine for %s with TensorRT %s (this takes a while "
                     "the first time; the timing cache makes rebuilds faster)",
                     target.precision, onnx_path, trt.__version__)
            fp = self.fingerprint()
            timing_path = cache.timing_path(fp, trt.__version__)
            with entry_lock(timing_path, "the TensorRT timing cache"):  # no run drops another's tactics
                data, timing = build_engine(trt, prepared, cache.load_timing(fp, trt.__version__))
                cache.store_timing(fp, trt.__version__, timing)
            return cache.store_engine(prepared.key, data, {
                "model": str(onnx_path), "target": target.name,
                "options": prepared.options.to_dict(), "fingerprint": fp.to_dict()})

    def prepare(self, version: str, onnx_path: Path, target: TargetProfile,
                cache: EngineCache) -> PreparedBuild:
        """Plan the options, convert the graph if they say so, and key the result."""
        import onnx

        if target.backend not in (None, self.name):
            raise InputError(f"target {target.name!r} is for backend {target.backend!r}, "
                             f"not {self.name!r}", hint="pick a tensorrt target")
        model = onnx.load(str(onnx_path), load_external_data=False)
        options = plan_build(version, target, onnx_inputs(model), has_qdq=has_qdq(model),
                             workspace_bytes=self.workspace_bytes, max_batch=self.max_batch)
        digest = sha256_file(onnx_path)
        key = engine_key(digest, options.to_dict(), self.fingerprint(), version)
        source = onnx_path
        if options.convert_fp16:
            source = _fp16_source(model, cache.folder / "graphs" / f"{digest[:24]}-fp16.onnx")
        return PreparedBuild(source=source, options=options, key=key)

    def fingerprint(self) -> Fingerprint:
        return self._fingerprint or hardware_fingerprint()


def build_engine(trt: ModuleType, prepared: PreparedBuild, timing: bytes) -> tuple[bytes, bytes]:
    """(engine bytes, updated timing cache bytes) for a prepared build."""
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    network, parser = network_from_onnx_path(trt, builder, logger, prepared.source,
                                             prepared.options)
    config = config_from_options(trt, builder, prepared.options, timing)
    data = engine_bytes_from_network(builder, network, config)
    del parser  # owned the weights until the build finished
    return data, timing_cache_bytes(config)


def _fp16_source(model: Any, path: Path) -> Path:
    """The fp16 conversion of ``model`` at ``path`` (written once; it is deterministic)."""
    from .fp16 import to_fp16

    if not path.is_file():
        write_bytes(path, to_fp16(model).SerializeToString())
    return path
