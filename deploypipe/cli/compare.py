"""``deploypipe compare``: the same seeded inputs through several backends, outputs checked
against the first, with the tolerance that would have passed (as Polygraphy prints it)."""
from __future__ import annotations

import argparse

from .args import add_json_out, add_target, non_negative_float, positive_int, seed, target_from_args

def add_parser(subparsers) -> None:
    from ..backends.runtimes import RUNTIMES

    names = ", ".join(f"{r.name} ({'GPU' if r.gpu else 'CPU'})" for _, r in RUNTIMES.items())
    p = subparsers.add_parser(
        "compare", help="run a model on several backends and compare their outputs",
        description="Feed the same seeded random inputs to each backend, compare every output "
        "with the first backend's (|got - ref| <= atol + rtol * |ref|), and print the largest "
        "errors, the tolerance per output and the tolerance that would have passed. Exit code "
        "1 when an output differs beyond tolerance.")
    p.add_argument("model", help="the ONNX file")
    p.add_argument("--backends", required=True, metavar="A,B,...",
                   help=f"backends to compare, the first is the reference: {names}")
    p.add_argument("--checkpoint", metavar="PT", help="the PyTorch model the torch backends run "
                   "(default: the .pt beside the ONNX file)")
    p.add_argument("--arch", help="architecture of a plain state_dict checkpoint")
    p.add_argument("--trust-model", action="store_true",
                   help="allow a pickled model checkpoint (runs code from the file)")
    add_target(p)
    p.add_argument("--batch", type=positive_int, help="batch of the inputs (default: the model's "
                   "fixed batch, else the target's, at least 2)")
    p.add_argument("--trials", type=positive_int, default=3, help="seeded inputs (default: 3)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the first input (default: 0)")
    p.add_argument("--atol", type=non_negative_float, help="absolute tolerance (default: the target's)")
    p.add_argument("--rtol", type=non_negative_float, help="relative tolerance (default: the target's)")
    p.add_argument("--cache-dir", metavar="DIR", help="engine and timing caches (default: "
                   "$DEPLOYPIPE_CACHE or ~/.cache/deploypipe)")
    add_json_out(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..backends.compare import compare_backends, parse_backends, refuse_missing
    from ..profiling import check_onnx_file
    from ..utils.files import check_output_path, write_json

    if args.json:
        check_output_path(args.json, args.model)
    backends = parse_backends(args.backends)
    path = check_onnx_file(args.model)
    target = target_from_args(args)
    tol = dataclasses.replace(target.tolerances, **{k: v for k, v in
                              (("atol", args.atol), ("rtol", args.rtol)) if v is not None})
    refuse_missing(backends, target)  # one sentence for what this machine lacks, before any work
    report = compare_backends(path, backends, target=target, checkpoint=_checkpoint(args),
                              batch=args.batch, trials=args.trials, seed=args.seed,
                              tolerances=tol, cache_dir=args.cache_dir)
    for line in report.lines():
        print(line)
    if args.json:
        write_json(args.json, report.to_dict())
        if args.json != "-":  # the JSON itself is on stdout
            print(f"wrote {args.json}")
    return 0 if report.passed else 1


def _checkpoint(args: argparse.Namespace):
    """The loaded --checkpoint module, or None (the torch backend then looks beside the
    ONNX file)."""
    if not args.checkpoint:
        return None
    from ..checkpoint import load_model

    return load_model(args.checkpoint, arch=args.arch, trust_model=args.trust_model).model
