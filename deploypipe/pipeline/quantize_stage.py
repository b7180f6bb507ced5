"""The quantize stage of ``deploypipe build``: after fine-tuning, ``pruned.onnx`` becomes
``pruned.int8.onnx`` (or ``.fp16.onnx``), calibrated on the build's training images and
verified against ``pruned.onnx`` on its test images; the report then puts dense fp32, pruned
fp32 and pruned quantized side by side.

What the build quantizes to: ``--quantize``, or int8 when the target's precision is int8
(its graph must carry Q/DQ nodes: ``cpu-int8``, ``gpu-trt-int8``). The fp32 files are then
measured on the target at fp32, the quantized one at its precision; with a latency budget
the table and the loop time quantized models (:class:`deploypipe.quantize.TimingQuantizer`).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BudgetError, InputError
from ..targets import TargetProfile
from ..utils.log import get_logger
from .speed import on_cpu, run_models

if TYPE_CHECKING:
    from ..report.schema import BuildReport
    from .config import BuildConfig

log = get_logger("build")


def build_precision(quantize: str | None, target: TargetProfile) -> str | None:
    """What the build quantizes to (None: nothing), refusing a request the target contradicts."""
    if quantize and target.precision == "int8" and quantize != "int8":
        raise InputError(f"target {target.name!r} runs int8 graphs, so --quantize {quantize} contradicts it",
                         hint="drop --quantize (the build quantizes to int8 for it) or pick another target")
    return quantize or ("int8" if target.precision == "int8" else None)


def require_data(precision: str | None, config: BuildConfig) -> None:
    """A build that quantizes calibrates and verifies on images: refuse one without data."""
    if precision and config.data.dataset is None:
        raise InputError(f"quantizing to {precision} calibrates and verifies on images, so it needs a dataset",
                         hint="pass --dataset")
    if precision and not config.data.has_training:  # from Python, a test set alone
        from ..data.splits import training_split

        training_split(config.data.splits, f"quantizing to {precision} calibrates on images")


# ONNX Runtime's int8 CPU kernels run channel counts in multiples of 16 fastest (narrower
# multiples measured slower on cpu-batch32: benchmarks/results/quantize.json).
CPU_INT8_MULTIPLE = 16


def targets_for(target: TargetProfile, precision: str | None) -> tuple[TargetProfile, TargetProfile]:
    """(the target the fp32 files run on, the one the quantized file runs on; an int8 CPU
    target rounds widths to at least :data:`CPU_INT8_MULTIPLE`)."""
    if precision is None:
        return target, target
    quantized = dataclasses.replace(target, precision=precision)
    if precision == "int8" and on_cpu(target):
        quantized = dataclasses.replace(quantized, round_to=max(target.round_to, CPU_INT8_MULTIPLE))
    return dataclasses.replace(target, precision="fp32"), quantized


def quantized_name(precision: str) -> str:
    """The quantized model's file in the run directory."""
    return f"pruned.{precision}.onnx"


def quantize_config(config: BuildConfig, target: TargetProfile, precision: str):
    """The :class:`~deploypipe.quantize.QuantizeConfig` of a build."""
    from ..quantize import QuantizeConfig, scheme_for

    return QuantizeConfig(precision=precision, calibration_batches=config.data.calibration_batches,
                          scheme=scheme_for(target), keep_fp32=tuple(config.quantize.keep_fp32), seed=config.seed)


def timing_quantizer(config: BuildConfig, target: TargetProfile, precision: str, dense):
    """The quantizer the latency table and loop time through: the build's scheme and
    ``--keep-fp32`` layers (named on the dense graph), a cheap calibration."""
    from ..quantize import TimingQuantizer
    from ..quantize.graph import named, resolve_keep

    q = quantize_config(config, target, precision)
    return TimingQuantizer(precision, q.scheme, tuple(resolve_keep(named(dense), q.keep_fp32)), seed=config.seed)


PAIRS = 3  # dense fp32 beside dense quantized, for a ratio budget's conversion (the median counts)


def in_fp32_terms(error: BudgetError, conversion: dict[str, Any]) -> BudgetError:
    """A refused budget said in the units the user gave: a ratio of dense fp32, not of the
    dense model quantized that the loop aimed at (``error`` unchanged without a conversion)."""
    fastest = getattr(error, "fastest", None)
    if not conversion or fastest is None:
        return error
    fastest_ms, dense_q_ms = fastest
    of_fp32 = fastest_ms / dense_q_ms / conversion["dense_fp32_over_quantized"]
    asked = conversion["ratio_of_dense_fp32"]
    return BudgetError(f"--latency-ratio {asked:g} of dense fp32 is out of reach: the fastest widths the "
                       f"groups allow, quantized, measured {fastest_ms:.4g} ms, {of_fp32:.3f} of dense fp32 "
                       f"(dense fp32 runs {conversion['dense_fp32_over_quantized']:.2f}x slower than dense "
                       "quantized)", hint=f"ask for at least --latency-ratio {math.ceil(100 * of_fp32) / 100:.2f}, "
                       "or allow more pruning per group with --max-ratio")


