"""Reusable argument groups, so every sub-command spells shared options the same way."""
from __future__ import annotations

import argparse
import re

from ..errors import InputError
from ..utils.checks import LARGEST_FLOAT, LARGEST_INT

_SHAPE_ITEM = re.compile(r"""\s*(?:(?:'(?P<quoted>[^']+)'|(?P<name>[^,;\s\[\]']+?)):)?
                          (?:\[(?P<list>[^\]]*)\]|(?P<dims>\d+(?:x\d+)*))
                          \s*(?:[,;\s]\s*|$)""", re.VERBOSE)


def parse_shapes(text: str) -> dict[str, tuple[int, ...]]:
    """Input shapes in trtexec's form (``x:1x3x224x224,y:1x10``, a quoted name for one with
    a colon: ``'in:0':1x3x8x8``), Polygraphy's (``x:[1,3,224,224]``; the name ends at the
    last colon, so ``in:0:[1,3,8,8]`` needs no quotes), or an unnamed
    ``1x3x32x32`` (also ``1,3,32,32``); items separated by commas, spaces or ``;``. An
    unnamed shape is stored under ``""``."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:,\d+)+", text):  # one unnamed shape with commas
        text = text.replace(",", "x")
    shapes: dict[str, tuple[int, ...]] = {}
    pos = 0
    while pos < len(text):
        m = _SHAPE_ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise InputError(f"cannot read the input shapes {text!r} from {text[pos:]!r}",
                             hint="write them as NAME:1x3x224x224[,NAME2:...] (trtexec) or "
                             "NAME:[1,3,224,224] (Polygraphy)")
        dims_text = m.group("dims") or m.group("list") or ""
        try:
            dims = tuple(int(d) for d in re.split(r"[x,]", dims_text.replace(" ", "")) if d)
        except ValueError:
            dims = ()
        name = m.group("quoted") or m.group("name") or ""
        if not dims or any(d <= 0 or d > LARGEST_INT for d in dims):
            raise InputError(f"input shape {m.group(0).strip()!r} needs positive dimensions of at most "
                             f"{LARGEST_INT}", hint="every dimension must be a positive integer, e.g. 1x3x224x224")
        if name in shapes:
            raise InputError(f"the input shapes name {name or 'an unnamed input'!r} twice",
                             hint="give each input once")
        shapes[name] = dims
        pos = m.end()
    if not shapes:
        raise InputError("empty input shape", hint="write it as NAME:1x3x32x32")
    return shapes


def add_model_loading(parser: argparse.ArgumentParser, *, input_shape: bool = True):
    """What a plain state_dict does not say; ``input_shape=False`` leaves out --input-shape
    (for commands that take --input-size)."""
    g = parser.add_argument_group("model loading")
    g.add_argument("--arch", help="architecture for a plain state_dict: a zoo name "
                   "(see `deploypipe list archs`) or package.module:factory")
    g.add_argument("--num-classes", type=positive_int, help="classes of the model's head (plain state_dict)")
    g.add_argument("--in-channels", type=positive_int, help="input channels (plain state_dict)")
    g.add_argument("--trust-model", action="store_true",
                   help="allow loading pickled Python objects (runs code from the file: only for files you trust)")
    if input_shape:
        g.add_argument("--input-shape", "--shapes", type=parse_shapes, metavar="SHAPE",
                       help="input shape as NAME:1x3x32x32 or NAME:[1,3,32,32] (default: the model's own)")
    return g


def add_target(parser: argparse.ArgumentParser, default: str = "cpu", *, overrides: bool = True,
               help_: str | None = None) -> None:
    """--target and the overrides of its profile that trtexec users expect (``overrides=False``
    for a command that reads only the profile's settings and would ignore them)."""
    parser.add_argument("--target", default=default, metavar="PROFILE",
                        help=help_ or f"target profile name or TOML path (default: {default}; "
                        "see `deploypipe list targets`)")
    if not overrides:
        return
    g = parser.add_argument_group("target overrides")
    precision = g.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                           help="run the GPU target in fp16")
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8",
                           help="run the GPU target in int8 (TensorRT, a graph with Q/DQ nodes)")
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                           help="run the target in fp32 (TF32 off)")
    g.add_argument("--shapes", type=parse_shapes, metavar="SHAPES",
                   help="the input shape with its batch, as trtexec (input:32x3x224x224) or "
                   "Polygraphy (input:[32,3,224,224]) write it; sets the target's batch")
    g.add_argument("--timing-cache", metavar="FILE",
                   help="TensorRT timing cache to read and update (default: one per machine "
                   "in deploypipe's cache folder)")


