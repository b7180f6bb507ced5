"""What a quantization produced: the graph, which layers run quantized and which stay fp32
(and why), how it was calibrated, and how it compares with fp32 on held-out images."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import QuantizeConfig
from .verify import Verification

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class KeptLayer:
    """A Conv/Gemm layer left in fp32, and why."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class Quantized:
    """A quantized graph and everything the report says about it."""

    model: "onnx.ModelProto" = field(repr=False)
    config: QuantizeConfig
    layers: dict[str, str]  # Conv/Gemm name -> precision it runs in
    kept: tuple[KeptLayer, ...]
    verification: Verification
    calibration_images: int
    seconds: float
    library: str

    @property
    def passed(self) -> bool:
        return self.verification.passed

    def sentence(self) -> str:
        """One line: layers converted, layers kept, the verification."""
        done = sum(p == self.config.precision for p in self.layers.values())
        kept = ", ".join(k.name for k in self.kept) or "none"
        return (f"{done} of {len(self.layers)} Conv/Gemm layers in {self.config.precision} (kept in fp32: {kept}); "
                f"{self.verification.sentence()}")

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.config.precision, "scheme": self.config.scheme, "library": self.library,
                "layers": self.layers, "kept_fp32": [k.to_dict() for k in self.kept],
                "calibration": {"images": self.calibration_images, "batches": self.config.calibration_batches,
                                "batch_size": self.config.batch_size, "split": "train", "method": "min-max",
                                "per_channel_weights": self.config.per_channel,
                                "needed": self.config.precision == "int8"},
                "verification": self.verification.to_dict(), "seconds": round(self.seconds, 3),
                "sentence": self.sentence()}
