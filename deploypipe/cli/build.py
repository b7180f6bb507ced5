"""``deploypipe build MODEL --target PROFILE -o RUN_DIR``: the whole pipeline.

The options come in groups: target, data, training and model loading are ``cli/args.py``'s,
shared with the other commands; pruning, quantization and latency budgets are the build's
own. :func:`config_from_args` turns them into one :class:`~deploypipe.pipeline.BuildConfig`.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import InputError
from ..prune.budget import ALLOCATIONS
from .args import (add_dataset, add_model_loading, add_target, add_training, fraction, non_negative_int, positive_int,
                   statistics_of, target_from_args)


FINETUNE_EPOCHS = 5  # --epochs when not given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build", help="prune, fine-tune, export, verify and profile a model for a target",
        description="Prune MODEL on exact channel groups to a budget, fine-tune it, export dense and "
        "pruned ONNX, verify both against PyTorch and the surgery oracle, and profile them on the "
        "target. MODEL is a checkpoint (.pt, .pth; not a compiled TorchScript or .pt2 program), an ONNX "
        "file (weight-only pruning, no training), or zoo:NAME to train a zoo architecture on --dataset first.")
    p.add_argument("model", help="checkpoint, ONNX file, or zoo:NAME (see `deploypipe list archs`)")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory to write")
    add_target(p)
    add_dataset(p, required=False, input_size="square", statistics=True)
    _add_pruning(p)
    _add_quantization(p)
    _add_latency(p)
    t = add_training(p, epochs=FINETUNE_EPOCHS, lr=0.01, epochs_help="fine-tuning epochs after pruning (0 skips)",
                     zero_epochs=True)
    p.set_defaults(epochs=None)  # given or not: a build that cannot fine-tune refuses a given --epochs
    t.add_argument("--distill", action="store_true", help="fine-tune with knowledge distillation from the dense model")
    t.add_argument("--pretrain-epochs", type=positive_int, default=15,
                   help="epochs to train a zoo:NAME model (default 15)")
    add_model_loading(p, input_shape=False)
    p.add_argument("--no-verify", action="store_true", help="record verification results without failing on them")
    p.add_argument("--profile-iterations", type=positive_int, help="timed iterations per model (default: the target's)")
    p.add_argument("--nproc", type=positive_int, metavar="N",
                   help="train and fine-tune with N processes here (DDP through torchrun; rank 0 writes)")
    p.set_defaults(func=run)


def _add_pruning(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pruning")
    g.add_argument("--method", help="pruning method (see `deploypipe list methods`). Default, when none of --method, "
                   "--importance, --allocation is given: with --dataset, a PyTorch model and a MACs budget, CPLI on "
                   "Fisher-per-MAC widths (--method cpli --importance fisher --allocation per-cost, the most accurate "
                   "measured on CIFAR-10); otherwise, and for what is not given, oneshot, l1, uniform")
    g.add_argument("--method-arg", action="append", metavar="KEY=VALUE", help="a method hyperparameter (repeatable)")
    g.add_argument("--density", type=fraction, metavar="D",
                   help="fbs: share of channels each input keeps (shorthand for --method-arg density=D)")
    g.add_argument("--importance", help="channel criterion (see `deploypipe list importance`; default: see --method)")
    g.add_argument("--allocation", choices=ALLOCATIONS,
                   help="uniform: every group loses the same share; global: least important channels anywhere; "
                        "per-cost: global, by importance per MAC (parameter) the channel's removal saves "
                        "(default: see --method)")
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
    g.add_argument("--bn-batches", type=non_negative_int, default=20, metavar="N",
                   help="after pruning, re-estimate BatchNorm statistics on N training batches, so that the "
                   "pruned model is accurate before fine-tuning (default 20; 0: keep the dense model's)")
    g.add_argument("--calibration-batches", type=positive_int, default=8,
                   help="batches of 64 for data-driven criteria and int8 calibration (default 8)")


def _add_quantization(p: argparse.ArgumentParser) -> None:
    q = p.add_argument_group("quantization")
    q.add_argument("--quantize", choices=("int8", "fp16"),
                   help="after fine-tuning, quantize pruned.onnx (int8: a Q/DQ graph calibrated on --dataset) and "
                   "verify it on the test split; a latency budget is then measured on quantized models "
                   "(an int8 target such as cpu-int8 implies int8)")
    q.add_argument("--keep-fp32", metavar="NODES", default="",
                   help="comma-separated Conv/Gemm node names to keep in fp32 (or first, last)")


def _add_latency(p: argparse.ArgumentParser) -> None:
    lat = p.add_argument_group("latency budgets")
    lat.add_argument("--latency-rounds", type=positive_int, default=8,
                     help="most measure-and-correct rounds (default 8)")
    lat.add_argument("--latency-tolerance", type=fraction, default=0.05,
                     help="stop once a measurement is within this fraction under the budget (default 0.05)")
    lat.add_argument("--lut-step", type=positive_int, metavar="N",
                     help="latency table sampling step in channels (default: the target's multiple)")
    lat.add_argument("--no-lut-cache", action="store_true", help="measure the latency table again")


def config_from_args(args: argparse.Namespace, argv: list[str] | None = None):
    """The :class:`~deploypipe.pipeline.BuildConfig` the command line describes, each group
    from its options."""
    from pathlib import Path

    from ..pipeline.config import (BuildConfig, DataOptions, ModelSource, OutputOptions, PruneOptions,
                                   QuantizeOptions, TrainOptions)
    from ..pipeline.latency import LatencyOptions

    mean, std = statistics_of(args)
    source = ModelSource(args.model, arch=args.arch, num_classes=args.num_classes, in_channels=args.in_channels,
                         input_size=args.input_size, trust_model=args.trust_model)
    _check_epochs(args.epochs, source, args.dataset)
    command = "deploypipe " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    return BuildConfig(
        model=source,
        target=_target(args), budget=_budget(args),
        data=DataOptions(args.dataset, limit=args.limit, calibration_batches=args.calibration_batches,
                         mean=mean, std=std),
        train=TrainOptions(epochs=FINETUNE_EPOCHS if args.epochs is None else args.epochs, lr=args.lr,
                           pretrain_epochs=args.pretrain_epochs, distill=args.distill,
                           batch_size=args.batch_size, augment=args.augment, schedule=args.schedule,
                           warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
                           label_smoothing=args.label_smoothing, max_steps_per_epoch=args.max_steps_per_epoch,
                           device=args.device, amp=args.amp),
        prune=PruneOptions(method=args.method, method_params=_method_params(args), importance=args.importance,
                           allocation=args.allocation, round_to=args.round_to, max_ratio=args.max_ratio,
                           bn_batches=args.bn_batches),
        latency=LatencyOptions(rounds=args.latency_rounds, tolerance=args.latency_tolerance, step=args.lut_step,
                               use_cache=not args.no_lut_cache),
        quantize=QuantizeOptions(args.quantize, tuple(n.strip() for n in args.keep_fp32.split(",") if n.strip())),
        output=OutputOptions(Path(args.output), command=command),
        seed=args.seed, verify=not args.no_verify, profile_iterations=args.profile_iterations)


def _check_epochs(epochs: int | None, source, dataset: str | None) -> None:
    """A given ``--epochs N`` (N > 0) that nothing would fine-tune for, refused rather than
    dropped: an ONNX file is never trained, and without --dataset there are no images."""
    if not epochs:
        return
    if source.onnx_input:
        raise InputError(f"--epochs {epochs} fine-tunes, and an ONNX file is not fine-tuned",
                         hint="pass the PyTorch checkpoint, or leave --epochs out")
    if dataset is None:
        raise InputError(f"--epochs {epochs} fine-tunes on --dataset, and none was given",
                         hint="add --dataset NAME (see `deploypipe list datasets`), or leave --epochs out")


def _budget(args: argparse.Namespace):
    from ..prune.budget import Budget

    if args.ratio is not None:
        return Budget.parse("ratio", args.ratio)
    if args.latency_budget:
        text = args.latency_budget.strip().lower()
        return Budget.parse("latency", text if text.endswith("ms") else f"{text}ms")
    if args.latency_ratio is not None:
        return Budget.parse("latency", args.latency_ratio)
    if args.params_budget:
        return Budget.parse("params", args.params_budget)
    return Budget.parse("macs", args.macs_budget or "2x")


def _method_params(args: argparse.Namespace) -> dict[str, str]:
    """--method-arg KEY=VALUE, and --density for fbs."""
    from ..prune.methods import parse_method_args

    params = parse_method_args(args.method_arg)
    if args.density is not None:
        if args.method != "fbs":
            raise InputError(f"--density is a parameter of --method fbs, not of "
                             f"{repr(args.method) if args.method else 'the default method'}",
                             hint="add --method fbs, or drop --density")
        params["density"] = str(args.density)
    return params


def _target(args: argparse.Namespace):
    """The target's name when nothing overrides it (the report and stage keys name it),
    else the overridden profile."""
    if args.precision is None and args.shapes is None and args.timing_cache is None:
        return args.target
    return target_from_args(args)


def run(args: argparse.Namespace) -> int:
    from ..pipeline.build import build
    from ..pipeline.build_report import summary
    from ..train import distributed_session, is_rank_zero
    from ..train.launch import launch_from_cli, should_launch

    if should_launch(args.nproc):
        return launch_from_cli("build", args.nproc)
    with distributed_session():
        report = build(config_from_args(args))
        if is_rank_zero():
            print(summary(report, args.output))
    return 0 if report.passed else 1
