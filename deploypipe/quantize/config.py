"""What a quantization is asked to do, and how far its result may stray from fp32."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError

PRECISIONS = ("int8", "fp16")
# Activation formats of the Q/DQ graph. ONNX Runtime's x86 CPU kernels are fastest with
# unsigned 8-bit activations and signed 8-bit weights (U8S8); TensorRT takes only symmetric
# signed 8-bit activations and weights (zero points of 0).
SCHEMES = ("cpu", "tensorrt")
KEEP_ALIASES = ("first", "last")  # the first and last Conv/Gemm, the classic sensitive layers


@dataclass(frozen=True)
class Tolerance:
    """How far a quantized model may stray from its fp32 original, per output: the share of
    images whose top-1 class must agree (outputs of shape (N, classes)), and the error (each
    image's largest absolute error, 99th percentile over the images) as a share of the
    output's largest |fp32 value| on the same images.

    Not the fp32 tolerance: int8 rounds every activation to one of 256 levels, so its logits
    move by a few percent of their range while the class they pick rarely changes."""

    min_agreement: float
    max_error: float  # relative to max |fp32 output|

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


TOLERANCES = {"int8": Tolerance(min_agreement=0.98, max_error=0.10),
              "fp16": Tolerance(min_agreement=0.995, max_error=0.01)}


@dataclass(frozen=True)
class QuantizeConfig:
    """Static post-training quantization of one ONNX graph.

    ``calibration_batches`` batches of ``batch_size`` training images set the activation
    ranges (int8; fp16 needs none); weights get one scale per output channel.
    ``keep_fp32`` names Conv/Gemm nodes (or ``first`` / ``last``) that stay in fp32; when the
    quantized model misses ``tolerance``, up to ``max_auto_keep`` more of the layers whose
    exclusion helps most are kept in fp32 too, and the result names every one."""

    precision: str = "int8"
    calibration_batches: int = 8
    batch_size: int = 64
    scheme: str = "cpu"
    keep_fp32: tuple[str, ...] = ()
    max_auto_keep: int = 3
    per_channel: bool = True
    verify_images: int = 2000  # held-out images the result is compared on (at most)
    tolerance: Tolerance | None = None  # None: TOLERANCES[precision]
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # more ORT quantizer options (extra_options)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"precision {self.precision!r} is not one deploypipe quantizes to",
                             hint=f"choose {' or '.join(PRECISIONS)}")
        if self.scheme not in SCHEMES:
            raise InputError(f"quantization scheme {self.scheme!r} is unknown", hint=f"choose one of {SCHEMES}")
        for name, value in (("calibration_batches", self.calibration_batches), ("batch_size", self.batch_size),
                            ("verify_images", self.verify_images)):
            if value < 1:
                raise InputError(f"{name} must be at least 1, got {value}", hint="give a positive number")
        if self.max_auto_keep < 0:
            raise InputError(f"max_auto_keep must be 0 or more, got {self.max_auto_keep}",
                             hint="0 keeps no layer in fp32 automatically")

    @property
    def limits(self) -> Tolerance:
        """The tolerance in force: the one given, else the precision's."""
        return self.tolerance or TOLERANCES[self.precision]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tolerance"] = self.limits.to_dict()
        d["keep_fp32"] = list(self.keep_fp32)
        return d


def scheme_for(target) -> str:
    """The Q/DQ format ``target`` runs fastest: TensorRT's symmetric int8 for a TensorRT or
    auto-chosen GPU target, ONNX Runtime's CPU format otherwise."""
    trt = target.backend == "tensorrt" or target.auto or "TensorrtExecutionProvider" in target.providers
    return "tensorrt" if trt else "cpu"
