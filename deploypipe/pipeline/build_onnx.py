"""``deploypipe build model.onnx``: no PyTorch model, so weight-only pruning through
channel surgery, then the same verification, profiling and report as a torch build."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import InputError, VerificationError
from ..graph import analyse, load_onnx, save_onnx, shrink, verify_shrink
from ..graph.scores import WEIGHT_ONLY, weight_scores
from ..prune.allocate import select_drop
from ..prune.budget import allocate
from ..utils.files import write_json
from .config import BuildConfig
from .quantize_stage import build_precision
from .report import dense_vs_pruned, now
from .run import Run


def build_onnx(config: BuildConfig, target) -> dict[str, Any]:
    from ..measure.fingerprint import hardware_fingerprint
    from ..measure.profile import profile_onnx
    from ..report import try_write_html_report
    from .engines import hand_over_engine

    if config.importance not in WEIGHT_ONLY:
        raise InputError(f"importance {config.importance!r} needs a PyTorch model and data",
                         hint=f"an ONNX model is pruned by weights alone: use one of {', '.join(WEIGHT_ONLY)}")
    if config.method != "oneshot":
        raise InputError(f"method {config.method!r} trains the model, which an ONNX file cannot be",
                         hint="pass the PyTorch checkpoint, or use --method oneshot")
    precision = build_precision(config.quantize, target)
    if precision:
        raise InputError(f"a build from an ONNX file does not quantize to {precision} yet",
                         hint=f"build it for an fp32 target, then run `deploypipe quantize RUN/pruned.onnx --dataset "
                              f"... --precision {precision}`")
    run = Run(Path(config.out_dir))
    round_to = config.round_to or target.round_to
    with run.stage("analyse"):
        analysis = analyse(load_onnx(config.model))
        save_onnx(analysis.model, run.path("dense.onnx"))
    latency = None  # LatencyPlan, for a latency budget
    if config.budget.kind == "latency":
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
        save_onnx(small, run.path("pruned.onnx"))
    with run.stage("profile"):
        dense_prof = profile_onnx(run.path("dense.onnx"), target, iterations=config.profile_iterations)
        pruned_prof = profile_onnx(run.path("pruned.onnx"), target, iterations=config.profile_iterations)
    after = analyse(small, normalized=True)
    widths_after = analysis.widths() - np.array([len(drop.get(g.id, ())) for g in analysis.groups])
    report = {
        "deploypipe_version": __version__, "created": now(), "command": config.command,
        "target": {"name": target.name, "backend": dense_prof.backend, "providers": list(dense_prof.providers),
                   "batch": dense_prof.batch, "precision": target.precision, "timing": dense_prof.timing,
                   "fingerprint": hardware_fingerprint().to_dict()},
        "method": {"name": "oneshot", "importance": config.importance, "params": {},
                   "allocation": config.allocation, "round_to": round_to, "distill": False},
        "budget": config.budget.to_dict(), "dataset": None,
        **dense_vs_pruned(analysis, after, None, None, dense_prof, pruned_prof),
        "groups": [{"id": g.id, "width_before": g.width, "width_after": int(widths_after[g.id]),
                    "frozen": g.frozen, "reason": "; ".join(g.reasons) or None} for g in analysis.groups],
        "rounds": [],
        "verification": {"torch_vs_onnx_max_abs": None, "oracle_max_abs": oracle.max_abs, "passed": oracle.passed},
        "layers": {"dense": [l.to_dict() for l in dense_prof.layers],
                   "pruned": [l.to_dict() for l in pruned_prof.layers]},
        "stages": run.stages,
        "artifacts": ["dense.onnx", "pruned.onnx", "report.json"],
    }
    for prof, stem in ((dense_prof, "dense"), (pruned_prof, "pruned")):
        report["artifacts"][-1:-1] = hand_over_engine(prof, run.out_dir, stem)
    if latency is not None:
        final = latency.check(run.path("dense.onnx"), run.path("pruned.onnx"))
        report.update(latency.report(run.out_dir, pruned_prof.latency_ms, final))
        report["artifacts"].insert(-1, "latency_table.json")
    report["artifacts"].append("report.html")
    write_json(run.path("report.json"), report)
    try_write_html_report(run.out_dir)
    return report


def _scores(analysis, config: BuildConfig) -> list[np.ndarray]:
    rng = np.random.default_rng(config.seed)
    return [weight_scores(analysis, g, config.importance, rng=rng) if g.prunable else np.zeros(g.width)
            for g in analysis.groups]


def _plan_latency(analysis, config: BuildConfig, target, round_to: int):
    from .latency import plan_latency

    return plan_latency(analysis, _scores(analysis, config), [g.prunable for g in analysis.groups], target,
                        config.budget, round_to=round_to, max_ratio=config.max_ratio, options=config.latency)


def _plan(analysis, config: BuildConfig, round_to: int, latency=None) -> dict[int, np.ndarray]:
    groups = analysis.groups
    scores = _scores(analysis, config)
    if latency is not None:  # the loop's chosen widths, measured on the target
        return select_drop(scores, latency.result.chosen.widths)
    budget = config.budget
    dense = analysis.macs if budget.kind == "macs" else analysis.params
    keep = allocate(analysis.widths(), scores, [g.prunable for g in groups], budget, analysis.cost,
                    dense_value=dense, allocation=config.allocation, round_to=round_to,
                    max_ratio=config.max_ratio)
    return select_drop(scores, keep)
