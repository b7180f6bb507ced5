"""Is there an NVIDIA GPU here? One answer shared by every GPU backend."""
from __future__ import annotations

from ..measure.fingerprint import gpu_info


def gpu_missing_reason() -> str | None:
    """``None`` when an NVIDIA GPU is visible (to NVML, torch.cuda or the NVIDIA kernel
    driver), else a phrase saying that none was found."""
    if gpu_info()[0] is not None:
        return None
    return "no NVIDIA GPU was found on this machine"
