"""``deploypipe profile``: latency statistics and per-layer times of an ONNX model on a target."""
from __future__ import annotations

import argparse

from .args import add_json_out, add_target, non_negative_int, positive_int, target_from_args


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "profile", help="measure an ONNX model's latency and per-layer times on a target",
        description="Warm up, time many iterations on random inputs of the model's shape, and "
        "print mean/median/p90/p95/p99, the coefficient of variation, throughput, the "
        "machine's fingerprint and the slowest layers.")
    p.add_argument("model", help="the ONNX file")
    add_target(p)
    p.add_argument("--batch", type=positive_int, help="batch size for dynamic batch dims "
                   "(default: the target's)")
    p.add_argument("--threads", type=non_negative_int, help="intra-op threads, 0 = library default "
                   "(default: the target's)")
    p.add_argument("--iterations", type=positive_int, help="timed iterations (default: the target's)")
    p.add_argument("--warmup", type=non_negative_int, metavar="N", help="untimed warm-up iterations "
                   "(default: the target's)")
    p.add_argument("--per-layer", action=argparse.BooleanOptionalAction, default=True,
                   help="also profile per-layer times (default: on)")
    p.add_argument("--top", type=positive_int, default=10, help="layers to show (default: 10)")
    add_json_out(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..profiling import profile_onnx
    from ..utils.files import check_output_path, write_json

    if args.json:
        check_output_path(args.json, args.model)
    result = profile_onnx(args.model, target_from_args(args), batch=args.batch, threads=args.threads,
                          per_layer=args.per_layer, warmup=args.warmup,
                          iterations=args.iterations)
    for line in report_lines(result, top=args.top):
        print(line)
    if args.json:
        write_json(args.json, result.to_dict())
        if args.json != "-":  # the JSON itself is on stdout
            print(f"wrote {args.json}")
    return 0


def report_lines(result, *, top: int = 10) -> list[str]:
    """The human report of a :class:`ProfileResult`."""
    t, s = result.target, result.stats
    shapes = ", ".join(f"{n} {'x'.join(map(str, v))}" for n, v in result.input_shapes.items())
    lines = [
        f"{result.model} on target {t.name} ({result.backend}: {', '.join(result.providers)}), "
        f"batch {result.batch}, threads {t.threads or 'default'}, input {shapes}",
        f"latency over {s.n} iterations ({t.warmup} warm-up): mean {s.mean:.3f} ms, "
        f"median {s.median:.3f} ms, p90 {s.p90:.3f} ms, p95 {s.p95:.3f} ms, p99 {s.p99:.3f} ms "
        f"(min {s.min:.3f}, max {s.max:.3f})",
        f"CV {100 * s.cv:.1f} %, throughput {s.throughput:.1f} inferences/s; "
        f"target statistic {t.statistic}: {result.latency_ms:.3f} ms",
        f"machine: {result.fingerprint.summary()}",
    ]
    return lines + _layer_lines(result, top)


def _layer_lines(result, top: int) -> list[str]:
    if not result.layers:
        return []
    rows = result.top_layers(top)
    lines = [f"top {len(rows)} of {len(result.layers)} layers by share of layer time "
             f"({result.backend} profiler):",
             f"  {'median ms':>9}  {'avg ms':>8}  {'%':>5}  {'op':<18} name"]
    for r in rows:
        lines.append(f"  {r.medianMs:9.3f}  {r.averageMs:8.3f}  {r.percentage:5.1f}  "
                     f"{r.op_type:<18} {r.name}")
    return lines

