"""PyTorch to ONNX, keeping what the rest of the pipeline relies on, and checked.

The TorchScript exporter (``dynamo=False``) with ``TrainingMode.PRESERVE`` on a model in
eval mode keeps every BatchNormalization as its own node and every parameter's torch name
as its initializer's name (``layer1.0.conv1.weight``, ``bn.running_mean``): channel groups
found on the ONNX graph then map back to torch parameters by name; the dynamo exporter
folds BatchNorm and renames tensors.

``verify_onnx`` compares ONNX Runtime (CPU) with PyTorch on seeded random inputs and says
which tolerance would have passed, as Polygraphy does.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .errors import InputError, UnsupportedError, VerificationError
from .utils.closeness import compare_arrays
from .utils.files import write_with
from .utils.log import get_logger
from .utils.outputs import flat_tensors

if TYPE_CHECKING:  # torch and onnx load lazily: `deploypipe --help` must not need them
    import onnx
    import torch

log = get_logger("export")

DEFAULT_OPSET = 17
Shape = tuple[int | str, ...]


@dataclass(frozen=True)
class ExportInfo:
    """What was written: the file, the opset really in it, its inputs and outputs."""

    path: Path
    opset: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_shapes: dict[str, Shape]
    output_shapes: dict[str, Shape]
    seconds: float


@dataclass(frozen=True)
class ParityReport:
    """ONNX Runtime against PyTorch over all trials and outputs.

    An element passes when ``|ort - torch| <= atol + rtol * |torch|`` (the rule of
    :mod:`deploypipe.utils.closeness`, per element). ``passing_atol`` is the smallest atol
    that would have passed at this rtol, ``passing_rtol`` the smallest rtol at this atol
    (infinite when a reference value is exactly zero); ``worst`` names the worst element."""

    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    passed: bool
    passing_atol: float
    passing_rtol: float
    trials: int
    batch: int
    worst: str = ""

    def summary(self) -> str:
        return (f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g} "
                f"(atol {self.atol:g}, rtol {self.rtol:g}, {self.trials} trials at batch "
                f"{self.batch}): {'passed' if self.passed else 'FAILED'}")

    def check(self) -> "ParityReport":
        """Raise :class:`VerificationError` (one sentence with the numbers) unless passed."""
        if not self.passed:
            raise VerificationError(
                f"ONNX Runtime and PyTorch outputs differ by up to {self.max_abs:.3g} absolute "
                f"and {self.max_rel:.3g} relative, beyond atol {self.atol:g} and rtol "
                f"{self.rtol:g}{f' ({self.worst})' if self.worst else ''}; it would pass "
                f"with atol {self.passing_atol:.3g} or rtol {self.passing_rtol:.3g}",
                hint="loosen --atol/--rtol if that is acceptable for this model")
        return self

    def to_dict(self) -> dict[str, float | bool | int]:
        return dict(self.__dict__)


def export_onnx(model: "torch.nn.Module", path: str | Path, *, input_shape: tuple[int, ...],
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = True,
                input_name: str = "input", output_name: str = "logits") -> ExportInfo:
    """Export ``model`` for an input of ``input_shape`` (N, C, H, W) to ``path``, atomically.

    The model runs in eval mode during export and gets its own modes back afterwards.
    Fails when the file's opset differs from ``opset`` or a parameter lost its name.
    """
    import onnx

    input_shape = _check_shape(input_shape)
    start = time.perf_counter()
    with _eval_mode(model):
        example = _example_input(model, input_shape)
        output_names = _output_names(model, example, output_name)
        proto = _to_proto(model, example, opset, input_name, output_names, dynamic_batch)
    params = _named_tensors(model)
    _undo_deduplication(proto, params)
    _check_param_names(proto, params)

    def write(tmp: Path) -> None:
        onnx.save(proto, str(tmp))
        _check_opset(_read_opset(tmp), opset)

    path = write_with(path, write)
    info = _info(path, proto, opset, time.perf_counter() - start)
    log.debug("exported %s (opset %d) in %.2f s", path, opset, info.seconds)
    return info


def verify_onnx(model: "torch.nn.Module", onnx_path: str | Path, *, batch: int = 2,
                trials: int = 3, atol: float = 1e-4, rtol: float = 1e-3,
                seed: int = 0) -> ParityReport:
    """Run PyTorch and ONNX Runtime (CPU) on ``trials`` seeded random inputs and compare."""
    import torch

    session = _ort_session(onnx_path)
    inp, names = session.get_inputs()[0], [o.name for o in session.get_outputs()]
    shape = tuple(d if isinstance(d, int) else batch for d in inp.shape)
    rng = np.random.default_rng(seed)
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    with _eval_mode(model), torch.no_grad():
        device = _device(model)
        for _ in range(trials):
            x = rng.standard_normal(shape).astype(np.float32)
            ref = _flat_outputs(_forward(model, torch.from_numpy(x).to(device)))
            got = session.run(None, {inp.name: x})
            if len(ref) != len(got):
                raise VerificationError(f"PyTorch gives {len(ref)} outputs but the ONNX model "
                                        f"{len(got)}", hint="export the model again")
            pairs += zip(ref, got)
    c = compare_arrays(pairs, atol=atol, rtol=rtol)
    return ParityReport(max_abs=c.max_abs, max_rel=c.max_rel, atol=atol, rtol=rtol,
                        passed=c.passed, passing_atol=c.passing_atol,
                        passing_rtol=c.passing_rtol, trials=trials,
                        batch=shape[0] if shape else 1, worst=c.worst(len(names), names))


# --- export steps -------------------------------------------------------------------------

@contextlib.contextmanager
def _eval_mode(model: "torch.nn.Module") -> Iterator[None]:
    """Eval mode for the block, then every submodule's own mode back. A ``torch.export``
    program's module has its mode baked in and refuses ``eval()``; it is left as it is."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
    except NotImplementedError:
        modes = {}
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) < 2 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise InputError(f"input shape {shape} is not a list of positive sizes (N, C, ...)",
                         hint="give it as 1x3x32x32")
    return shape


