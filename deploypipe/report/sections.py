"""The plotted sections of the page, each from its part of report.json (and, for the
latency table, the file beside it). A part that is absent gives a short note instead."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .figures import layers_figure, to_png_b64, widths_figure
from .figures_latency import Curve, Point, loop_figure, macs_figure, rounds_figure, table_figure
from .html import Section, esc, figure, note, table

Report = dict[str, Any]
TOP_LAYERS = 15
TOP_CURVES = 6


def widths_section(report: Report) -> Section:
    groups = report.get("groups") or []
    if not groups:
        return Section("widths", "Widths per group", note("report.json lists no channel groups."))
    fig = widths_figure([g["id"] for g in groups], [g["width_before"] for g in groups],
                        [g["width_after"] for g in groups], [bool(g.get("frozen")) for g in groups])
    kept = sum(g["width_after"] for g in groups) / max(1, sum(g["width_before"] for g in groups))
    return Section("widths", "Widths per group", figure(
        to_png_b64(fig), "channels per group before and after pruning",
        f"{len(groups)} groups; {kept:.0%} of all channels kept; frozen groups (never pruned) in grey."))


def layers_section(report: Report) -> Section:
    layers = report.get("layers") or {}
    dense, pruned = _layer_times(layers.get("dense")), _layer_times(layers.get("pruned"))
    if not dense and not pruned:
        return Section("layers", "Per-layer latency", note("report.json has no per-layer profile."))
    names = sorted(set(dense) | set(pruned), key=lambda n: -max(dense.get(n, 0.0), pruned.get(n, 0.0)))
    names = names[:TOP_LAYERS]
    fig = layers_figure(names, [dense.get(n, 0.0) for n in names], [pruned.get(n, 0.0) for n in names])
    return Section("layers", "Per-layer latency", figure(
        to_png_b64(fig), "per-layer latency before and after pruning",
        f"The {len(names)} slowest layers (ONNX nodes as the runtime profiled them); a layer missing on "
        "one side was fused or removed there."))


def _layer_times(rows: Any) -> dict[str, float]:
    """Median (else mean) ms per ONNX node, summed over the runtime's layers of that node."""
    out: dict[str, float] = {}
    for row in rows or []:
        ms = row.get("medianMs", row.get("averageMs"))
        if isinstance(ms, (int, float)):
            name = str(row.get("onnx_node") or row.get("name") or "?")
            out[name] = out.get(name, 0.0) + float(ms)
    return out


def table_section(report: Report, run_dir: Path | None) -> Section:
    info = report.get("latency_table")
    title = "Latency table"
    if not info:
        return Section("latency-table", title, note(
            "No latency table: this build's budget was not a latency budget "
            "(--latency-budget or --latency-ratio measure one on the target)."))
    data = _read_table(run_dir, info.get("path"))
    if data is None:
        return Section("latency-table", title, note(f"The latency table file {info.get('path')!s} is not in the run "
                                                    "directory."))
    chosen = {int(g["id"]): int(g["width_after"]) for g in report.get("groups") or []}
    curves = _curves(data, chosen)
    if not curves:
        return Section("latency-table", title, note("The latency table holds no group with two widths or more."))
    caption = (f"The {len(curves)} groups whose latency varies most with width, of {len(data.get('groups', {}))}; "
               f"stars: the width kept. Dense model {info.get('dense_ms', float('nan')):.4g} ms on "
               f"{info.get('target', '?')}.")
    return Section("latency-table", title, figure(to_png_b64(table_figure(curves)), "latency table curves", caption))


def _read_table(run_dir: Path | None, name: Any) -> dict | None:
    """The table file named in report.json, only from inside the run directory."""
    if run_dir is None or not isinstance(name, str):
        return None
    path = (run_dir / name).resolve()
    if run_dir.resolve() not in path.parents or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _curves(data: dict, chosen: dict[int, int]) -> list[Curve]:
    rows = []
    for gid, row in (data.get("groups") or {}).items():
        widths, ms = list(row.get("widths") or []), list(row.get("ms") or [])
        if len(widths) >= 2 and len(widths) == len(ms):
            key = row.get("key") or [f"group {gid}"]
            label = f"group {gid}: {key[0]}"
            rows.append((max(ms) - min(ms), Curve(label, widths, ms, chosen.get(int(gid)))))
    rows.sort(key=lambda r: -r[0])
    return [c for _, c in rows[:TOP_CURVES]]


