"""``synthetic``: seeded Gaussian blobs around one smooth random prototype per class.

Learnable but not trivial (noise is as strong as the signal), any size, channel count
and class count, and always available: the dataset for fast tests and benchmarks.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .registry import RawData, register_dataset

DEFAULTS: dict[str, float] = {"classes": 10, "size": 32, "channels": 3, "n": 2000, "noise": 1.0, "seed": 0}
_INTS = {"classes", "size", "channels", "n", "seed"}


@register_dataset("synthetic")
def synthetic(arg: str | None, *, image_size: tuple[int, int] | None) -> RawData:
    """Seeded random blobs per class; options synthetic:classes=10,size=32,channels=3,n=2000,noise=1,seed=0."""
    opts = parse_options(arg)
    k, c, n, size = int(opts["classes"]), int(opts["channels"]), int(opts["n"]), int(opts["size"])
    if n < 3 * k:
        raise InputError(f"synthetic data with {k} classes needs n >= {3 * k} images, got n={n}",
                         hint="raise n or lower classes")
    rng = np.random.default_rng(int(opts["seed"]))
    coarse = torch.from_numpy(rng.normal(size=(k, c, 4, 4)).astype(np.float32))
    protos = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).numpy()
    y = rng.permutation(np.arange(n) % k)
    scale = rng.uniform(0.5, 1.5, size=(n, 1, 1, 1)).astype(np.float32)
    noise = rng.normal(scale=opts["noise"], size=(n, c, size, size)).astype(np.float32)
    return RawData(protos[y] * scale + noise, y.astype(np.int64),
                   f"synthetic Gaussian blobs ({_describe(opts)}); generated, no licence needed")


def parse_options(arg: str | None) -> dict[str, float]:
    """``classes=10,size=32`` -> options over DEFAULTS; unknown keys and bad values are InputErrors."""
    opts = dict(DEFAULTS)
    for item in filter(None, (s.strip() for s in (arg or "").split(","))):
        key, sep, value = item.partition("=")
        if key not in DEFAULTS or not sep:
            raise InputError(f"unknown synthetic option {item!r}",
                             hint=f"write key=value with keys {', '.join(DEFAULTS)}")
        try:
            number = int(value) if key in _INTS else float(value)
        except ValueError:
            raise InputError(f"synthetic option {key}={value!r} is not a number",
                             hint=f"e.g. {key}={int(DEFAULTS[key]) if key in _INTS else DEFAULTS[key]}") from None
        if number < 0 or (number == 0 and key != "seed") or (key == "classes" and number < 2):
            raise InputError(f"synthetic option {key}={value} is out of range",
                             hint="use positive values and at least 2 classes")
        opts[key] = number
    return opts


def _describe(opts: dict[str, float]) -> str:
    return ",".join(f"{k}={int(v) if k in _INTS else v}" for k, v in opts.items())