def _device(model: "torch.nn.Module") -> "torch.device":
    import torch

    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _example_input(model: "torch.nn.Module", shape: tuple[int, ...]) -> "torch.Tensor":
    import torch

    gen = torch.Generator().manual_seed(0)  # a local generator: global RNG untouched
    return torch.randn(shape, generator=gen).to(_device(model))


def _output_names(model: "torch.nn.Module", example: "torch.Tensor", first: str) -> list[str]:
    """``first`` for a single output; ``first``, ``first_1``, ... for several."""
    import torch

    try:
        with torch.no_grad():
            outputs = _flat_outputs(model(example))
    except Exception as exc:
        raise InputError(f"the model fails on an input of shape {tuple(example.shape)}: "
                         f"{_first_line(exc)}", hint="check --input-shape") from None
    return [first] + [f"{first}_{i}" for i in range(1, len(outputs))]


def _forward(model: "torch.nn.Module", x: "torch.Tensor") -> object:
    try:
        return model(x)
    except Exception as exc:  # e.g. a torch.export program whose batch is fixed
        raise UnsupportedError(f"PyTorch fails on a check input of shape {tuple(x.shape)}: "
                               f"{_first_line(exc)}",
                               hint="if the model has a fixed batch, export with "
                               "--no-dynamic-batch") from None


def _flat_outputs(out: object) -> list[np.ndarray]:
    return [t.detach().cpu().numpy() for t in flat_tensors(
        out, hint="export a model whose forward returns a tensor or a tuple of them")]


def _to_proto(model: "torch.nn.Module", example: "torch.Tensor", opset: int, input_name: str,
              output_names: list[str], dynamic_batch: bool) -> "onnx.ModelProto":
    import onnx
    import torch

    axes = {n: {0: "batch"} for n in [input_name, *output_names]} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*constant folding.*")
        try:
            torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset,
                              training=torch.onnx.TrainingMode.PRESERVE,
                              input_names=[input_name], output_names=output_names,
                              dynamic_axes=axes, do_constant_folding=True)
        except Exception as exc:  # the exporter's many error types, all about the model/opset
            raise UnsupportedError(f"PyTorch cannot export this model to ONNX opset {opset}: "
                                   f"{_first_line(exc)}",
                                   hint="try another --opset or replace the unsupported op") from None
    return onnx.load_from_string(buf.getvalue())


