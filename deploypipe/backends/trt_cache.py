"""Built TensorRT engines and timing caches on disk, keyed so that a stale one is never used.

An engine is valid only for the graph, the build options, the GPU, its driver and the
TensorRT version it was built with, so its key hashes all of them (the model's content,
:class:`TrtBuildOptions`, the hardware fingerprint and ``tensorrt.__version__``). The
timing cache (measured tactic times) depends only on the GPU and TensorRT, so it is shared
by every engine built on the same machine, which makes rebuilding a pruned variant fast.

Layout under the cache folder (``--cache-dir``, else ``$DEPLOYPIPE_CACHE``, else
``~/.cache/deploypipe``): ``tensorrt/engines/KEY.engine`` with ``KEY.json`` beside it saying
what was built, and ``tensorrt/timing/MACHINE-trtVERSION.cache`` (or the target's
``timing_cache`` file, trtexec's ``--timingCacheFile``). Writes are atomic.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from ..measure.fingerprint import Fingerprint
from ..utils.cache_dir import default_cache_dir
from ..utils.files import write_bytes, write_json

CACHE_FORMAT = 1  # bump when the conversion or build steps change what a key means


def engine_key(model_digest: str, options: Mapping[str, Any], fingerprint: Fingerprint,
               trt_version: str) -> str:
    """A 24-hex-digit key of everything an engine depends on."""
    payload = {"format": CACHE_FORMAT, "model": model_digest, "options": dict(options),
               "machine": fingerprint.key(), "gpu": fingerprint.gpu,
               "driver": fingerprint.gpu_driver, "cuda": fingerprint.cuda,
               "tensorrt": str(trt_version)}
    text = json.dumps(payload, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class EngineCache:
    """Serialized engines and the machine's timing cache under ``root/tensorrt``."""

    def __init__(self, root: str | Path | None = None, *, timing_file: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.folder = self.root / "tensorrt"
        self.timing_file = Path(timing_file) if timing_file is not None else None

    def engine_path(self, key: str) -> Path:
        return self.folder / "engines" / f"{key}.engine"

    def store_engine(self, key: str, engine: bytes, record: Mapping[str, Any]) -> Path:
        """Write the engine and a JSON note of what it was built from."""
        path = write_bytes(self.engine_path(key), engine)
        write_json(path.with_suffix(".json"), {"key": key, **record})
        return path

    def timing_path(self, fingerprint: Fingerprint, trt_version: str) -> Path:
        """``--timing-cache FILE`` when given, else one file per machine and version."""
        if self.timing_file is not None:
            return self.timing_file
        return self.folder / "timing" / f"{fingerprint.key()}-trt{trt_version}.cache"

    def load_timing(self, fingerprint: Fingerprint, trt_version: str) -> bytes:
        """The machine's timing cache, or ``b""`` (an empty cache) when there is none."""
        try:
            return self.timing_path(fingerprint, trt_version).read_bytes()
        except OSError:
            return b""

    def store_timing(self, fingerprint: Fingerprint, trt_version: str, data: bytes) -> None:
        if data:
            write_bytes(self.timing_path(fingerprint, trt_version), data)
