"""What ``deploypipe build`` is asked to do, as one frozen value made of small groups.

Every field has a default but the model, so a build is set up from Python as tersely as

    BuildConfig("zoo:resnet20", target="cpu-batch32", budget=Budget("latency", 0.5),
                data=DataOptions("digits"), output=OutputOptions(Path("runs/demo")))

The CLI builds it once from its option groups (``deploypipe.cli.build.config_from_args``);
both build paths read it directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..prune.budget import Budget
from ..utils.checks import at_least, fraction
from ..targets import TargetProfile
from .latency import LatencyOptions


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from, and what a plain state_dict or file does not say."""

    path: str  # a .pt/.pth/.pt2/.onnx file, or zoo:NAME (trained here first)
    arch: str | None = None  # architecture of a plain state_dict: zoo name or package.module:factory
    num_classes: int | None = None
    in_channels: int | None = None
    input_size: int | None = None  # square input size in pixels
    trust_model: bool = False  # allow pickled Python objects
    module: Any = None  # an nn.Module given from Python (path then only names it); copied, never changed
    input_shape: tuple[int, int, int] | None = None  # (C, H, W) of the input (from Python's example_inputs)

    @property
    def from_zoo(self) -> bool:
        return self.module is None and self.path.startswith("zoo:")

    @property
    def zoo_name(self) -> str:
        return self.path[4:]

    @property
    def onnx_input(self) -> bool:
        return self.module is None and self.path.lower().endswith(".onnx")


@dataclass(frozen=True)
class DataOptions:
    """The images for accuracy, calibration and training (None: prune by weights only)."""

    dataset: str | None = None
    limit: int | None = None  # at most this many images per split
    calibration_batches: int = 8  # batches of 64, for data-driven criteria and int8 calibration
    mean: tuple[float, ...] | None = None  # the model's normalisation (per channel), over the data's own
    std: tuple[float, ...] | None = None
    splits: Any = None  # DataSplits given from Python (the API's loaders); ``dataset`` then names them
    eval_fn: Any = None  # model -> accuracy in [0, 1], used instead of the test split's top-1

    @property
    def has_training(self) -> bool:
        """Training images: a named dataset, or loaders from Python with a training split (a
        test set alone is only measured on)."""
        return self.splits.has_training if self.splits is not None else self.dataset is not None


@dataclass(frozen=True)
class TrainOptions:
    """Training of a zoo model before pruning and fine-tuning after it; the SGD settings
    (batch size to max_steps_per_epoch) apply to both, as :class:`deploypipe.train.TrainConfig`."""

    epochs: int = 5  # fine-tuning epochs after pruning (0: none)
    lr: float = 0.01
    pretrain_epochs: int = 15  # for zoo:NAME
    pretrain_lr: float = 0.1
    distill: bool = False  # fine-tune with distillation from the dense model
    batch_size: int = 128
    augment: str = "none"  # deploypipe.train.augment
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    max_steps_per_epoch: int | None = None
    device: str | None = None  # where training and fine-tuning run (None: the CPU)
    amp: bool = False  # bfloat16 autocast while training

    def __post_init__(self) -> None:
        for name in ("epochs", "pretrain_epochs", "warmup_epochs", "weight_decay"):
            at_least(name, getattr(self, name), 0)
        for name in ("lr", "pretrain_lr"):
            at_least(name, getattr(self, name), 0, strictly=True)
        at_least("batch_size", self.batch_size, 1)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"label_smoothing {self.label_smoothing!r} must be at least 0 and below 1",
                             hint="0.1 is usual")
        if self.device is not None:
            from ..train.device import check_device

            check_device(self.device)  # before a model is loaded or pruned

    def sgd(self, epochs: int, lr: float, *, seed: int, progress: bool, distill: bool, placed: bool = True):
        """The :class:`~deploypipe.train.TrainConfig` of one training stage; ``placed``: on
        ``device`` with ``amp`` (methods that prune while they train run on the CPU)."""
        from ..train import DistillConfig, TrainConfig
        from ..train.device import device_options

        where = device_options(self.device, self.amp) if placed else {}
        return TrainConfig(epochs=epochs, lr=lr, batch_size=self.batch_size, schedule=self.schedule,
                           warmup_epochs=self.warmup_epochs, weight_decay=self.weight_decay,
                           label_smoothing=self.label_smoothing, max_steps_per_epoch=self.max_steps_per_epoch,
                           seed=seed, progress=progress, distill=DistillConfig() if distill else None,
                           augment=self.augment, **where)


