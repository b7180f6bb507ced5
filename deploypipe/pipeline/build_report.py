"""Filling the :class:`~deploypipe.report.schema.BuildReport` that both build paths return, and its
text summary (what ``deploypipe build`` prints)."""
from __future__ import annotations

import datetime as _dt
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..measure.stats import interleaved_line, speed_phrase
from ..report.schema import (BuildReport, GroupRow, LatencyOutcome, LatencyStats, LayerTimes, MethodSummary,
                             ModelColumn, QuantizedColumn, StageTime, TargetSummary, Verification)
from .config import BuildConfig
from .run import Run

PLAIN_REMOVAL = ("oneshot", "iterative")  # methods that remove channels and change no weight


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def model_columns(dense_a, pruned_a, dense_acc, pruned_acc, dense_prof, pruned_prof) -> tuple[ModelColumn, ModelColumn]:
    """Dense and pruned: MACs and parameters of their ONNX analyses, accuracy, profiled latency."""
    return (ModelColumn(dense_a.macs, dense_a.params, dense_acc, LatencyStats.of(dense_prof)),
            ModelColumn(pruned_a.macs, pruned_a.params, pruned_acc, LatencyStats.of(pruned_prof)))


def group_rows(pruner, dense_widths: np.ndarray, dense_reasons: dict[int, list[str]]) -> tuple[GroupRow, ...]:
    """Each group of a torch build: its dense and pruned width, and why it was frozen."""
    after = pruner.widths()
    return tuple(GroupRow(g.id, int(dense_widths[g.id]), int(after[g.id]), bool(dense_reasons.get(g.id)),
                          "; ".join(dense_reasons.get(g.id, [])) or None) for g in pruner.groups)


def assemble(run: Run, config: BuildConfig, target, profiles: tuple[Any, Any],
             columns: tuple[ModelColumn, ModelColumn], *, method: MethodSummary, groups: Sequence[GroupRow],
             rounds: Sequence[dict], verification: Verification, files: Sequence[str], dataset: str | None,
             latency: LatencyOutcome | None = None) -> BuildReport:
    """The report of a build whose dense and pruned ONNX files were profiled as ``profiles``;
    ``files`` are the models it wrote (engines a profile built are handed over beside them)."""
    from ..measure.fingerprint import hardware_fingerprint
    from .engines import hand_over_engine

    dense_prof, pruned_prof = profiles
    engines = [file for prof, stem in zip(profiles, ("dense", "pruned"))
               for file in hand_over_engine(prof, run.out_dir, stem)]
    tables = ["latency_table.json"] if latency is not None else []
    return BuildReport(
        deploypipe_version=__version__, created=now(), command=config.output.command,
        target=TargetSummary(target.name, dense_prof.backend, tuple(dense_prof.providers), dense_prof.batch,
                             target.precision, dense_prof.timing, hardware_fingerprint().to_dict()),
        method=method, budget=config.budget.to_dict(), dataset=dataset,
        dense=columns[0], pruned=columns[1], groups=tuple(groups), rounds=tuple(rounds), verification=verification,
        layers=LayerTimes(layer_rows(dense_prof), layer_rows(pruned_prof)),
        stages=tuple(StageTime(**s) for s in run.stages),
        artifacts=(*files, *engines, *tables, "report.json", "report.html"), latency=latency)


def layer_rows(profile) -> tuple[dict[str, Any], ...]:
    return tuple(layer.to_dict() for layer in profile.layers)


def latency_outcome(fields: dict[str, Any]) -> LatencyOutcome:
    """The ``latency_*`` fields of :meth:`LatencyPlan.report`, typed."""
    return LatencyOutcome(fields["latency_table"], tuple(fields["latency_loop"]), fields["latency_result"])


def summary(report: BuildReport, out_dir: str) -> str:
    """The lines ``deploypipe build`` prints: the comparison table, quantization, the latency
    outcome, verification and the files written."""
    budget = report.budget
    m = report.method
    lines = [f"target {report.target.name} ({report.target.backend}), method {m.name} / {m.importance} / {m.allocation}"
             f"{' (the default with data and a MACs budget)' if m.chosen_by else ''}, "
             f"budget {budget['kind']} {budget['value']:g} ({budget.get('mode', '')})",
             *_table(report)]
    if report.quantized is not None:
        lines += _quantized_lines(report.quantized, report.verification.quantized)
    if report.reconstruction is not None:
        r = report.reconstruction
        lines.append(f"reconstruction: {len(r['layers'])} layers refitted by least squares on {r['images']} images: "
                     f"accuracy {r['accuracy_removed']:.2%} after plain removal -> {r['accuracy_refit']:.2%}, "
                     f"top-1 agreement with dense {r['agreement_removed']:.1%} -> {r['agreement_refit']:.1%}")
    hint = _unrefitted_hint(report)
    if hint:
        lines.append(hint)
    if report.latency is not None:
        result = report.latency.latency_result
        lines += [s for s in ((result.get("budget_conversion") or {}).get("sentence"), result["sentence"],
                              result.get("final_sentence")) if s]
    v = report.verification
    checks = [f"{label} {value:.2g}" for label, value in (("torch vs ONNX", v.torch_vs_onnx_max_abs),
                                                          ("oracle", v.oracle_max_abs)) if value is not None]
    lines.append(f"verification {'passed' if v.passed else 'FAILED'}: max abs error " + ", ".join(checks))
    lines.append(f"artifacts in {out_dir}: " + ", ".join(report.artifacts))
    return "\n".join(lines)


