"""From a suite's model specs to timeable cases: each (model, input shape) becomes one ONNX
file (zoo and checkpoint models are exported into a work folder), each batch one case."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..errors import InputError
from ..targets import TargetProfile
from ..utils.files import sha256_file
from ..utils.log import get_logger
from .suite import CHECKPOINT, ONNX, ZOO, ModelSpec, Suite

if TYPE_CHECKING:
    from torch import nn

log = get_logger("bench")


@dataclass(frozen=True)
class Case:
    """One timed unit: an ONNX file at one batch and per-sample input shape."""

    id: str
    onnx_path: Path
    batch: int
    shape: tuple[int, ...]
    model: dict
    onnx_sha256: str


def case_id(name: str, batch: int, shape: tuple[int, ...]) -> str:
    """``resnet20 b1 3x32x32``: how cases are matched between a run and its baseline."""
    return f"{name} b{batch} {'x'.join(map(str, shape))}"


def prepare_cases(suite: Suite, target: TargetProfile, workdir: Path) -> list[Case]:
    """Every case of ``suite`` on ``target``, exporting models into ``workdir``."""
    cases: list[Case] = []
    for spec in suite.models:
        batches = spec.batches or suite.batches or (target.batch,)
        for shape, path in _onnx_files(spec, target, workdir):
            digest = sha256_file(path)
            cases += [Case(case_id(spec.name, b, shape), path, b, shape, spec.describe(), digest)
                      for b in batches]
    return cases


def _onnx_files(spec: ModelSpec, target: TargetProfile,
                workdir: Path) -> Iterator[tuple[tuple[int, ...], Path]]:
    if spec.kind == ONNX:
        for shape in spec.shapes or (_onnx_shape(Path(spec.source), target),):
            yield shape, Path(spec.source)
        return
    for i, shape in enumerate(spec.shapes or (None,)):
        model, shape = _torch_model(spec, shape)
        path = workdir / f"{spec.name}-{i}.onnx"
        _export(model, path, shape)
        yield shape, path


def _torch_model(spec: ModelSpec, shape: tuple[int, ...] | None) -> tuple["nn.Module", tuple[int, ...]]:
    """The PyTorch model of a zoo or checkpoint spec and its per-sample input shape."""
    if spec.kind == ZOO:
        return _zoo_model(spec, shape)
    if spec.kind == CHECKPOINT:
        return _checkpoint_model(spec, shape)
    raise ValueError(f"not a PyTorch model kind: {spec.kind}")


def _zoo_model(spec: ModelSpec, shape: tuple[int, ...] | None) -> tuple["nn.Module", tuple[int, ...]]:
    import torch

    from ..models import create_model, model_info

    shape = shape or tuple(model_info(spec.source).default_input)
    if len(shape) != 3:
        raise InputError(f"model {spec.name!r}: shape {list(shape)} is not (C, H, W)",
                         hint="give zoo models shapes such as [3, 32, 32]")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same weights every run: same file, same digest
        model = create_model(spec.source, in_channels=shape[0], input_size=shape[1:],
                             **dict(spec.kwargs))
    return model, shape


def _checkpoint_model(spec: ModelSpec, shape: tuple[int, ...] | None) -> tuple["nn.Module", tuple[int, ...]]:
    from ..checkpoint import load_model
    from ..models import list_models, model_info

    loaded = load_model(spec.source, arch=spec.arch, trust_model=spec.trust)
    shape = shape or loaded.input_shape
    if shape is None and loaded.arch in list_models(include_test=True):
        shape = tuple(model_info(loaded.arch).default_input)
    if shape is None:
        raise InputError(f"model {spec.name!r}: the checkpoint does not say its input shape",
                         hint="give it in the suite with shapes = [[3, 224, 224]]")
    return loaded.model, tuple(shape)


def _export(model: "nn.Module", path: Path, shape: tuple[int, ...]) -> None:
    from ..export import export_onnx

    info = export_onnx(model, path, input_shape=(1, *shape))
    log.debug("exported %s in %.2f s", path.name, info.seconds)


def _onnx_shape(path: Path, target: TargetProfile) -> tuple[int, ...]:
    """The per-sample shape of an ONNX model's first input, or the target's input_shape
    where the model leaves a dimension open."""
    import onnx

    from ..profiling import check_onnx_file

    model = onnx.load(str(check_onnx_file(path)), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    first = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in first.type.tensor_type.shape.dim][1:]
    if all(isinstance(d, int) and d > 0 for d in dims):
        return tuple(dims)
    if target.input_shape is not None:
        return target.input_shape
    raise InputError(f"ONNX model {str(path)!r} has open input dimensions {dims}",
                     hint="give its shape in the suite with shapes = [[3, 224, 224]]")


def count_models(cases: list[Case]) -> int:
    """How many distinct ONNX files the cases use."""
    return len({c.onnx_path for c in cases})
