"""``deploypipe lut model.onnx --target PROFILE``: measure a model's latency table."""
from __future__ import annotations

import argparse

from ..errors import InputError
from .args import add_target, positive_int, target_from_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lut", help="measure each prunable group's latency as a function of its width on a target",
        description="Cut each prunable channel group's sub-graph (the nodes that produce, carry and "
        "consume its channels) out of the model with its real input shapes, time it on the target at "
        "widths sampled every --step channels, and cache the table per model architecture, target and "
        "machine. An interrupted run resumes; a second run measures nothing.")
    p.add_argument("model", nargs="?", help="the ONNX file")
    add_target(p)
    p.add_argument("--groups", type=_ids, metavar="IDS", help="only these group ids, e.g. 1,4,7 "
                   "(see `deploypipe inspect`)")
    p.add_argument("--step", type=positive_int, metavar="N",
                   help="sampling step in channels (default: the target's channel multiple)")
    p.add_argument("--iterations", type=positive_int, help="timed iterations per width (default: the target's)")
    p.add_argument("--no-cache", action="store_true", help="measure again and leave the cache alone")
    p.add_argument("-o", "--output", metavar="FILE", help="also write the table as JSON to FILE")
    p.add_argument("--probe-multiple", action="store_true",
                   help="instead: time one 3x3 Conv at every width from 24 to 88 channels and print the "
                   "channel multiple this target prefers (the profile's round_to)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..graph import analyse, load_onnx
    from ..hw import TableSpec, TargetTimer, measure_table
    from ..profiling import check_onnx_file
    from ..utils.files import check_output_path, write_json

    target = target_from_args(args)
    if args.output:  # before the timing, which takes minutes
        check_output_path(args.output, args.model)
    if args.probe_multiple:
        if args.model is not None or args.groups:
            raise InputError("--probe-multiple times synthetic convolutions of the target, not a model's groups",
                             hint="leave out the model and --groups, or leave out --probe-multiple")
        return _probe(target, args)
    if args.model is None:
        raise InputError("give the ONNX file to measure", hint="or use --probe-multiple to measure the "
                         "target's channel multiple")
    analysis = analyse(load_onnx(check_onnx_file(args.model)))
    spec = TableSpec(step=args.step, groups=args.groups, use_cache=not args.no_cache)
    timer = TargetTimer(target, iterations=args.iterations)
    if target.precision == "int8":  # an int8 target runs Q/DQ graphs: time the sub-graphs quantized
        from ..hw import PreparedTimer
        from ..quantize import TimingQuantizer, scheme_for

        timer = PreparedTimer(timer, TimingQuantizer("int8", scheme_for(target)))
    table = measure_table(analysis, target, spec, timer=timer)
    for line in table_lines(table):
        print(line)
    if args.output:
        write_json(args.output, table.to_dict())
        print(f"wrote {args.output}")
    return 0


def _probe(target, args: argparse.Namespace) -> int:
    from ..hw import TargetTimer
    from ..hw.align import probe_multiple
    from ..utils.files import write_json

    result = probe_multiple(target, timer=TargetTimer(target, iterations=args.iterations))
    free = ", ".join(f"x{m}: {s:.0%}" for m, s in sorted(result.round_up_free.items()))
    print(f"{target.name}: share of widths where rounding up to the multiple is no slower: {free}")
    slower = ", ".join(f"x{m}: {p:.2f}x" for m, p in sorted(result.penalty.items()))
    print(f"one channel off a multiple runs (vs the multiple): {slower}")
    print(f"preferred channel multiple on this machine: {result.multiple} (profile says {target.round_to})")
    if args.output:
        write_json(args.output, {"target": target.name, **result.to_dict()})
        print(f"wrote {args.output}")
    return 0


def table_lines(table) -> list[str]:
    """A header, one row per group (width: latency at the smallest and full width), flags."""
    m = table.meta
    lines = [f"latency table of {len(table.groups)} groups on {m.get('target')} (batch {m.get('batch')}, "
             f"{m.get('statistic')}), dense model {table.dense_ms:.4g} ms"
             + (" (from the cache)" if m.get("from_cache") else f", measured in {m.get('seconds', 0):.1f} s"),
             f"  {'group':>5}  {'width':>5}  {'samples':>7}  {'ms at min':>10}  {'ms at full':>10}  flags"]
    flagged = table.non_monotonic()
    for gid, t in sorted(table.groups.items()):
        flag = f"slower than a wider width at {flagged[gid]}" if gid in flagged else ""
        lines.append(f"  {gid:>5}  {t.width:>5}  {len(t.widths):>7}  {t.ms[0]:>10.4f}  {t.ms[-1]:>10.4f}  {flag}")
    if m.get("cache"):
        lines.append(f"cache: {m['cache']}")
    return lines


def _ids(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of group ids such as 1,4,7") from None
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of group ids such as 1,4,7")
    return ids

