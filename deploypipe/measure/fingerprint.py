"""The machine a measurement ran on, and a short key that caches measurements per machine.

Everything optional (nvidia-ml-py, torch.cuda, tensorrt) is looked up lazily and quietly:
a missing library leaves its field ``None``. Library versions come from installed package
metadata, so taking a fingerprint does not import torch or tensorrt.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from ..utils.log import get_logger

log = get_logger("measure")

# Fields that change what a latency measurement means; the rest is provenance.
_KEY_FIELDS = ("cpu", "logical_cores", "machine", "system", "gpu", "gpu_driver", "cuda",
               "tensorrt", "onnxruntime", "torch")


@dataclass(frozen=True)
class Fingerprint:
    cpu: str
    logical_cores: int
    machine: str
    system: str
    os: str
    python: str
    numpy: str | None
    onnxruntime: str | None
    torch: str | None
    onnx: str | None
    gpu: str | None = None
    gpu_driver: str | None = None
    cuda: str | None = None
    tensorrt: str | None = None
    cuda_visible_devices: str | None = None  # as set when measured (None: not set)

    def key(self) -> str:
        """A 12-hex-digit hash of the hardware and of the libraries that run the model."""
        payload = json.dumps({k: getattr(self, k) for k in _KEY_FIELDS}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "key": self.key()}

    def summary(self) -> str:
        """One line for humans: CPU, cores, GPU and the runtime versions."""
        parts = [f"{self.cpu} ({self.logical_cores} logical cores, {self.machine})"]
        if self.gpu:
            parts.append(f"GPU {self.gpu} (driver {self.gpu_driver}, CUDA {self.cuda})")
        libs = [f"{n} {getattr(self, n)}" for n in ("onnxruntime", "torch", "tensorrt")
                if getattr(self, n)]
        return "; ".join(parts + [", ".join(libs)]) + f"; key {self.key()}"


@functools.lru_cache(maxsize=1)
def hardware_fingerprint() -> Fingerprint:
    """Describe this machine (cached for the process: the hardware does not change)."""
    gpu, driver, cuda = gpu_info()
    return Fingerprint(
        cpu=_cpu_model(),
        logical_cores=os.cpu_count() or 1,
        machine=platform.machine(),
        system=platform.system(),
        os=platform.platform(terse=True),
        python=platform.python_version(),
        numpy=_version("numpy"),
        onnxruntime=_version("onnxruntime", "onnxruntime-gpu"),
        torch=_version("torch"),
        onnx=_version("onnx"),
        gpu=gpu,
        gpu_driver=driver,
        cuda=cuda,
        tensorrt=_version("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-libs"),
        cuda_visible_devices=visible_devices(),
    )


def visible_devices() -> str | None:
    """``CUDA_VISIBLE_DEVICES`` as set (``None`` when unset: every GPU is visible)."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


@functools.lru_cache(maxsize=1)
def gpu_info() -> tuple[str | None, str | None, str | None]:
    """(name, driver, CUDA version) of the first GPU CUDA sees (``CUDA_VISIBLE_DEVICES``
    respected) from NVML, else torch.cuda, else the kernel driver's /proc entry (name
    only), else Nones; Nones when ``CUDA_VISIBLE_DEVICES`` hides every GPU."""
    if _first_visible(visible_devices()) == "":
        return None, None, None
    info = _gpu_from_nvml()
    if info[0] is None:
        info = _gpu_from_torch()
    if info[0] is None:
        info = _gpu_from_proc()
    return info


def _gpu_from_nvml() -> tuple[str | None, str | None, str | None]:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None, None, None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # no driver: the library is there, the GPU is not
        log.debug("NVML unavailable: %s", exc)
        return None, None, None
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return None, None, None
        name = _text(pynvml.nvmlDeviceGetName(_nvml_handle(pynvml, _first_visible(visible_devices()))))
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        v = pynvml.nvmlSystemGetCudaDriverVersion()
        return name, driver, f"{v // 1000}.{v % 1000 // 10}"
    finally:
        pynvml.nvmlShutdown()


def _first_visible(visible: str | None) -> str | None:
    """The first entry of ``CUDA_VISIBLE_DEVICES`` (an index or a ``GPU-``/``MIG-`` UUID),
    ``None`` when unset, ``""`` when it hides every GPU."""
    if visible is None:
        return None
    first = visible.split(",")[0].strip()
    return "" if first in ("", "-1", "none", "NoDevFiles") else first


def _nvml_handle(pynvml, first: str | None):
    """NVML's handle of the GPU that CUDA numbers 0. NVML numbers GPUs in PCI bus order, as
    CUDA does with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; a UUID names one GPU either way."""
    if first is None:
        return pynvml.nvmlDeviceGetHandleByIndex(0)
    if first.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(first))
    return pynvml.nvmlDeviceGetHandleByUUID(first)


def _gpu_from_torch() -> tuple[str | None, str | None, str | None]:
    version = _version("torch")
    if version is None or "+cpu" in version:
        return None, None, None  # a CPU-only build: importing it would only cost time
    try:
        import torch
    except Exception:
        return None, None, None
    if not torch.cuda.is_available():
        return None, None, None
    return torch.cuda.get_device_name(0), None, torch.version.cuda


def _gpu_from_proc(root: Path = Path("/proc/driver/nvidia/gpus")) -> tuple[str | None, None, None]:
    """The NVIDIA kernel driver lists each GPU here even without NVML or CUDA libraries."""
    try:
        for info in sorted(root.glob("*/information")):
            for line in info.read_text(errors="replace").splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model":
                    return value.strip() or "NVIDIA GPU", None, None
    except OSError:
        pass
    return None, None, None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
