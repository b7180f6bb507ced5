"""What ``deploypipe build`` is asked to do, as one frozen value."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..prune.budget import Budget
from ..targets import TargetProfile
from .latency import LatencyOptions


@dataclass(frozen=True)
class BuildConfig:
    model: str  # a .pt/.pth/.pt2/.onnx file, or zoo:NAME (trained here first)
    out_dir: Path
    target: str | TargetProfile = "cpu"  # a profile's name or path, or one overridden by flags
    dataset: str | None = None
    method: str = "oneshot"
    method_params: dict[str, Any] = field(default_factory=dict)
    importance: str = "l1"
    allocation: str = "uniform"
    budget: Budget = field(default_factory=lambda: Budget("macs", 2.0, "reduction"))
    round_to: int | None = None  # None: the target profile's preferred multiple
    max_ratio: float = 0.9
    epochs: int = 5  # fine-tuning epochs after pruning
    pretrain_epochs: int = 15  # for zoo:NAME
    lr: float = 0.01
    pretrain_lr: float = 0.1
    batch_size: int = 128
    distill: bool = False
    augment: str = "none"  # training augmentation (deploypipe.train.augment)
    calibration_batches: int = 8
    seed: int = 0
    limit: int | None = None
    arch: str | None = None
    num_classes: int | None = None
    in_channels: int | None = None
    input_size: int | None = None
    trust_model: bool = False
    verify: bool = True
    profile_iterations: int | None = None
    latency: LatencyOptions = field(default_factory=LatencyOptions)  # for latency budgets
    quantize: str | None = None  # int8 or fp16 after fine-tuning (an int8 target implies int8)
    keep_fp32: tuple[str, ...] = ()  # Conv/Gemm node names (or first, last) left in fp32
    progress: bool = True
    command: str = ""

    @property
    def from_zoo(self) -> bool:
        return self.model.startswith("zoo:")

    @property
    def onnx_input(self) -> bool:
        return self.model.lower().endswith(".onnx")
