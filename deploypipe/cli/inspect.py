"""``deploypipe inspect model.onnx``: the channel groups of any ONNX graph."""
from __future__ import annotations

import argparse

from .args import add_json_out, add_shapes


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="show the channel groups of an ONNX model",
                       description="Analyse an ONNX graph into channel groups: which channels must be "
                       "removed together, which groups are frozen and why, and their share of the MACs.")
    p.add_argument("model", help="ONNX file")
    p.add_argument("--all", action="store_true", help="list every group (default: the 40 largest by MACs)")
    add_shapes(p)
    add_json_out(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..graph import analyse, load_onnx
    from ..graph.shapes import with_static_shapes
    from ..utils.files import check_output_path, write_json

    analysis = analyse(with_static_shapes(load_onnx(args.model), args.shapes, what=args.model))
    if args.json:
        check_output_path(args.json, args.model)
        write_json(args.json, {"model": args.model, **analysis.to_dict()})
    print(format_groups(analysis, limit=None if args.all else 40))
    if args.json:
        if args.json != "-":  # the JSON itself is on stdout
            print(f"wrote {args.json}")
    return 0


def format_groups(analysis, *, limit: int | None = 40) -> str:
    total = analysis.macs or 1
    groups = sorted(analysis.groups, key=lambda g: -g.width * g.macs_per_channel)
    shown = groups if limit is None else groups[:limit]
    lines = [f"{'id':>4}  {'width':>5}  {'status':<9}  {'MACs':>6}  reason",
             f"{'-' * 4}  {'-' * 5}  {'-' * 9}  {'-' * 6}  {'-' * 30}"]
    for g in sorted(shown, key=lambda g: g.id):
        share = g.width * g.macs_per_channel / total
        status = "prunable" if g.prunable else "frozen"
        lines.append(f"{g.id:>4}  {g.width:>5}  {status:<9}  {share:>6.1%}  {g.reasons[0] if g.reasons else ''}")
    prunable = analysis.prunable
    lines.append("")
    lines.append(f"{len(analysis.groups)} groups, {len(prunable)} prunable "
                 f"({sum(g.width for g in prunable)} of {sum(g.width for g in analysis.groups)} channels); "
                 f"{analysis.macs / 1e6:.1f} MMACs, {analysis.params / 1e6:.2f} M params")
    if limit is not None and len(groups) > limit:
        lines.append(f"({len(groups) - limit} smaller groups not shown; --all lists them)")
    return "\n".join(lines)