def rounds_section(report: Report) -> Section:
    rounds = report.get("rounds") or []
    dense, pruned = report.get("dense") or {}, report.get("pruned") or {}
    title = "Accuracy and MACs per pruning round"
    if not rounds:
        return Section("rounds", title, note("report.json records no pruning round."))
    if not any(r.get("accuracy") is not None for r in rounds):
        fig = macs_figure([r["round"] for r in rounds], [r["macs"] for r in rounds], float(dense.get("macs", 0)))
        return Section("rounds", title, figure(to_png_b64(fig), "MACs per round", "MACs after each round.")
                       + note("The rounds carry no accuracy (no data, or an older report.json)."))
    points = [Point("dense", dense.get("macs", 0), dense.get("accuracy"))]
    points += [Point(f"r{r['round']}", r["macs"], r.get("accuracy")) for r in rounds]
    final = Point("final", pruned.get("macs", 0), pruned.get("accuracy"))
    rows = [[r["round"], r.get("channels_removed"), r["macs"], _pct(r.get("accuracy"))] for r in rounds]
    images = next((r["accuracy_images"] for r in rounds if r.get("accuracy_images")), None)
    on = f" (first {images} test images)" if images else ""
    caption = (f"Test accuracy{on} before fine-tuning, after the last round and after each round that removed "
               "a sixteenth of the dense MACs or more since the last one measured; dense and final (the star, "
               "after fine-tuning) on the whole test split.")
    return Section("rounds", title, figure(to_png_b64(rounds_figure(points, final)), "accuracy against MACs", caption)
                   + table(["round", "channels removed", "MACs", "accuracy"], rows)
                   + _recalibration_note((report.get("method") or {}).get("bn_recalibration")))


def _recalibration_note(recal: dict | None) -> str:
    """One sentence on the BatchNorm re-estimate after the last round, when there was one."""
    if not recal:
        return ""
    text = (f"After the last round, BatchNorm statistics were re-estimated on {recal.get('images')} training "
            f"images ({recal.get('batches')} batches)")
    if recal.get("accuracy_after") is not None:
        text += (f": test accuracy {_pct(recal.get('accuracy_before'))} with the dense model's statistics, "
                 f"{_pct(recal['accuracy_after'])} with the new ones (the same {recal.get('accuracy_images')} "
                 "images, before any fine-tuning)")
    return f"<p>{esc(text + '.')}</p>"


def loop_section(report: Report) -> Section:
    loop = [r for r in report.get("latency_loop") or [] if r.get("measured_ms") is not None]
    title = "Predicted against measured latency"
    if not loop:
        return Section("latency-loop", title, note("No latency loop: the budget was not a latency budget."))
    rounds = [r["round"] for r in loop]
    fig = loop_figure(rounds, [r.get("predicted_ms") for r in loop], [r["measured_ms"] for r in loop],
                      [r.get("budget_ms") for r in loop], loop[0].get("dense_ms"))
    rows = [[r["round"], _ms(r.get("predicted_ms")), _ms(r["measured_ms"]), _ms(r.get("budget_ms")),
             r.get("note") or ""] for r in loop]
    sentence = (report.get("latency_result") or {}).get("sentence")
    return Section("latency-loop", title, figure(to_png_b64(fig), "predicted and measured latency per round",
                                                 "Each round allocates with the table, measures the pruned "
                                                 "model, and corrects the budget.")
                   + table(["round", "predicted ms", "measured ms", "budget ms", "note"], rows, text_columns=(4,))
                   + (f"<p>{esc(sentence)}</p>" if sentence else ""))


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "—"


def _ms(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else "—"