# What a build uses for the method, criterion and allocation it was not given. With training
# data, a PyTorch model and a MACs budget, and none of the three given: CPLI (least-squares
# refit of the consumers) on the widths of Fisher importance per MAC, rounded to the target's
# multiple. On CIFAR-10 it had the lowest error of every rounded variant measured, against
# L1 uniform and against Torch-Pruning, from the same dense models with the same fine-tuning
# (resnet20 three seeds, resnet56, mobilenet_v2: benchmarks/results/cifar10.json). It needs
# data (Fisher scores and the refit), which an ONNX file or a build without --dataset lacks,
# and it has not been measured under parameter, ratio or latency budgets: those keep the
# classic one-shot L1 uniform pruning.
CLASSIC = {"method": "oneshot", "importance": "l1", "allocation": "uniform"}
DATA_DRIVEN = {"method": "cpli", "importance": "fisher", "allocation": "per-cost"}


@dataclass(frozen=True)
class PruneOptions:
    """How channels are chosen: the method, its criterion and allocation, and the limits.
    ``None`` for the first three: the build chooses (:meth:`chosen`)."""

    method: str | None = None
    method_params: dict[str, Any] = field(default_factory=dict)
    importance: str | None = None
    allocation: str | None = None
    round_to: int | None = None  # None: the target profile's preferred multiple
    max_ratio: float = 0.9  # most a single group may lose
    bn_batches: int = 20  # training batches that re-estimate BatchNorm statistics after pruning (0: none)

    chosen_by: str | None = None  # why the build chose method, importance and allocation (None: given or classic)
    defaulted: tuple[tuple[str, str], ...] = ()  # (option, value) the build filled in (chosen again on a replace())

    def __post_init__(self) -> None:
        """The command line's limits, for values given from Python too."""
        if self.round_to is not None:
            at_least("round_to", self.round_to, 1)
        fraction("max_ratio", self.max_ratio, hint="it is the most one group may lose, e.g. 0.9")
        at_least("bn_batches", self.bn_batches, 0)

    def chosen(self, *, data: bool, torch_model: bool, budget_kind: str) -> "PruneOptions":
        """These options with the method, importance and allocation not given filled in: the
        data-driven default (saying why in ``chosen_by``) or the classic one. Options chosen
        before are chosen again, so a config copied with another budget or data re-decides."""
        filled_before = dict(self.defaulted)  # an option still at the value the build filled in is not given
        given = {k: getattr(self, k) for k in CLASSIC
                 if getattr(self, k) is not None and filled_before.get(k) != getattr(self, k)}
        if not given and data and torch_model and budget_kind == "macs":
            return replace(self, **DATA_DRIVEN, defaulted=tuple(DATA_DRIVEN.items()), chosen_by=(
                "the default with training data and a MACs budget: CPLI on the widths of Fisher importance per MAC "
                f"({' '.join(f'--{k} {v}' for k, v in CLASSIC.items())}: the classic default)"))
        filled = {k: v for k, v in CLASSIC.items() if k not in given}
        return replace(self, **filled, **given, defaulted=tuple(filled.items()), chosen_by=None)


@dataclass(frozen=True)
class QuantizeOptions:
    """The quantize stage after fine-tuning (an int8 target implies int8)."""

    precision: str | None = None  # int8, fp16, or None
    keep_fp32: tuple[str, ...] = ()  # Conv/Gemm node names (or first, last) left in fp32


@dataclass(frozen=True)
class OutputOptions:
    """Where results go and how they are shown: no stage's result depends on these."""

    out_dir: Path = Path("deploypipe-run")
    progress: bool = True
    command: str = ""  # recorded in the report


@dataclass(frozen=True)
class BuildConfig:
    model: ModelSource | str  # a path or zoo:NAME becomes ModelSource(path)
    target: str | TargetProfile = "cpu"  # a profile's name or path, or one overridden by flags
    budget: Budget = field(default_factory=lambda: Budget("macs", 2.0, "reduction"))
    data: DataOptions = field(default_factory=DataOptions)
    train: TrainOptions = field(default_factory=TrainOptions)
    prune: PruneOptions = field(default_factory=PruneOptions)
    latency: LatencyOptions = field(default_factory=LatencyOptions)  # for latency budgets
    quantize: QuantizeOptions = field(default_factory=QuantizeOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    seed: int = 0  # data split, initialisation, training order, scores, calibration
    verify: bool = True  # False: record verification results without failing on them
    profile_iterations: int | None = None  # None: the target's

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            object.__setattr__(self, "model", ModelSource(self.model))
        object.__setattr__(self, "prune", self.prune.chosen(data=self.data.has_training,
                                                            torch_model=not self.model.onnx_input,
                                                            budget_kind=self.budget.kind))

    @property
    def out_dir(self) -> Path:
        return Path(self.output.out_dir)
