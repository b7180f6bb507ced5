"""Quantize one ONNX graph on a dataset: convert, verify on held-out images, and keep in
fp32 the layers that cost the most accuracy when the result misses its tolerance.

    data = load_dataset("digits")
    q = quantize_model(load_onnx("pruned.onnx"), data, QuantizeConfig("int8"))
    print(q.sentence())            # layers converted and kept, the verification
    save_onnx(q.model, "pruned.int8.onnx")
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import InputError, VerificationError
from ..utils.log import get_logger
from . import graph
from .config import QuantizeConfig
from .data import ImageInput, calibration_images, held_out, image_input
from .result import KeptLayer, Quantized
from .verify import Verification, run_cpu, verify

if TYPE_CHECKING:
    import onnx

    from ..data import DataSplits

log = get_logger("quantize")

CANDIDATES = 4  # layers tried, one at a time, for each layer kept in fp32 automatically


def quantize_model(model: "onnx.ModelProto", data: "DataSplits", config: QuantizeConfig = QuantizeConfig(),
                   where: str = "the model") -> Quantized:
    """``model`` in ``config.precision``, calibrated on ``data``'s training images and checked
    against ``model`` on its test images (``model`` itself is left unchanged)."""
    import onnxruntime

    start = time.perf_counter()
    if graph.is_quantized(model):
        raise InputError(f"{where} is already quantized (it has Q/DQ nodes or fp16 weights)",
                         hint="quantize its fp32 original instead")
    model = graph.named(model)
    image = image_input(model, where)
    x, y = held_out(data, config.verify_images)
    reference = run_cpu(model, image, x)
    with tempfile.TemporaryDirectory(prefix="deploypipe-quantize-") as tmp:
        convert, base, images = _converter(model, image, data, config, Path(tmp))
        asked = graph.resolve_keep(base, config.keep_fp32)

        def check(keep: Sequence[str]) -> tuple["onnx.ModelProto", Verification]:
            out = convert(keep)
            return out, verify(model, out, image, x, config.limits, y, reference)

        out, verdict, auto = _relieve(check, base, asked, config)
    kept = tuple([KeptLayer(n, "asked for (--keep-fp32)") for n in asked] + auto)
    return Quantized(out, config, graph.layer_precisions(out), kept, verdict, images,
                     time.perf_counter() - start, f"onnxruntime {onnxruntime.__version__} "
                     + ("quantize_static, QDQ format" if config.precision == "int8" else "transformers.float16"))


def _converter(model: "onnx.ModelProto", image: ImageInput, data: "DataSplits", config: QuantizeConfig,
               folder: Path) -> tuple[Callable[[Sequence[str]], "onnx.ModelProto"], "onnx.ModelProto", int]:
    """(keep -> converted graph, the graph the layer names refer to, calibration images)."""
    if config.precision == "fp16":
        from .half import convert_fp16

        return (lambda keep: convert_fp16(model, keep=keep)), model, 0
    from .int8 import prepare, quantize_int8

    prepared = prepare(model, folder)
    x = calibration_images(data, config.calibration_batches, config.batch_size, config.seed)
    feeds = [{image.name: b} for b in image.batches(x, config.batch_size)]
    return (lambda keep: quantize_int8(prepared, feeds, keep=keep, scheme=config.scheme,
                                       per_channel=config.per_channel, extra=config.extra)), prepared, len(x)


def _relieve(check, base: "onnx.ModelProto", asked: list[str], config: QuantizeConfig
             ) -> tuple["onnx.ModelProto", Verification, list[KeptLayer]]:
    """Convert keeping ``asked`` in fp32; while the result misses its tolerance, keep one
    more layer in fp32: of the first, the last and the layers with the noisiest int8
    weights, the one whose exclusion brings the verification closest to passing (at most
    ``config.max_auto_keep``; stops when no candidate helps)."""
    keep = list(asked)
    out, verdict = check(keep)
    auto: list[KeptLayer] = []
    while not verdict.passed and len(auto) < config.max_auto_keep:
        tries = []
        for name in _candidates(base, out, keep):
            tried, tried_verdict = check([*keep, name])
            tries.append((tried_verdict.score(), name, tried, tried_verdict))
        if not tries or max(tries, key=lambda t: t[0])[0] <= verdict.score():
            break
        _, name, out, after = max(tries, key=lambda t: t[0])
        (a0, e0), (a1, e1) = verdict.score(), after.score()
        auto.append(KeptLayer(name, f"kept automatically ({config.precision} missed its tolerance): top-1 agreement "
                                    f"{a0:.2%} -> {a1:.2%}, largest error {-e0:.3g} -> {-e1:.3g} times its tolerance"))
        log.info("keeping %s in fp32: %s", name, auto[-1].reason)
        keep.append(name)
        verdict = after
    return out, verdict, auto


def _candidates(base: "onnx.ModelProto", out: "onnx.ModelProto", keep: Sequence[str]) -> list[str]:
    """Layers worth keeping in fp32 next: the first and last, then by int8 weight SQNR, lowest first."""
    names = graph.layers(base)
    sqnr = graph.weight_sqnr(base, out)
    ranked = ([names[0], names[-1]] if names else []) + sorted(sqnr, key=sqnr.get)
    seen: list[str] = []
    for name in ranked:
        if name not in keep and name not in seen:
            seen.append(name)
    return seen[:CANDIDATES]


def quantize_file(src: str | Path, dst: str | Path, data: "DataSplits | str",
                  config: QuantizeConfig = QuantizeConfig(), *, check: bool = True, limit: int | None = None
                  ) -> Quantized:
    """:func:`quantize_model` from file to file (written atomically). ``data`` may be a dataset
    spec, loaded at the model's input channels and size (``limit`` images per split). With
    ``check``, a result that misses its tolerance is not written: :class:`VerificationError`."""
    from ..graph import load_onnx, save_onnx
    from ..utils.files import check_output_path
    from .data import load_images

    check_output_path(dst, src)
    model = load_onnx(src)
    if isinstance(data, str):
        data = load_images(data, image_input(model, repr(str(src))), seed=config.seed, limit=limit)
    result = quantize_model(model, data, config, where=repr(str(src)))
    if check and not result.passed:
        raise VerificationError(f"the {config.precision} model misses its tolerance: {result.verification.sentence()}",
                                hint="keep sensitive layers in fp32 with --keep-fp32 (or more with --max-auto-keep), "
                                     "calibrate on more batches, or pass --no-verify to write it anyway")
    save_onnx(result.model, dst)
    return result


def model_size(path: str | Path) -> int:
    """Bytes on disk of an ONNX file and its external data, if any."""
    path = Path(path)
    extra = path.with_name(path.name + ".data")
    return path.stat().st_size + (extra.stat().st_size if extra.is_file() else 0)