def _unrefitted_hint(report: BuildReport) -> str | None:
    """A plain-removal build left without fine-tuning that lost much accuracy: say what helps."""
    dense, pruned = report.dense.accuracy, report.pruned.accuracy
    if (dense is None or pruned is None or dense - pruned < 0.10 or report.method.name not in PLAIN_REMOVAL
            or any(s.name == "finetune" for s in report.stages)):
        return None
    return (f"not fine-tuned: accuracy fell {(dense - pruned) * 100:.1f} pt; fine-tune (--epochs N), or prune with "
            "--method cpli, which refits each layer by least squares (on CIFAR-10, resnet20 at 2x fewer MACs kept "
            "24.5% error without training where plain removal left 37.7%, with BatchNorm re-estimated)")


def _table(report: BuildReport) -> list[str]:
    """Dense, pruned (and pruned quantized) side by side; the note compares the last column
    with dense."""
    cols: list[tuple[str, ModelColumn | QuantizedColumn]] = [("dense", report.dense), ("pruned", report.pruned)]
    if report.quantized is not None:
        cols.append((f"pruned {report.quantized.precision}", report.quantized))
    d, last = cols[0][1], cols[-1][1]

    def row(label: str, cells: list[str], note: str = "") -> str:
        return f"{label:14}" + "".join(f"{c:>14}" for c in cells) + (f"   ({note})" if note else "")

    rows = [row("", [name for name, _ in cols])]
    if all(c.accuracy is not None for _, c in cols):
        rows.append(row("accuracy", [f"{c.accuracy:.2%}" for _, c in cols],
                        f"{(last.accuracy - d.accuracy) * 100:+.2f} pt"))
    else:
        rows.append("accuracy      not measured (no data given: pass --dataset to measure it, and to recover it "
                    "by fine-tuning or, for an ONNX file, by least-squares reconstruction)")
    for label, key in (("MACs", "macs"), ("params", "params")):
        rows.append(row(label, [_h(getattr(c, key)) for _, c in cols],
                        f"{getattr(d, key) / max(getattr(last, key), 1):.2f}x fewer"))
    if all(c.size_bytes for _, c in cols):
        rows.append(row("size on disk", [f"{_h(c.size_bytes)}B" for _, c in cols],
                        f"{d.size_bytes / last.size_bytes:.2f}x smaller"))
    if all(c.latency_ms for _, c in cols):
        lat = [c.latency_ms for _, c in cols]
        in_turn = "verdict" in (report.speed or {})  # then the interleaved timing below makes the claim
        rows.append(row("latency p50", [f"{x.median:.3f}ms" for x in lat],
                        f"batch {lat[0].batch}, profiled in turn" if in_turn else
                        f"{speed_phrase(lat[0].median, lat[-1].median)}, batch {lat[0].batch}"))
        rows.append(row("latency p90", [f"{x.p90:.3f}ms" for x in lat]))
    line = interleaved_line(report.speed or {})  # the profiles ran in turn; this pair shared each moment's load
    if line:
        rows.append(line)
    return rows


def _quantized_lines(q: QuantizedColumn, verification: dict[str, Any]) -> list[str]:
    """The quantized model: layers kept in fp32, its verification, the interleaved timing."""
    kept = ", ".join(k["name"] for k in q.kept_fp32) or "none"
    done = sum(p == q.precision for p in q.layers.values())
    lines = [f"{q.file}: {done} of {len(q.layers)} Conv/Gemm layers in {q.precision}, kept in fp32: {kept}; "
             f"{verification['sentence']}"]
    side = q.side_by_side or {}
    if side.get("ms"):
        dense, pruned, quant = side["ms"]
        lines.append(f"timed interleaved: dense {dense:.3f} ms, pruned {pruned:.3f} ms, pruned {q.precision} "
                     f"{quant:.3f} ms ({speed_phrase(dense, quant)} than dense)")
    return lines


def _h(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"
