"""``deploypipe shrink model.onnx -o out.onnx``: remove channels from any ONNX graph."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError, UnsupportedError
from .args import add_json_out, add_shapes, fraction, positive_int, seed


def add_parser(sub) -> None:
    p = sub.add_parser("shrink", help="physically remove channels from an ONNX model",
                       description="Remove channels from an ONNX graph, exactly: every member tensor "
                       "and shape constant follows. Choose channels with --ratio (uniform, by weight "
                       "importance) or list them with --drop.")
    p.add_argument("model", help="ONNX file (never modified)")
    p.add_argument("-o", "--output", required=True, help="where to write the smaller ONNX model")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--ratio", type=fraction, help="fraction of each prunable group's channels to remove")
    how.add_argument("--drop", metavar="FILE", help='JSON {"<group id>": [channel indices]}')
    p.add_argument("--importance", default="l1", choices=("l1", "l2", "random"),
                   help="weight-only criterion for --ratio (default l1)")
    p.add_argument("--round-to", type=positive_int, default=1, metavar="N",
                   help="keep a multiple of N channels per group (hardware-friendly widths)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--verify", action="store_true",
                   help="run the oracle: compare with the original whose dropped channels are dead")
    add_shapes(p)
    add_json_out(p)
    p.set_defaults(func=run)


def _refuse_plan_options(args: argparse.Namespace) -> None:
    """--importance, --round-to and --seed choose channels for --ratio; with --drop (the
    channels already chosen) they would be dropped in silence."""
    given = [flag for flag, value, default in (("--importance", args.importance, "l1"),
                                               ("--round-to", args.round_to, 1), ("--seed", args.seed, 0))
             if value != default]
    if given:
        raise InputError(f"{given[0]} chooses channels for --ratio, and --drop lists them already",
                         hint=f"leave {given[0]} out, or use --ratio instead of --drop")


def read_drop_file(path: str) -> dict[int, list[int]]:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"drop file {path!r} does not exist", hint="check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise InputError(f"drop file {path!r} is not JSON ({str(exc)[:80]})",
                         hint='write it as {"<group id>": [channel indices]}') from None
    if not isinstance(raw, dict):
        raise InputError(f"drop file {path!r} is not a JSON object", hint='write {"3": [0, 5]}')
    def index(c) -> int:  # a JSON integer only: 1.7, true and "01" are not channel indices
        if isinstance(c, bool) or not isinstance(c, int):
            raise ValueError(c)
        return c

    try:
        if not all(isinstance(v, list) for v in raw.values()):
            raise TypeError("not a list")
        return {int(k): [index(c) for c in v] for k, v in raw.items()}
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"drop file {path!r} must map group ids to lists of integer channel indices",
                         hint='write {"3": [0, 5]}') from None


def run(args: argparse.Namespace) -> int:
    import time

    from ..errors import VerificationError
    from ..graph import analyse, load_onnx, save_onnx, shrink, verify_shrink
    from ..prune.plan import plan_drop
    from ..utils.files import check_result_and_json, write_json

    if args.drop:
        _refuse_plan_options(args)
    check_result_and_json(args.output, args.json, args.model, args.drop)
    start = time.perf_counter()
    from ..graph.shapes import with_static_shapes

    analysis = analyse(with_static_shapes(load_onnx(args.model), args.shapes, what=args.model))
    if not analysis.prunable:
        frozen = [g for g in analysis.groups if g.frozen and g.reasons]
        first = f" (e.g. group {frozen[0].id}: {frozen[0].reasons[0]})" if frozen else ""
        raise UnsupportedError(f"no channel group of {args.model!r} can lose channels: all "
                               f"{len(analysis.groups)} are frozen{first}",
                               hint="run `deploypipe inspect` for every group's reason; nothing was written")
    if args.drop:
        drop = read_drop_file(args.drop)
    else:
        drop = plan_drop(analysis, ratio=args.ratio, importance=args.importance,
                         round_to=args.round_to, seed=args.seed)
    small = shrink(analysis, drop)
    seconds = time.perf_counter() - start
    after = analyse(small, normalized=True)
    removed = sum(len(v) for v in drop.values())
    result = {"input": args.model, "output": args.output, "groups_pruned": len(drop),
              "channels_removed": removed, "macs_before": analysis.macs, "macs_after": after.macs,
              "params_before": analysis.params, "params_after": after.params,
              "seconds": round(seconds, 3),
              "drop": {str(k): [int(c) for c in v] for k, v in drop.items()}}
    if args.verify:
        report = verify_shrink(analysis, small, drop)
        result["oracle"] = report.to_dict()
        print(report.sentence())
        if not report.passed:
            raise VerificationError(f"the shrunk model does not match the original ({report.sentence()})",
                                    hint="nothing was written; please report this model")
    save_onnx(small, args.output)
    if args.json:
        write_json(args.json, result)
    print(f"removed {removed} channels from {len(drop)} groups: "
          f"MACs {analysis.macs / 1e6:.1f}M -> {after.macs / 1e6:.1f}M "
          f"({analysis.macs / max(after.macs, 1):.2f}x fewer), params {analysis.params / 1e6:.2f}M -> "
          f"{after.params / 1e6:.2f}M; wrote {args.output}")
    return 0
