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
from .python_terms import speaks_python

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


def _train_keywords() -> set[str]:
    """The keywords ``build`` forwards to TrainOptions."""
    import dataclasses

    from .pipeline.config import TrainOptions

    return {f.name for f in dataclasses.fields(TrainOptions)}


@speaks_python(extra=_train_keywords)  # **train_options
def build(model: Any, example_inputs: Any = None, *, train_loader: Any = None, test_loader: Any = None,
          eval_fn: Callable[[Any], float] | None = None, dataset: str | None = None, target: Any = "cpu",
          budget: Any = "macs:2x", method: str | None = None, importance: str | None = None,
          allocation: str | None = None,
          epochs: int | None = None, lr: float = 0.01, output: str | Path = "deploypipe-run", round_to: int | None = None,
          seed: int = 0, progress: bool = False, arch: str | None = None, trust_model: bool = False,
          **train_options: Any) -> BuildResult:
    """Prune ``model`` (an ``nn.Module``, or a checkpoint / ONNX path) for ``target`` to
    ``budget`` and return the result. ``example_inputs``: a tensor (N, C, H, W) or its shape,
    needed for a module when no data tells the input size. ``train_loader`` (and
    ``test_loader``) yield ``(images, labels)`` batches; ``dataset`` names a deploypipe dataset
    instead (``"digits"``, ``"cifar10:PATH"``, ``"py:file.py:load"``). ``arch``: the architecture
    of a checkpoint that is a plain state_dict (a zoo name or ``package.module:factory``);
    ``trust_model=True`` loads a checkpoint that pickles the whole module (it runs code from
    the file: only one whose source you trust). ``test_loader`` alone
    measures accuracy and nothing more: nothing is fine-tuned, scored or calibrated on the
    images accuracy is measured on. ``epochs``: fine-tuning epochs (default 3 with training
    data, 0 without). ``train_options`` go to
    :class:`~deploypipe.pipeline.config.TrainOptions` (``batch_size``, ``augment``, ``device="cuda"``,
    ``amp=True``, ...). ``method``, ``importance``, ``allocation``: as ``deploypipe build``'s
    options; none given, with data and a MACs budget, the build prunes by CPLI on Fisher-per-MAC
    widths, else one-shot L1 uniform (:class:`~deploypipe.pipeline.config.PruneOptions`)."""
    import dataclasses

    from .data.user import splits_from_loaders
    from .pipeline.build import build_with_model
    from .pipeline.config import BuildConfig, DataOptions, OutputOptions, PruneOptions, TrainOptions
    from .prune.call import parse_budget

    known = {f.name for f in dataclasses.fields(TrainOptions)} - {"epochs", "lr"}
    unknown = sorted(set(train_options) - known)
    if unknown:
        raise InputError(f"build() takes no option {unknown[0]!r}",
                         hint=f"training options are {', '.join(sorted(known))}")
    source = _source(model, example_inputs, arch, trust_model)
    splits = (splits_from_loaders(train_loader, test_loader, source.input_shape)
              if train_loader is not None or test_loader is not None else None)
    if splits is not None and dataset is not None:
        raise InputError("both loaders and a dataset were given", hint="pass train_loader/test_loader or dataset")
    data = DataOptions(dataset=dataset or (splits.name if splits else None), splits=splits, eval_fn=eval_fn)
    _check_finetuning(epochs, train_options.get("distill"), source, data)
    epochs = (3 if data.has_training else 0) if epochs is None else epochs
    config = BuildConfig(
        source, target=target, budget=parse_budget(budget),
        data=data,
        train=TrainOptions(epochs=epochs, lr=lr, **train_options),
        prune=PruneOptions(method=method, importance=importance, allocation=allocation, round_to=round_to),
        output=OutputOptions(Path(output), progress=progress, command="deploypipe.build(...)"), seed=seed)
    report, pruned = build_with_model(config)
    return BuildResult(pruned, report, Path(output))


def _check_finetuning(epochs: int | None, distill: bool | None, source, data) -> None:
    """``epochs`` or ``distill`` asked of a build that cannot fine-tune, refused rather than dropped."""
    trains, epochs = data.has_training, epochs or 0  # a negative count is refused by TrainOptions
    if epochs > 0 and not trains:
        raise InputError(f"epochs={epochs} asks for fine-tuning, but no training data was given"
                         + (" (only a test_loader, which is never trained on)" if data.splits else ""),
                         hint="pass train_loader (or dataset), or leave epochs out")
    if epochs > 0 and source.onnx_input:
        raise InputError(f"epochs={epochs} asks for fine-tuning, and an ONNX file is not fine-tuned",
                         hint="pass the nn.Module or its checkpoint, or leave epochs out")
    if distill and not trains:
        raise InputError("distill=True distils the dense model into the pruned one while fine-tuning, "
                         "but no training data was given", hint="pass train_loader (or dataset), or leave distill out")


def _source(model: Any, example_inputs: Any, arch: str | None = None, trust_model: bool = False):
    from .pipeline.config import ModelSource
    from .prune.call import input_shape

    if isinstance(model, (str, Path)):  # example_inputs: the input a checkpoint does not record
        shape = None if str(model).lower().endswith(".onnx") else input_shape(example_inputs)
        return ModelSource(str(model), arch=arch, trust_model=trust_model, input_shape=shape)
    import torch

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model is a {type(model).__name__}, not an nn.Module or a file path",
                         hint="pass the torch.nn.Module, or the path of a checkpoint or ONNX file")
    shape = input_shape(example_inputs)
    name = type(model).__name__
    return ModelSource(f"<{name} from Python>", module=model, input_shape=shape)


__all__ = ["BuildResult", "build"]
