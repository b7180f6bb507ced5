"""deploypipe from Python: ``deploypipe.build(model, example_inputs, ...)`` runs the same
pipeline as ``deploypipe build`` (prune, fine-tune, export, verify, profile, report) on a
module and data of the caller's own, and returns the pruned module with the report.

    import deploypipe
    result = deploypipe.build(net, torch.randn(1, 3, 32, 32), train_loader=train, eval_fn=accuracy,
                              target="cpu-batch32", budget="latency:0.6", output="runs/mynet")
    result.model            # the pruned nn.Module (a copy: ``net`` is not changed)
    result.report.pruned    # accuracy (from eval_fn), MACs, params, measured latency
    result.pruned_onnx      # the verified ONNX file, as the target runs it

The caller's loaders are read once into tensors exactly as they yield them (their own
preprocessing kept: nothing is re-normalised); fine-tuning shuffles those tensors with the
build's seed, and ``eval_fn(model) -> accuracy in [0, 1]`` replaces the test split's top-1.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import InputError

BUDGET_KINDS = ("ratio", "macs", "params", "latency")


@dataclass(frozen=True)
class BuildResult:
    """What a build returns: the pruned module (None for an ONNX input), the typed report
    (also ``report.json``) and where the files are."""

    model: Any  # torch.nn.Module
    report: Any  # deploypipe.report.schema.BuildReport
    out_dir: Path

    @property
    def dense_onnx(self) -> Path:
        return self.out_dir / "dense.onnx"

    @property
    def pruned_onnx(self) -> Path:
        return self.out_dir / "pruned.onnx"

    @property
    def checkpoint(self) -> Path | None:
        path = self.out_dir / "pruned.pt"
        return path if path.exists() else None


def parse_budget(budget: Any):
    """``"macs:2x"``, ``"latency:0.6"`` (of dense), ``"latency:5ms"``, ``"ratio:0.3"``,
    ``"params:0.5"``, a bare ``"2x"`` (MACs), or a :class:`~deploypipe.prune.budget.Budget`."""
    from .prune.budget import Budget

    if isinstance(budget, Budget):
        return budget
    kind, sep, value = str(budget).partition(":")
    if not sep:
        kind, value = "macs", kind
    if kind.strip() not in BUDGET_KINDS:
        raise InputError(f"budget {budget!r} names no budget kind",
                         hint=f"write KIND:VALUE with KIND one of {', '.join(BUDGET_KINDS)}, e.g. 'latency:0.6'")
    return Budget.parse(kind.strip(), value)


def build(model: Any, example_inputs: Any = None, *, train_loader: Any = None, test_loader: Any = None,
          eval_fn: Callable[[Any], float] | None = None, dataset: str | None = None, target: Any = "cpu",
          budget: Any = "macs:2x", method: str = "oneshot", importance: str = "l1", allocation: str = "uniform",
          epochs: int = 3, lr: float = 0.01, output: str | Path = "deploypipe-run", round_to: int | None = None,
          seed: int = 0, progress: bool = False, **train_options: Any) -> BuildResult:
    """Prune ``model`` (an ``nn.Module``, or a checkpoint / ONNX path) for ``target`` to
    ``budget`` and return the result. ``example_inputs``: a tensor (N, C, H, W) or its shape,
    needed for a module when no data tells the input size. ``train_loader`` (and
    ``test_loader``) yield ``(images, labels)`` batches; ``dataset`` names a deploypipe dataset
    instead (``"digits"``, ``"cifar10:PATH"``, ``"py:file.py:load"``). ``train_options`` go to
    :class:`~deploypipe.pipeline.config.TrainOptions` (``batch_size``, ``augment``, ...)."""
    from .pipeline.build import build_with_model
    from .pipeline.config import BuildConfig, DataOptions, OutputOptions, PruneOptions, TrainOptions

    source = _source(model, example_inputs)
    splits = _splits(train_loader, test_loader, source.input_shape) if train_loader or test_loader else None
    if splits is not None and dataset is not None:
        raise InputError("both loaders and a dataset were given", hint="pass train_loader/test_loader or dataset")
    config = BuildConfig(
        source, target=target, budget=parse_budget(budget),
        data=DataOptions(dataset=dataset or (splits.name if splits else None), splits=splits, eval_fn=eval_fn),
        train=TrainOptions(epochs=epochs if splits or dataset else 0, lr=lr, **train_options),
        prune=PruneOptions(method=method, importance=importance, allocation=allocation, round_to=round_to),
        output=OutputOptions(Path(output), progress=progress, command="deploypipe.build(...)"), seed=seed)
    report, pruned = build_with_model(config)
    return BuildResult(pruned, report, Path(output))


def _source(model: Any, example_inputs: Any):
    from .pipeline.config import ModelSource

    if isinstance(model, (str, Path)):
        return ModelSource(str(model))
    import torch

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model is a {type(model).__name__}, not an nn.Module or a file path",
                         hint="pass the torch.nn.Module, or the path of a checkpoint or ONNX file")
    shape = _input_shape(example_inputs)
    name = type(model).__name__
    return ModelSource(f"<{name} from Python>", module=model, input_shape=shape)


def _input_shape(example_inputs: Any) -> tuple[int, int, int] | None:
    if example_inputs is None:
        return None
    shape = tuple(getattr(example_inputs, "shape", example_inputs))
    if len(shape) != 4 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise InputError(f"example_inputs has shape {shape}, not (N, C, H, W)",
                         hint="pass one batch of images, e.g. torch.randn(1, 3, 32, 32)")
    return shape[1], shape[2], shape[3]


def _splits(train_loader: Any, test_loader: Any, input_shape):
    """The caller's loaders as deploypipe's train/val/test tensors (val: the test data, used
    only for the per-epoch log line), their preprocessing kept."""
    import torch
    from torch.utils.data import TensorDataset

    from .data import DataSplits
    from .data.user import to_arrays

    parts = {k: to_arrays(v, f"{k}_loader") for k, v in (("train", train_loader), ("test", test_loader)) if v}
    parts.setdefault("train", parts.get("test"))
    parts.setdefault("test", parts["train"])
    sets = {k: TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64))
            for k, (x, y) in parts.items()}
    x = sets["train"].tensors[0]
    if x.ndim != 4:
        raise InputError(f"the loader yields images of shape {tuple(x.shape[1:])}, not (C, H, W)",
                         hint="yield batches of (N, C, H, W) images")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise InputError(f"the loader yields images of shape {tuple(x.shape[1:])} but example_inputs "
                         f"says {tuple(input_shape)}", hint="make them agree")
    labels = torch.cat([s.tensors[1] for s in sets.values()])
    channels = int(x.shape[1])
    return DataSplits(name="python loaders", train=sets["train"], val=sets["test"], test=sets["test"],
                      num_classes=int(labels.max()) + 1, in_channels=channels, image_size=tuple(x.shape[2:]),
                      source="the caller's DataLoaders, as they yield the images",
                      mean=(0.0,) * channels, std=(1.0,) * channels)


__all__ = ["BuildResult", "build", "parse_budget"]