def _named_tensors(model: "torch.nn.Module") -> dict[str, np.ndarray]:
    """Parameters and buffers by torch name (BatchNorm's step counter left out)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()
            if v.is_floating_point()}


def _undo_deduplication(proto: "onnx.ModelProto", params: dict[str, np.ndarray]) -> None:
    """The exporter stores equal-valued parameters once and aliases the others through
    ``Identity`` nodes (common in a freshly initialised model: every BatchNorm weight is 1).
    Give each aliased parameter its own initializer under its own name again."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    keep = []
    for node in proto.graph.node:
        if (node.op_type == "Identity" and node.input[0] in inits
                and node.output[0] in params and node.output[0] not in inits):
            copy = numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]),
                                           node.output[0])
            proto.graph.initializer.append(copy)
            inits[copy.name] = copy
        else:
            keep.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)


def _check_param_names(proto: "onnx.ModelProto", params: dict[str, np.ndarray]) -> None:
    """Every initializer that holds a parameter's values must carry that parameter's name."""
    from onnx import numpy_helper

    names = {i.name for i in proto.graph.initializer}
    missing = {_digest(v): k for k, v in params.items() if k not in names}
    if not missing:
        return
    renamed = [f"{missing[d]} -> {i.name}" for i in proto.graph.initializer
               if i.name not in params
               and (d := _digest(numpy_helper.to_array(i))) in missing]
    if renamed:
        raise VerificationError(f"the ONNX export renamed parameters ({', '.join(renamed[:3])})",
                                hint="please report this model; channel groups could not be "
                                "mapped back to torch parameters")


def _digest(a: np.ndarray) -> tuple:
    a = np.ascontiguousarray(a)
    return a.shape, a.dtype.str, hashlib.sha1(a.tobytes()).hexdigest()


def _read_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), -1)


def _check_opset(found: int, asked: int) -> None:
    if found != asked:
        raise UnsupportedError(f"asked for ONNX opset {asked} but the exporter wrote opset {found}",
                               hint=f"use --opset {found} or an opset this PyTorch supports")


def _info(path: Path, proto: "onnx.ModelProto", opset: int, seconds: float) -> ExportInfo:
    ins = {v.name: _shape(v) for v in proto.graph.input}
    outs = {v.name: _shape(v) for v in proto.graph.output}
    return ExportInfo(path=Path(path), opset=opset, input_names=tuple(ins),
                      output_names=tuple(outs), input_shapes=ins, output_shapes=outs,
                      seconds=seconds)


def _shape(value_info) -> Shape:
    return tuple(d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim)


# --- verification -------------------------------------------------------------------------

def _ort_session(onnx_path: str | Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types, all with text
        from .utils.ort_session import load_refusal

        raise load_refusal(repr(str(onnx_path)), exc) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def export_and_verify(model: "torch.nn.Module", path: str | Path, *, input_shape: tuple[int, ...],
                      opset: int = DEFAULT_OPSET, dynamic_batch: bool = True,
                      input_name: str = "input", output_name: str = "logits",
                      atol: float = 1e-4, rtol: float = 1e-3,
                      trials: int = 3) -> tuple[ExportInfo, ParityReport]:
    """``export_onnx`` then ``verify_onnx``; ``path`` appears only if the outputs agree within
    tolerance (else :class:`VerificationError` and an earlier file at ``path`` is kept)."""
    from .utils.files import atomic_path

    with atomic_path(path) as tmp:
        info = export_onnx(model, tmp, input_shape=input_shape, opset=opset,
                           dynamic_batch=dynamic_batch, input_name=input_name,
                           output_name=output_name)
        batch = 2 if dynamic_batch else input_shape[0]
        report = verify_onnx(model, tmp, batch=batch, trials=trials, atol=atol, rtol=rtol).check()
    return dataclasses.replace(info, path=Path(path)), report
