"""Reusable argument groups, so every sub-command spells shared options the same way."""
from __future__ import annotations

import argparse
import re

from ..errors import InputError

_SHAPE_RE = re.compile(r"^(?:(?P<name>[^:,]+):)?(?P<dims>\d+(?:[x,]\d+)*)$")


def parse_shapes(text: str) -> dict[str, tuple[int, ...]]:
    """Parse trtexec/Polygraphy-style shapes: ``x:1x3x32x32`` or ``1x3x32x32``;
    several separated by spaces or ``;``. An unnamed shape is stored under ``""``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for part in re.split(r"[;\s]+", text.strip()):
        if not part:
            continue
        m = _SHAPE_RE.match(part)
        if not m:
            raise InputError(f"cannot read input shape {part!r}",
                             hint="write it as NAME:1x3x32x32 or 1x3x32x32")
        dims = tuple(int(d) for d in re.split(r"[x,]", m.group("dims")))
        if any(d <= 0 for d in dims):
            raise InputError(f"input shape {part!r} has a zero dimension",
                             hint="every dimension must be a positive integer")
        shapes[m.group("name") or ""] = dims
    if not shapes:
        raise InputError("empty --input-shape", hint="write it as NAME:1x3x32x32")
    return shapes


def add_model_loading(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model loading")
    g.add_argument("--arch", help="architecture for a plain state_dict: a zoo name "
                   "(see `deploypipe list archs`) or package.module:factory")
    g.add_argument("--num-classes", type=int, help="classes of the model's head (plain state_dict)")
    g.add_argument("--in-channels", type=int, help="input channels (plain state_dict)")
    g.add_argument("--trust-model", action="store_true",
                   help="allow loading pickled Python objects (runs code from the file: only for files you trust)")
    g.add_argument("--input-shape", type=parse_shapes, metavar="SHAPE",
                   help="input shape as NAME:1x3x32x32 (default: the model's own)")


def add_target(parser: argparse.ArgumentParser, default: str = "cpu") -> None:
    parser.add_argument("--target", default=default, metavar="PROFILE",
                        help=f"target profile name or TOML path (default: {default}; "
                        "see `deploypipe list targets`)")


def add_json_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be strictly between 0 and 1")
    return v