def target_from_args(args: argparse.Namespace):
    """The :class:`TargetProfile` that ``add_target``'s options describe."""
    from ..targets import load_target

    shape = None
    if getattr(args, "shapes", None):
        if len(args.shapes) > 1:
            raise InputError(f"--shapes gives {len(args.shapes)} inputs "
                             f"({', '.join(args.shapes)}), but a target takes one input shape",
                             hint="give the shape of the model's image input alone")
        _check_input_name(args.shapes, getattr(args, "model", None))
        (shape,) = args.shapes.values()
    return load_target(args.target).overridden(
        precision=getattr(args, "precision", None), shape=shape,
        timing_cache=getattr(args, "timing_cache", None))


def _check_input_name(shapes: dict[str, tuple[int, ...]], model: str | None) -> None:
    """Refuse a --shapes input name the model does not have (a target keeps the shape alone, so
    a wrong name would otherwise be dropped in silence): an ONNX file's graph inputs, or
    ``input``, the name deploypipe exports a PyTorch model's input under."""
    named = [name for name in shapes if name]
    if not named or model is None:
        return
    names = ["input"]
    if str(model).lower().endswith(".onnx"):
        try:
            import onnx

            graph = onnx.load(str(model), load_external_data=False).graph
        except Exception:  # noqa: BLE001  (an unreadable file is reported where it is loaded)
            return
        weights = {init.name for init in graph.initializer}
        names = [i.name for i in graph.input if i.name not in weights] or names
    if named[0] not in names:
        dims = "x".join(str(d) for d in shapes[named[0]])
        raise InputError(f"--shapes names the input {named[0]!r}, but the model's input is "
                         f"{' or '.join(repr(n) for n in names)}",
                         hint=f"write --shapes {names[0]}:{dims}, or leave the name out ({dims})")


def add_shapes(parser: argparse.ArgumentParser) -> None:
    """--shapes for commands that read an ONNX graph (its dynamic dims fixed for the analysis)."""
    parser.add_argument("--shapes", type=parse_shapes, metavar="SHAPES",
                        help="input shapes for a graph with dynamic dims, as trtexec (x:1x3x224x224) or "
                        "Polygraphy (x:[1,3,224,224]) write them (default: the graph's own; a dynamic batch is 1)")


def add_json_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE (- : to stdout, "
                        "everything else to stderr)")


def _number(text: str, kind: type, what: str):
    """``text`` as ``kind`` (int or float), or argparse's error naming ``what`` it is not."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None




def non_negative_int(text: str) -> int:
    v = _number(text, int, "an integer")
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    if v > LARGEST_INT:
        raise argparse.ArgumentTypeError(f"{text!r} is too large (at most {LARGEST_INT})")
    return v


def seed(text: str) -> int:
    """A random seed: an integer from 0 to 2^32 - 1 (numpy refuses negatives, torch overflows)."""
    v = _number(text, int, "an integer")
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to {2**32 - 1}")
    return v


def positive_int(text: str) -> int:
    return _nonzero(non_negative_int(text), text)


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    v = _number(text, float, "a number")
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be strictly between 0 and 1")
    return v


def non_negative_float(text: str) -> float:
    v = _number(text, float, "a number")
    if not v >= 0.0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    if v > LARGEST_FLOAT:
        raise argparse.ArgumentTypeError(f"{text!r} is too large (at most {LARGEST_FLOAT:g})")
    return v


def positive_float(text: str) -> float:
    return _nonzero(non_negative_float(text), text)


def _nonzero(v, text: str):
    """``v`` (``text`` read as a number >= 0) unless it is zero."""
    if v == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


def image_size(text: str) -> tuple[int, int]:
    """``28`` or ``28x32`` (height x width)."""
    parts = re.split(r"[x,]", text.strip())
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write N or HxW")
    h, w = (positive_int(p) for p in (parts * 2)[:2])
    return h, w


def add_dataset(parser: argparse.ArgumentParser, *, default: str | None = None, required: bool | None = None,
                input_size: str | None = "resize", statistics: bool = False):
    """--dataset, --input-size, --limit: what ``deploypipe.data.load_dataset`` takes; the group.
    ``required`` defaults to having no default; ``input_size`` is "resize" (N or HxW), "square"
    (N, the model's input) or None (no --input-size)."""
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", required=default is None if required is None else required, default=default,
                   metavar="SPEC", help="digits, mnist, mnist:DIR, cifar10:PATH, folder:DIR, npz:FILE, py:FILE.py:FUNCTION or "
                   "synthetic[:k=v,...] "
                   f"(see `deploypipe list datasets`){f'; default: {default}' if default else ''}")
    if input_size == "square":
        g.add_argument("--input-size", type=positive_int, metavar="N",
                       help="square input size in pixels (default: the model's, or the images' as stored)")
    elif input_size == "resize":
        g.add_argument("--input-size", type=image_size, metavar="N|HxW",
                       help="resize the images (bilinear) to N x N or H x W (default: as stored)")
    g.add_argument("--limit", type=positive_int, metavar="N",
                   help="use at most N images per split, stratified (for quick runs)")
    if statistics:
        g.add_argument("--mean", type=floats, metavar="M[,M...]",
                       help="per-channel mean the model was trained with, on pixels in [0, 1] (default: the "
                       "checkpoint's stored normalisation, else computed on the training split)")
        g.add_argument("--std", type=floats, metavar="S[,S...]", help="per-channel standard deviation, as --mean")
    return g