def fp32_ratio(budget, dense, targets: tuple[TargetProfile, TargetProfile], prepare) -> tuple[Any, dict[str, Any]]:
    """A latency ratio is a fraction of the dense model as the user has it, in fp32; the table
    and the loop compare quantized models, so it becomes a fraction of the dense model
    quantized: ratio x (dense fp32 / dense quantized), the two timed interleaved in
    :data:`PAIRS` pairs (one after the other on a GPU target, whose fp32 and int8 engines
    build differently). Capped at 1: quantization alone may meet the budget."""
    from statistics import median

    from ..hw import TargetTimer, with_batch
    from ..prune.budget import LatencyRatioBudget

    if not isinstance(budget, LatencyRatioBudget) or budget.mode != "fraction":  # only --latency-ratio converts
        return budget, {}
    fp32_target, quant_target = targets
    model = with_batch(dense, quant_target.batch, quant_target.input_shape)
    quantized = prepare(model)
    if on_cpu(quant_target):
        pairs = [TargetTimer.for_pairs(quant_target).time([model, quantized]) for _ in range(PAIRS)]
    else:
        pairs = [(TargetTimer.for_pairs(fp32_target).time([model])[0],
                  TargetTimer.for_pairs(quant_target).time([quantized])[0]) for _ in range(PAIRS)]
    speedup = float(median(f / q for f, q in pairs))
    ratio = min(1.0, budget.value * speedup)
    sentence = (f"--latency-ratio {budget.value:g} of dense fp32 is {ratio:.3g} of dense {quant_target.precision} "
                f"(dense fp32 measured {speedup:.2f}x slower than dense {quant_target.precision}, median of {PAIRS} "
                "pairs)" + (": quantizing alone meets it" if ratio >= 1.0 else ""))
    log.info(sentence)
    return dataclasses.replace(budget, value=ratio), {
        "ratio_of_dense_fp32": budget.value, "ratio_of_dense_quantized": ratio, "dense_fp32_over_quantized": speedup,
        "pairs_ms": [list(p) for p in pairs], "sentence": sentence}


def quantize_pruned(run_dir: Path, config: BuildConfig, data, target: TargetProfile, precision: str) -> dict[str, Any]:
    """``pruned.onnx`` -> ``pruned.<precision>.onnx`` (see the module docstring); the result
    as a dict for the report. A result that misses its tolerance raises unless ``--no-verify``."""
    from ..quantize import model_size, quantize_file

    name = quantized_name(precision)
    # verified on the whole test split, which the dense and pruned accuracies are counted on
    settings = dataclasses.replace(quantize_config(config, target, precision), verify_images=max(1, len(data.test)))
    result = quantize_file(run_dir / "pruned.onnx", run_dir / name, data, settings, check=config.verify)
    log.info("quantized: %s", result.sentence())
    return {"file": name, "size_bytes": model_size(run_dir / name), **result.to_dict()}


def side_by_side(run_dir: Path, target: TargetProfile, precision: str) -> dict[str, Any]:
    """Dense fp32, pruned fp32 and pruned quantized timed interleaved in one call (on the
    CPU, where one session type runs all three; a GPU target builds fp32 and int8 engines
    differently, so there the profiles stand alone)."""
    from ..hw import TargetTimer

    files = ("dense.onnx", "pruned.onnx", quantized_name(precision))
    if not on_cpu(target):
        return {"files": list(files), "ms": None, "note": "timed interleaved on CPU targets only"}
    timer = TargetTimer.for_pairs(target)
    ms = timer.time(run_models(run_dir, files, target))
    return {"files": list(files), "ms": ms, "bursts": timer.bursts, "iterations": timer.iterations,
            "note": "the three models timed in alternating bursts, one call: they share the machine's load"}


def with_quantized(report: BuildReport, run_dir: Path, quant: dict[str, Any], profile, interleaved) -> BuildReport:
    """``report`` with the quantized model's column (accuracy, MACs, size, latency), its
    verification, its per-layer times and file; and every model's size on disk."""
    from ..report.schema import LatencyStats, QuantizedColumn
    from .build_report import layer_rows

    verification = quant["verification"]
    column = QuantizedColumn(
        precision=quant["precision"], file=quant["file"], macs=report.pruned.macs, params=report.pruned.params,
        accuracy=verification["accuracy_quantized"], latency_ms=LatencyStats.of(profile),
        size_bytes=quant["size_bytes"], target=profile.target.name, layers=quant["layers"],
        kept_fp32=tuple(quant["kept_fp32"]), calibration=quant["calibration"], scheme=quant["scheme"],
        library=quant["library"], side_by_side=interleaved)
    artifacts = list(report.artifacts)
    artifacts.insert(artifacts.index("pruned.pt") + 1 if "pruned.pt" in artifacts else len(artifacts), quant["file"])
    checks = report.verification
    return dataclasses.replace(
        report, quantized=column, artifacts=tuple(artifacts),
        dense=dataclasses.replace(report.dense, size_bytes=(run_dir / "dense.onnx").stat().st_size),
        pruned=dataclasses.replace(report.pruned, size_bytes=(run_dir / "pruned.onnx").stat().st_size),
        verification=dataclasses.replace(checks, quantized=verification,
                                         passed=bool(checks.passed and verification["passed"])),
        layers=dataclasses.replace(report.layers, quantized=layer_rows(profile)))
