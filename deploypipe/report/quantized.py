"""The page's quantization section: dense fp32, pruned fp32 and pruned quantized side by
side, the quantized model's verification per output, and the layers kept in fp32."""
from __future__ import annotations

from typing import Any

from .html import Section, esc, note, table, verdict
from .summary import _count, _ms, _num, _pct

TITLE = "Quantization"


def quantized_section(report: dict[str, Any]) -> Section:
    """The three models side by side, the per-output verification, the layers kept in fp32."""
    q = report.get("quantized")
    if not q:
        return Section("quantized", TITLE, note("This build did not quantize (see `deploypipe build --quantize`)."))
    cols = [report.get("dense") or {}, report.get("pruned") or {}, q]
    lat = [c.get("latency_ms") or {} for c in cols]
    rows = [["accuracy", *(_pct(c.get("accuracy")) for c in cols)],
            ["MACs", *(_count(c.get("macs")) for c in cols)],
            ["parameters", *(_count(c.get("params")) for c in cols)],
            ["size on disk (bytes)", *(_count(c.get("size_bytes")) for c in cols)],
            ["latency median (ms)", *(_ms(x.get("median")) for x in lat)],
            ["latency p90 (ms)", *(_ms(x.get("p90")) for x in lat)]]
    side = q.get("side_by_side") or {}
    if side.get("ms"):
        rows.append(["timed interleaved (ms)", *(_ms(ms) for ms in side["ms"])])
    body = table(["", "dense fp32", "pruned fp32", f"pruned {esc(q.get('precision'))}"], rows)
    v = (report.get("verification") or {}).get("quantized") or {}
    outputs = [[o.get("name"), _pct(o.get("agreement")), _pct(o.get("min_agreement")), _num(o.get("error_p99", o.get("max_abs")), "{:.3g}"),
                _num(o.get("tolerance_abs"), "{:.3g}"), verdict(o.get("passed"))] for o in v.get("outputs") or []]
    body += table(["output", "top-1 agreement", "at least", "error (99% of images)", "at most", ""], outputs)
    body += f"<p>against pruned fp32 on {esc(v.get('images'))} held-out images: {verdict(v.get('passed'))}</p>"
    kept = [[k.get("name"), k.get("reason")] for k in q.get("kept_fp32") or []]
    body += table(["layer kept in fp32", "why"], kept, text_columns=(1,)) if kept else \
        note(f"Every Conv/Gemm layer runs in {q.get('precision')}.")
    cal = q.get("calibration") or {}
    body += note(f"{q.get('library')}; calibrated on {cal.get('images')} training images, per-channel weights: "
                 f"{cal.get('per_channel_weights')}.")
    return Section("quantized", TITLE, body)
