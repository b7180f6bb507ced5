"""The report of a build: dense against pruned, per group, per stage; and its summary."""
from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from ..measure.stats import speed_phrase


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def latency(prof) -> dict[str, float] | None:
    if prof is None:
        return None
    s = prof.stats
    return {"median": s.median, "p90": s.p90, "p99": s.p99, "mean": s.mean, "cv": s.cv,
            "throughput": s.throughput, "batch": prof.batch, "iterations": s.n}


def dense_vs_pruned(dense_a, pruned_a, dense_acc, pruned_acc, dense_prof, pruned_prof) -> dict[str, Any]:
    return {
        "dense": {"macs": dense_a.macs, "params": dense_a.params, "accuracy": dense_acc,
                  "latency_ms": latency(dense_prof)},
        "pruned": {"macs": pruned_a.macs, "params": pruned_a.params, "accuracy": pruned_acc,
                   "latency_ms": latency(pruned_prof)},
    }


def group_rows(pruner, dense_widths: np.ndarray, dense_reasons: dict[int, list[str]]) -> list[dict]:
    after = pruner.widths()
    rows = []
    for g in pruner.groups:
        reasons = dense_reasons.get(g.id, [])
        rows.append({"id": g.id, "width_before": int(dense_widths[g.id]), "width_after": int(after[g.id]),
                     "frozen": bool(reasons), "reason": "; ".join(reasons) or None})
    return rows


def summary(report: dict[str, Any], out_dir: str) -> str:
    lines = [f"target {report['target']['name']} ({report['target']['backend']}), method {report['method']['name']}"
             f" / {report['method']['importance']}, budget {report['budget']['kind']} "
             f"{report['budget']['value']:g} ({report['budget'].get('mode', '')})", *_table(report)]
    if report.get("quantized"):
        lines += _quantized_lines(report["quantized"], report["verification"]["quantized"])
    if report.get("latency_result"):
        if report["latency_result"].get("budget_conversion"):
            lines.append(report["latency_result"]["budget_conversion"]["sentence"])
        lines.append(report["latency_result"]["sentence"])
        if report["latency_result"].get("final_sentence"):
            lines.append(report["latency_result"]["final_sentence"])
    v = report["verification"]
    checks = [f"{label} {v[key]:.2g}" for label, key in (("torch vs ONNX", "torch_vs_onnx_max_abs"),
                                                         ("oracle", "oracle_max_abs")) if v.get(key) is not None]
    lines.append(f"verification {'passed' if v['passed'] else 'FAILED'}: max abs error " + ", ".join(checks))
    lines.append(f"artifacts in {out_dir}: " + ", ".join(report.get("artifacts", [])))
    return "\n".join(lines)


def _table(report: dict[str, Any]) -> list[str]:
    """Dense, pruned (and pruned quantized) side by side; the note compares the last column
    with dense."""
    cols = [("dense", report["dense"]), ("pruned", report["pruned"])]
    if report.get("quantized"):
        cols.append((f"pruned {report['quantized']['precision']}", report["quantized"]))
    d, last = cols[0][1], cols[-1][1]

    def row(label: str, cells: list[str], note: str = "") -> str:
        return f"{label:14}" + "".join(f"{c:>14}" for c in cells) + (f"   ({note})" if note else "")

    rows = [row("", [name for name, _ in cols])]
    if all(c.get("accuracy") is not None for _, c in cols):
        rows.append(row("accuracy", [f"{c['accuracy']:.2%}" for _, c in cols],
                        f"{(last['accuracy'] - d['accuracy']) * 100:+.2f} pt"))
    for label, key in (("MACs", "macs"), ("params", "params")):
        rows.append(row(label, [_h(c[key]) for _, c in cols], f"{d[key] / max(last[key], 1):.2f}x fewer"))
    if all(c.get("size_bytes") for _, c in cols):
        rows.append(row("size on disk", [f"{_h(c['size_bytes'])}B" for _, c in cols],
                        f"{d['size_bytes'] / last['size_bytes']:.2f}x smaller"))
    if all(c.get("latency_ms") for _, c in cols):
        lat = [c["latency_ms"] for _, c in cols]
        rows.append(row("latency p50", [f"{x['median']:.3f}ms" for x in lat],
                        f"{speed_phrase(lat[0]['median'], lat[-1]['median'])}, batch {lat[0]['batch']}"))
        rows.append(row("latency p90", [f"{x['p90']:.3f}ms" for x in lat]))
    return rows


def _quantized_lines(q: dict[str, Any], verification: dict[str, Any]) -> list[str]:
    """The quantized model: layers kept in fp32, its verification, the interleaved timing."""
    kept = ", ".join(k["name"] for k in q["kept_fp32"]) or "none"
    done = sum(p == q["precision"] for p in q["layers"].values())
    lines = [f"{q['file']}: {done} of {len(q['layers'])} Conv/Gemm layers in {q['precision']}, kept in fp32: {kept}; "
             f"{verification['sentence']}"]
    side = q.get("side_by_side") or {}
    if side.get("ms"):
        dense, pruned, quant = side["ms"]
        lines.append(f"timed interleaved: dense {dense:.3f} ms, pruned {pruned:.3f} ms, pruned {q['precision']} "
                     f"{quant:.3f} ms ({speed_phrase(dense, quant)} than dense)")
    return lines


def _h(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"
