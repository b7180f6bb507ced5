"""``deploypipe build model.onnx``: no PyTorch model, so weight-only pruning through
channel surgery, then the same verification, profiling and report as a torch build."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError, VerificationError
from ..graph import analyse, load_onnx, save_onnx, shrink, verify_shrink
from ..graph.scores import WEIGHT_ONLY, weight_scores
from ..prune.allocate import select_drop
from ..prune.budget import allocate
from ..prune.state import GroupState
from ..report.schema import BuildReport, GroupRow, MethodSummary, Verification
from .config import BuildConfig
from .build_report import assemble, latency_outcome, model_columns
from .quantize_stage import (build_precision, quantize_pruned, quantized_name, require_data, side_by_side,
                             targets_for, with_quantized)
from .reconstruct_stage import evaluated, load_images, reconstruct
from .run import Run
from .speed import interleaved_speed


def build_onnx(config: BuildConfig, target) -> BuildReport:
    """Analyse, (measure a latency budget,) prune by weights through surgery, verify the shrunk
    graph against the original, (refit and quantize it, with data,) profile, report."""
    from ..profiling import profile_onnx

    precision = _check_request(config, target)
    fp32_target, quant_target = targets_for(target, precision)
    run = Run(config.out_dir)
    round_to = config.prune.round_to or quant_target.round_to
    with run.stage("analyse"):
        analysis = analyse(load_onnx(config.model.path))
        save_onnx(analysis.model, run.path("dense.onnx"))
    latency = None  # LatencyPlan, for a latency budget
    if config.budget.needs_latency_table:
        with run.stage("latency", f"measuring the latency table and calibrating {config.budget.describe()}"):
            latency = _plan_latency(analysis, config, target, round_to)
    with run.stage("prune"):
        drop = _plan(analysis, config, round_to, latency)
        small = shrink(analysis, drop)
    with run.stage("verify"):
        oracle = verify_shrink(analysis, small, drop, atol=target.tolerances.atol, rtol=1e-4)
        if config.verify and not oracle.passed:
            raise VerificationError(f"the shrunk model does not match the original ({oracle.sentence()})",
                                    hint="please report this model")
    with run.stage("data"):
        data = load_images(config, analysis.model)
    rebuilt = None
    if data is not None and data.has_training:
        with run.stage("reconstruct", "refitting the pruned layers by least squares on calibration images"):
            rebuilt = reconstruct(analysis, small, drop, data, config.seed)
    elif data is not None:  # a test set alone (Python API): measured on, never refit on
        with run.stage("evaluate", "measuring accuracy on the test set (no training images: nothing refitted)"):
            rebuilt = evaluated(analysis, small, data)
    save_onnx(rebuilt.model if rebuilt else small, run.path("pruned.onnx"))
    quant = None
    if precision:
        with run.stage("quantize", f"quantizing pruned.onnx to {precision}"):
            quant = quantize_pruned(run.out_dir, config, data, target, precision)
    with run.stage("profile"):
        profiles = tuple(profile_onnx(run.path(name), fp32_target, iterations=config.profile_iterations)
                         for name in ("dense.onnx", "pruned.onnx"))
        quantized = None
        if quant:
            profile = profile_onnx(run.path(quantized_name(precision)), quant_target,
                                   iterations=config.profile_iterations)
            quantized = (quant, profile, side_by_side(run.out_dir, quant_target, precision))
        # a plain build: is the pruned model faster? (a latency build's final check says so for its own)
        speed = None if quant or latency else interleaved_speed(run.out_dir, fp32_target, config.profile_iterations)
    return _write_report(run, config, target, (analysis, small, drop), oracle, profiles, round_to, latency,
                         rebuilt, quantized, speed)


def _check_request(config: BuildConfig, target) -> str | None:
    """What an ONNX file cannot do (train, score by data, quantize without data or under a
    latency budget), refused before any work; the precision the build quantizes to."""
    if config.prune.allocation == "per-cost":
        raise InputError("the per-cost allocation needs a criterion that estimates the loss (taylor, fisher), "
                         "which needs a PyTorch model and data",
                         hint="an ONNX model is pruned by weights alone: use --allocation global or uniform")
    if config.prune.importance not in WEIGHT_ONLY:
        raise InputError(f"importance {config.prune.importance!r} needs a PyTorch model and data",
                         hint=f"an ONNX model is pruned by weights alone: use one of {', '.join(WEIGHT_ONLY)}")
    if config.prune.method != "oneshot":
        raise InputError(f"method {config.prune.method!r} trains the model, which an ONNX file cannot be",
                         hint="pass the PyTorch checkpoint, or use --method oneshot")
    if config.prune.method_params:  # refused as the method refuses them, rather than dropped
        from ..prune.methods import create_method

        create_method(config.prune.method, {k: str(v) for k, v in config.prune.method_params.items()})
    if config.train.distill:
        raise InputError("--distill distils while fine-tuning, and an ONNX file is not fine-tuned",
                         hint="pass the PyTorch checkpoint, or leave --distill out")
    precision = build_precision(config.quantize.precision, target)
    require_data(precision, config)
    if precision and config.budget.needs_latency_table:
        raise InputError(f"a build from an ONNX file does not yet time {precision} graphs for a latency budget",
                         hint=f"use a MACs or ratio budget with --quantize {precision}, or build for an fp32 "
                              f"target, then run `deploypipe quantize RUN/pruned.onnx --precision {precision}`")
    return precision


def _write_report(run: Run, config: BuildConfig, target, pruning, oracle, profiles, round_to: int,
                  latency=None, rebuilt=None, quantized=None, speed=None) -> BuildReport:
    """The report of the surgery ``pruning`` = (analysis, shrunk model, channels dropped per
    group); written as ``report.json`` and ``report.html``."""
    from ..report import write_build_report

    analysis, small, drop = pruning
    widths_after = analysis.widths() - np.array([len(drop.get(g.id, ())) for g in analysis.groups])
    outcome = None
    if latency is not None:
        final = latency.check(run.path("dense.onnx"), run.path("pruned.onnx"))
        outcome = latency_outcome(latency.report(run.out_dir, profiles[1].latency_ms, final))
    report = assemble(
        run, config, target, profiles,
        model_columns(analysis, analyse(small, normalized=True), rebuilt and rebuilt.dense_accuracy,
                      rebuilt and rebuilt.accuracy, *profiles),
        method=MethodSummary("oneshot", config.prune.importance, {}, config.prune.allocation, round_to, False),
        groups=[GroupRow(g.id, g.width, int(widths_after[g.id]), g.frozen, "; ".join(g.reasons) or None)
                for g in analysis.groups],
        rounds=(), verification=Verification(None, oracle.max_abs, oracle.passed),
        files=("dense.onnx", "pruned.onnx"), dataset=config.data.dataset, latency=outcome)
    if rebuilt is not None and rebuilt.summary is not None:
        report = dataclasses.replace(report, reconstruction=rebuilt.summary)
    if quantized is not None:  # (result, profile, interleaved timing)
        report = with_quantized(report, run.out_dir, *quantized)
    if speed is not None:
        report = dataclasses.replace(report, speed=speed)
    write_build_report(run.out_dir, report)
    return report


def _scores(analysis, config: BuildConfig) -> list[np.ndarray]:
    rng = np.random.default_rng(config.seed)
    return [weight_scores(analysis, g, config.prune.importance, rng=rng) if g.prunable else np.zeros(g.width)
            for g in analysis.groups]


def _plan_latency(analysis, config: BuildConfig, target, round_to: int):
    from .latency import plan_latency

    return plan_latency(analysis, _scores(analysis, config), [g.prunable for g in analysis.groups], target,
                        config.budget, round_to=round_to, max_ratio=config.prune.max_ratio, options=config.latency)


def _plan(analysis, config: BuildConfig, round_to: int, latency=None) -> dict[int, np.ndarray]:
    scores = _scores(analysis, config)
    planned = None if latency is None else latency.result.widths  # the loop's, measured on the target
    keep = allocate(GroupState.of(analysis, scores, planned=planned), config.budget,
                    allocation=config.prune.allocation, round_to=round_to, max_ratio=config.prune.max_ratio)
    return select_drop(scores, keep)
