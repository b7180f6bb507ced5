"""``deploypipe build MODEL --target PROFILE -o RUN_DIR``: the whole pipeline."""
from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import InputError
from .args import add_target, fraction, positive_int, target_from_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build", help="prune, fine-tune, export, verify and profile a model for a target",
        description="Prune MODEL on exact channel groups to a budget, fine-tune it, export dense and "
        "pruned ONNX, verify both against PyTorch and the surgery oracle, and profile them on the "
        "target. MODEL is a checkpoint (.pt, .pth, .pt2, TorchScript), an ONNX file (weight-only "
        "pruning, no training), or zoo:NAME to train a zoo architecture on --dataset first.")
    p.add_argument("model", help="checkpoint, ONNX file, or zoo:NAME (see `deploypipe list archs`)")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory to write")
    add_target(p)
    p.add_argument("--dataset", help="data for accuracy, calibration and fine-tuning (see `deploypipe list datasets`)")
    g = p.add_argument_group("pruning")
    g.add_argument("--method", default="oneshot", help="pruning method (see `deploypipe list methods`)")
    g.add_argument("--method-arg", action="append", metavar="KEY=VALUE", help="a method hyperparameter (repeatable)")
    g.add_argument("--density", type=fraction, metavar="D",
                   help="fbs: share of channels each input keeps (shorthand for --method-arg density=D)")
    g.add_argument("--importance", default="l1", help="channel criterion (see `deploypipe list importance`)")
    g.add_argument("--allocation", default="uniform", choices=("uniform", "global"),
                   help="uniform: every group loses the same share; global: least important channels anywhere")
    budget = g.add_mutually_exclusive_group()
    budget.add_argument("--ratio", type=fraction, help="fraction of channels to remove")
    budget.add_argument("--macs-budget", metavar="X", help="0.5 = keep half the MACs, 2x = 2x fewer, 20M = absolute "
                        "(default: 2x)")
    budget.add_argument("--params-budget", metavar="X", help="as --macs-budget, for parameters")
    budget.add_argument("--latency-budget", metavar="MS", help="measured latency on the target, e.g. 5ms "
                        "(a plain number is in ms)")
    budget.add_argument("--latency-ratio", type=fraction, metavar="F",
                        help="measured latency as a fraction of the dense model's on the target, e.g. 0.5")
    g.add_argument("--round-to", type=positive_int, metavar="N",
                   help="keep multiples of N channels (default: the target's preferred multiple)")
    g.add_argument("--max-ratio", type=fraction, default=0.9, help="most a single group may lose (default 0.9)")
    g.add_argument("--calibration-batches", type=positive_int, default=8,
                   help="batches of 64 for data-driven criteria and int8 calibration (default 8)")
    q = p.add_argument_group("quantization")
    q.add_argument("--quantize", choices=("int8", "fp16"),
                   help="after fine-tuning, quantize pruned.onnx (int8: a Q/DQ graph calibrated on --dataset) and "
                   "verify it on the test split; a latency budget is then measured on quantized models "
                   "(an int8 target such as cpu-int8 implies int8)")
    q.add_argument("--keep-fp32", metavar="NODES", default="",
                   help="comma-separated Conv/Gemm node names to keep in fp32 (or first, last)")
    lat = p.add_argument_group("latency budgets")
    lat.add_argument("--latency-rounds", type=positive_int, default=8,
                     help="most measure-and-correct rounds (default 8)")
    lat.add_argument("--latency-tolerance", type=fraction, default=0.05,
                     help="stop once a measurement is within this fraction under the budget (default 0.05)")
    lat.add_argument("--lut-step", type=positive_int, metavar="N",
                     help="latency table sampling step in channels (default: the target's multiple)")
    lat.add_argument("--no-lut-cache", action="store_true", help="measure the latency table again")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs after pruning (default 5; 0 skips)")
    t.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate (default 0.01)")
    t.add_argument("--batch-size", type=positive_int, default=128)
    t.add_argument("--distill", action="store_true", help="fine-tune with knowledge distillation from the dense model")
    t.add_argument("--augment", choices=("none", "crop-flip"), default="none",
                   help="crop-flip: 4-pixel padded random crop and mirror (CIFAR); default none")
    t.add_argument("--pretrain-epochs", type=positive_int, default=15, help="epochs to train a zoo:NAME model (default 15)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=positive_int, help="use at most N images per split (quick runs)")
    m = p.add_argument_group("model loading")
    m.add_argument("--arch", help="architecture of a plain state_dict: zoo name or package.module:factory")
    m.add_argument("--num-classes", type=positive_int)
    m.add_argument("--in-channels", type=positive_int)
    m.add_argument("--input-size", type=positive_int, help="square input size in pixels")
    m.add_argument("--trust-model", action="store_true",
                   help="allow pickled Python objects (runs code from the file: only for files you trust)")
    p.add_argument("--no-verify", action="store_true", help="record verification results without failing on them")
    p.add_argument("--profile-iterations", type=positive_int, help="timed iterations per model (default: the target's)")
    p.add_argument("--nproc", type=positive_int, metavar="N",
                   help="train and fine-tune with N processes here (DDP through torchrun; rank 0 writes)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace, argv: list[str] | None = None):
    from pathlib import Path

    from ..prune.budget import Budget
    from ..prune.methods import parse_method_args
    from ..pipeline.config import BuildConfig
    from ..pipeline.latency import LatencyOptions

    if args.ratio is not None:
        budget = Budget.parse("ratio", args.ratio)
    elif args.latency_budget:
        text = args.latency_budget.strip().lower()
        budget = Budget.parse("latency", text if text.endswith("ms") else f"{text}ms")
    elif args.latency_ratio is not None:
        budget = Budget.parse("latency", args.latency_ratio)
    elif args.params_budget:
        budget = Budget.parse("params", args.params_budget)
    else:
        budget = Budget.parse("macs", args.macs_budget or "2x")
    method_params = parse_method_args(args.method_arg)
    if args.density is not None:
        if args.method != "fbs":
            raise InputError(f"--density is a parameter of --method fbs, not of {args.method!r}",
                             hint="add --method fbs, or drop --density")
        method_params["density"] = str(args.density)
    command = "deploypipe " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    return BuildConfig(model=args.model, out_dir=Path(args.output), target=_target(args), dataset=args.dataset,
                       method=args.method, method_params=method_params,
                       importance=args.importance, allocation=args.allocation, budget=budget,
                       round_to=args.round_to, max_ratio=args.max_ratio, epochs=max(0, args.epochs), lr=args.lr,
                       batch_size=args.batch_size, distill=args.distill, augment=args.augment,
                       pretrain_epochs=args.pretrain_epochs,
                       calibration_batches=args.calibration_batches, seed=args.seed, limit=args.limit,
                       arch=args.arch, num_classes=args.num_classes, in_channels=args.in_channels,
                       input_size=args.input_size, trust_model=args.trust_model, verify=not args.no_verify,
                       profile_iterations=args.profile_iterations, command=command, quantize=args.quantize,
                       keep_fp32=tuple(n.strip() for n in args.keep_fp32.split(",") if n.strip()),
                       latency=LatencyOptions(rounds=args.latency_rounds, tolerance=args.latency_tolerance,
                                              step=args.lut_step, use_cache=not args.no_lut_cache))


def _target(args: argparse.Namespace):
    """The target's name when nothing overrides it (the report and stage keys name it),
    else the overridden profile."""
    if args.precision is None and args.shapes is None and args.timing_cache is None:
        return args.target
    return target_from_args(args)


def run(args: argparse.Namespace) -> int:
    from ..pipeline.build import build
    from ..pipeline.report import summary
    from ..train import distributed_session, is_rank_zero
    from ..train.launch import launch_from_cli, should_launch

    if should_launch(args.nproc):
        return launch_from_cli("build", args.nproc)
    with distributed_session():
        report = build(config_from_args(args))
        if is_rank_zero():
            print(summary(report, args.output))
    return 0 if report["verification"]["passed"] else 1
