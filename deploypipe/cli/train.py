"""``deploypipe train``: train a zoo architecture on a dataset and write a checkpoint."""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict

from ..errors import InputError
from .args import add_dataset, add_training, positive_int, statistics_of, train_config


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a zoo architecture on a dataset and write a checkpoint",
        description="Train --arch on --dataset with SGD and a learning-rate schedule, report the "
        "validation accuracy of every epoch and the final test accuracy, and write a "
        "weights-only checkpoint (loadable with torch.load(weights_only=True)).")
    p.add_argument("--arch", required=True, help="zoo architecture (see `deploypipe list archs`)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the checkpoint (.pt)")
    p.add_argument("--in-channels", type=positive_int, metavar="C",
                   help="channels the model takes; grey images are repeated to C (default: as stored)")
    add_dataset(p, statistics=True)
    add_training(p)
    p.add_argument("--nproc", type=positive_int, metavar="N",
                   help="train with N processes here (DDP through torchrun; the global batch stays --batch-size)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train (as ``--nproc`` processes, or under torchrun, data-parallel); rank 0 writes."""
    from ..train import distributed_session
    from ..train.launch import launch_from_cli, should_launch

    if should_launch(args.nproc):
        return launch_from_cli("train", args.nproc)
    with distributed_session():
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    from ..checkpoint import save_checkpoint
    from ..data import load_dataset
    from ..data.registry import dataset_path
    from ..models import create_model, model_info
    from ..train import evaluate, fit, is_rank_zero, seed_everything
    from ..utils.files import check_output_path, ensure_writable_dir

    start = time.perf_counter()
    out = check_output_path(args.output, dataset_path(args.dataset))
    if out.is_dir():  # else found only when the trained checkpoint is written
        raise InputError(f"output path {str(out)!r} is a folder", hint="give the checkpoint's file name, e.g. model.pt")
    ensure_writable_dir(out.parent)  # fail now, not after the training
    model_info(args.arch)
    config = train_config(args)
    mean, std = statistics_of(args)
    data = load_dataset(args.dataset, seed=args.seed, image_size=args.input_size,
                        in_channels=args.in_channels, limit=args.limit, mean=mean, std=std)
    say = print if is_rank_zero() else _quiet
    say(f"data: {data.name}, {'/'.join(map(str, data.sizes()))} train/val/test images of "
        f"{'x'.join(map(str, data.input_shape))}, {data.num_classes} classes; {data.source}")
    seed_everything(args.seed)
    model = create_model(args.arch, num_classes=data.num_classes, in_channels=data.in_channels,
                         input_size=data.image_size)
    result = fit(model, data, config)
    test_acc = evaluate(model, data.test, config.eval_batch_size)
    if not is_rank_zero():
        return 0
    save_checkpoint(out, model, metadata=_metadata(args, data, config, result, test_acc))
    say(f"{args.arch} on {data.name}: test accuracy {test_acc:.2%} after {len(result.history)} epoch(s) "
        f"(final val {result.final_val_acc:.2%}, best val {result.best_val_acc:.2%}); "
        f"{time.perf_counter() - start:.1f} s in all, {result.seconds:.1f} s training")
    say(f"wrote {out.resolve()}")
    return 0


def _quiet(*_args: object, **_kw: object) -> None:
    """``print`` on ranks other than 0."""


def _metadata(args: argparse.Namespace, data, config, result, test_acc: float) -> dict:
    """What the checkpoint records about its training: data, preprocessing, settings, results."""
    return {
        "input_shape": list(data.input_shape),
        "dataset": data.name,
        "dataset_source": data.source,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "normalize": {"mean": list(data.mean), "std": list(data.std),
                      "note": "applied to pixels scaled to [0, 1] (8-bit images) or to raw float values"},
        "train_config": {k: v for k, v in asdict(config).items() if k != "distill"},
        "history": [asdict(r) for r in result.history],
        "best_val_acc": result.best_val_acc,
        "test_acc": test_acc,
        "train_seconds": result.seconds,
        "limit": args.limit,
    }
