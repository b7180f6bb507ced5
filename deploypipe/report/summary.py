"""The text parts of the page: the header line, the dense-against-pruned summary and the
run's details (verification, stages, frozen groups)."""
from __future__ import annotations

from typing import Any, Callable

from ..measure.stats import interleaved_line, speed_phrase
from .html import Section, esc, note, table, verdict

Report = dict[str, Any]


def header(report: Report) -> str:
    """Target, method, budget, data and the command, as one escaped paragraph."""
    target, method, budget = report.get("target") or {}, report.get("method") or {}, report.get("budget") or {}
    parts = [f"target <b>{esc(target.get('name', '?'))}</b> ({esc(target.get('backend', '?'))}, "
             f"batch {esc(target.get('batch', '?'))})",
             f"method <b>{esc(method.get('name', '?'))}</b> / {esc(method.get('importance', '?'))} / "
             f"{esc(method.get('allocation', '?'))}" + (" (the build's default)" if method.get("chosen_by") else ""),
             f"budget {esc(budget.get('kind', '?'))} {esc(budget.get('value', '?'))} {esc(budget.get('mode', ''))}",
             f"dataset {esc(report.get('dataset') or 'none')}",
             f"{esc(report.get('created', ''))}, deploypipe {esc(report.get('deploypipe_version', '?'))}"]
    command = f"<br><code>{esc(report['command'])}</code>" if report.get("command") else ""
    return f'<p class="meta">{" · ".join(parts)}{command}</p>'


def summary_section(report: Report) -> Section:
    dense, pruned = report.get("dense") or {}, report.get("pruned") or {}
    if not dense or not pruned:
        return Section("summary", "Summary", note("report.json has no dense and pruned results."))
    rows = [_row("accuracy", dense.get("accuracy"), pruned.get("accuracy"), _pct, _points),
            _row("MACs", dense.get("macs"), pruned.get("macs"), _count, _fewer),
            _row("parameters", dense.get("params"), pruned.get("params"), _count, _fewer)]
    dl, pl = dense.get("latency_ms") or {}, pruned.get("latency_ms") or {}
    speed = report.get("speed") or {}
    in_turn = "verdict" in speed  # the interleaved timing below makes the speed claim
    for key, label in (("median", "latency median (ms)"), ("p90", "latency p90 (ms)")):
        rows.append(_row(label, dl.get(key), pl.get(key), _ms, (lambda d, p: "profiled in turn") if in_turn
                         else _faster))
    passed = (report.get("verification") or {}).get("passed")
    body = table(["", "dense", "pruned", "change"], rows)
    line = interleaved_line(speed)
    if line:
        body += f"<p>{esc(line)}</p>"
    body += f"<p>verification: {verdict(passed)}</p>"
    result = report.get("latency_result") or {}
    for key in ("sentence", "final_sentence"):
        if result.get(key):
            body += f"<p>{esc(result[key])}</p>"
    return Section("summary", "Summary", body)


def details_section(report: Report) -> Section:
    """Verification numbers, stage times and the groups that were frozen, with their reason."""
    v = report.get("verification") or {}
    body = table(["check", "max abs error"], [["torch vs ONNX", _num(v.get("torch_vs_onnx_max_abs"), "{:.3g}")],
                                              ["surgery oracle", _num(v.get("oracle_max_abs"), "{:.3g}")]])
    stages = report.get("stages") or []
    body += table(["stage", "seconds"], [[s.get("name"), _num(s.get("seconds"), "{:.2f}")] for s in stages]) \
        if stages else note("No stage times recorded.")
    frozen = [g for g in report.get("groups") or [] if g.get("frozen")]
    if frozen:
        body += table(["frozen group", "channels", "why"], [[g.get("id"), g.get("width_before"), g.get("reason")]
                                                            for g in frozen], text_columns=(2,))
    else:
        body += note("No group was frozen.")
    return Section("details", "Details", body)


def _row(label: str, dense: Any, pruned: Any, fmt: Callable[[Any], str],
         change: Callable[[float, float], str]) -> list[str]:
    ok = isinstance(dense, (int, float)) and isinstance(pruned, (int, float))
    return [label, fmt(dense), fmt(pruned), change(float(dense), float(pruned)) if ok else "—"]


def _num(value: Any, spec: str) -> str:
    return spec.format(value) if isinstance(value, (int, float)) else "—"


def _pct(v: Any) -> str:
    return _num(v * 100 if isinstance(v, (int, float)) else None, "{:.2f}%")


def _count(v: Any) -> str:
    if not isinstance(v, (int, float)):
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:g}"


def _ms(v: Any) -> str:
    return _num(v, "{:.4g}")


def _points(d: float, p: float) -> str:
    return f"{(p - d) * 100:+.2f} pt"


def _fewer(d: float, p: float) -> str:
    return f"{d / p:.2f}x fewer" if p > 0 else "—"


def _faster(d: float, p: float) -> str:
    return speed_phrase(d, p)