def floats(text: str) -> tuple[float, ...]:
    """``0.5`` or ``0.49,0.48,0.45``: one value, or one per channel."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one number")
    return values


def statistics_of(args: argparse.Namespace) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """(--mean, --std), both or neither."""
    mean, std = getattr(args, "mean", None), getattr(args, "std", None)
    if (mean is None) != (std is None):
        from ..errors import InputError

        raise InputError(f"--{'mean' if mean is not None else 'std'} was given without --{'std' if mean is not None else 'mean'}",
                         hint="pass both --mean and --std (one value per channel), or neither")
    return mean, std


def add_training(parser: argparse.ArgumentParser, *, epochs: int | None = None, lr: float = 0.1,
                 epochs_help: str = "training epochs", zero_epochs: bool = False):
    """SGD training options, spelled once for every command that trains or fine-tunes
    (``zero_epochs``: --epochs 0 skips the training)."""
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=non_negative_int if zero_epochs else positive_int, required=epochs is None,
                   default=epochs, help=epochs_help + (f" (default: {epochs})" if epochs else ""))
    g.add_argument("--lr", type=positive_float, default=lr, help=f"peak learning rate (default: {lr:g})")
    g.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default: 128)")
    g.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine",
                   help="learning-rate schedule per step (default: cosine)")
    g.add_argument("--warmup-epochs", type=non_negative_float, default=0.0,
                   help="linear warm-up epochs (default: 0)")
    g.add_argument("--weight-decay", type=non_negative_float, default=5e-4, help="default: 5e-4")
    g.add_argument("--label-smoothing", type=non_negative_float, default=0.0, help="default: 0")
    g.add_argument("--augment", choices=("none", "crop-flip"), default="none",
                   help="crop-flip: 4-pixel padded random crop and mirror, the CIFAR recipe "
                   "(default: none; flipping is wrong for digits and text)")
    g.add_argument("--max-steps-per-epoch", type=positive_int, metavar="N",
                   help="cap the optimizer steps of each epoch (for quick runs)")
    g.add_argument("--seed", type=seed, default=0, help="seed of data split, order and init (default: 0)")
    g.add_argument("--device", metavar="DEVICE", default=None,
                   help="train on cpu, cuda or cuda:N (default: the CPU); on a GPU the data stays on it "
                   "and the model runs channels-last")
    g.add_argument("--amp", action="store_true", help="bfloat16 mixed precision (autocast) while training")
    return g


def train_config(args: argparse.Namespace, **overrides):
    """The ``TrainConfig`` that ``add_training``'s options describe."""
    from ..train import TrainConfig
    from ..train.device import device_options

    values = dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, schedule=args.schedule,
                  warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
                  label_smoothing=args.label_smoothing, max_steps_per_epoch=args.max_steps_per_epoch,
                  seed=args.seed, augment=args.augment, **device_options(args.device, args.amp))
    return TrainConfig(**{**values, **overrides})
