"""``deploypipe list``: what is registered (architectures, datasets, targets, backends,
pruning methods, importance criteria), one line each."""
from __future__ import annotations

import argparse
import importlib
from typing import Callable

Rows = list[tuple[str, str]]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("list", help="list architectures, datasets, targets, backends, "
                              "pruning methods or importance criteria",
                              description="Show what can be named on the command line, with a "
                              "one-line description of each.")
    p.add_argument("what", choices=sorted(_LISTERS), help="what to list")
    p.add_argument("--all", action="store_true",
                   help="archs: include the tiny test_* variants used by the tests")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = _LISTERS[args.what](args)
    if not rows:
        print(f"no {_NOUNS.get(args.what, args.what)} are registered in this version of deploypipe")
        return 0
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    return 0


def _archs(args: argparse.Namespace) -> Rows:
    from ..models import list_models, model_info

    rows = []
    for name in list_models(include_test=args.all):
        info = model_info(name)
        c, h, w = info.default_input
        rows.append((name, f"{info.description} Input {c}x{h}x{w}, {info.default_classes} classes."))
    return rows


def _datasets(args: argparse.Namespace) -> Rows:
    from ..data import describe_datasets

    return sorted(describe_datasets().items())


def _targets(args: argparse.Namespace) -> Rows:
    from ..targets import DEFAULT_TARGET, list_targets

    return [(t.name, f"{t.description}{' (default)' if t.name == DEFAULT_TARGET else ''} "
             f"[{t.summary()}]") for t in list_targets()]


def _backends(args: argparse.Namespace) -> Rows:
    from ..backends import list_backends

    return [(spec.name, f"{spec.description} [{'available' if reason is None else reason}]")
            for spec, reason in list_backends()]


def _registry_lister(modules: tuple[str, ...], kind_words: tuple[str, ...]) -> Callable[..., Rows]:
    """List a registry that another part of deploypipe may not have written yet: the first
    :class:`Registry` found in ``modules`` whose kind mentions one of ``kind_words``."""

    def lister(args: argparse.Namespace) -> Rows:
        from .._registry import Registry

        for module_name in modules:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            for value in vars(module).values():
                if isinstance(value, Registry) and any(w in value.kind for w in kind_words):
                    return [(name, _describe(obj)) for name, obj in value.items()]
        return []

    return lister


def _describe(obj: object) -> str:
    text = getattr(obj, "description", None) or (getattr(obj, "__doc__", None) or "")
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


_NOUNS = {"archs": "architectures", "methods": "pruning methods",
          "importance": "importance criteria"}

_LISTERS: dict[str, Callable[[argparse.Namespace], Rows]] = {
    "archs": _archs,
    "datasets": _datasets,
    "targets": _targets,
    "backends": _backends,
    "methods": _registry_lister(("deploypipe.prune.methods", "deploypipe.prune"), ("method",)),
    "importance": _registry_lister(("deploypipe.prune.importance", "deploypipe.prune"),
                                   ("importance", "criteri")),
}
