"""The report of a build: dense against pruned, per group, per stage; and its summary."""
from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np


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
    d, p = report["dense"], report["pruned"]
    lines = [f"target {report['target']['name']} ({report['target']['backend']}), method {report['method']['name']}"
             f" / {report['method']['importance']}, budget {report['budget']['kind']} "
             f"{report['budget']['value']:g} ({report['budget'].get('mode', '')})",
             f"{'':14}{'dense':>12}{'pruned':>12}"]
    if d.get("accuracy") is not None:
        lines.append(f"{'accuracy':14}{d['accuracy']:>12.2%}{p['accuracy']:>12.2%}"
                     f"   ({(p['accuracy'] - d['accuracy']) * 100:+.2f} pt)")
    lines.append(f"{'MACs':14}{_h(d['macs']):>12}{_h(p['macs']):>12}   ({d['macs'] / max(p['macs'], 1):.2f}x fewer)")
    lines.append(f"{'params':14}{_h(d['params']):>12}{_h(p['params']):>12}   "
                 f"({d['params'] / max(p['params'], 1):.2f}x fewer)")
    if d.get("latency_ms") and p.get("latency_ms"):
        dl, pl = d["latency_ms"], p["latency_ms"]
        lines.append(f"{'latency p50':14}{dl['median']:>10.3f}ms{pl['median']:>10.3f}ms   "
                     f"({dl['median'] / pl['median']:.2f}x faster, batch {dl['batch']})")
        lines.append(f"{'latency p90':14}{dl['p90']:>10.3f}ms{pl['p90']:>10.3f}ms")
    if report.get("latency_result"):
        lines.append(report["latency_result"]["sentence"])
        if report["latency_result"].get("final_sentence"):
            lines.append(report["latency_result"]["final_sentence"])
    v = report["verification"]
    checks = [f"{label} {v[key]:.2g}" for label, key in (("torch vs ONNX", "torch_vs_onnx_max_abs"),
                                                         ("oracle", "oracle_max_abs")) if v.get(key) is not None]
    lines.append(f"verification {'passed' if v['passed'] else 'FAILED'}: max abs error " + ", ".join(checks))
    lines.append(f"artifacts in {out_dir}: " + ", ".join(report.get("artifacts", [])))
    return "\n".join(lines)


def _h(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"
