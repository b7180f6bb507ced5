"""The ``deploypipe`` command line: a thin layer over the public API.

Each sub-command lives in its own module with ``add_parser(subparsers)``; modules import
heavy libraries (torch, onnxruntime, tensorrt) only inside the function that runs the
command, so ``deploypipe --help`` works on any machine.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys
import warnings

from .. import __version__
from ..errors import DeploypipeError

# Sub-command modules, in the order ``--help`` lists them.
COMMANDS = (
    "build",
    "train",
    "export",
    "inspect",
    "shrink",
    "quantize",
    "profile",
    "lut",
    "compare",
    "bench",
    "report",
    "list_cmd",
)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one sentence (no usage block), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"deploypipe: error: {message}; see `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="deploypipe",
        description="Prune a trained CNN on exact channel groups, export it to ONNX, "
        "build an engine and measure it on the target hardware.",
    )
    parser.add_argument("--version", action="version", version=f"deploypipe {__version__}")
    _add_output_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    for command in sub.choices.values():  # the same options after the sub-command too
        _add_output_options(command, argparse.SUPPRESS)
    return parser


def _add_output_options(parser: argparse.ArgumentParser, default) -> None:
    """``--debug``, ``-v`` and ``-q``, accepted before and after the sub-command: after it they
    default to SUPPRESS, so they set the value only when given there."""
    g = parser.add_argument_group("output")
    g.add_argument("--debug", action="store_true", default=default if default is not None else False,
                   help="show tracebacks and library warnings")
    g.add_argument("-v", "--verbose", action="count", default=default if default is not None else 0,
                   help="more output")
    g.add_argument("-q", "--quiet", action="store_true", default=default if default is not None else False,
                   help="only warnings and errors")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0)
    except DeploypipeError as exc:  # an option's own parser refused its value (--shapes)
        print(f"deploypipe: error: {exc.sentence()}", file=sys.stderr)
        return exc.exit_code
    if args.command is None:
        parser.print_help()
        return 2
    from ..utils import log

    log.configure(-1 if args.quiet else args.verbose)
    if not args.debug:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
    try:
        return _run(args)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:
        if args.debug:  # the traceback, whatever it is
            raise
        code = _said(exc)
        return code if code is not None else _internal_error(exc)


def _said(exc: BaseException) -> int | None:
    """Print the one sentence for an error the user can act on and return the exit code;
    None for our own bug."""
    def error(sentence: str, code: int = 2) -> int:
        print(f"deploypipe: error: {sentence}", file=sys.stderr)
        return code

    if isinstance(exc, DeploypipeError):
        return error(exc.sentence(), exc.exit_code)
    if _caused_by_interrupt(exc):  # Ctrl-C inside a library that re-raised it as its own error
        return _interrupted()
    if isinstance(exc, MemoryError) or _is_out_of_memory(exc):  # torch and ONNX Runtime say it their own way
        return error("out of memory; use a smaller batch, input size or model.")
    if isinstance(exc, OSError) and exc.filename is not None and exc.errno in _PATH_ERRORS:  # the user's path
        return error(f"cannot use {str(exc.filename)!r}: {exc.strerror or exc}; check the path.")
    if isinstance(exc, RuntimeError) and str(exc).startswith("Symlink loop from "):  # pathlib's resolve()
        return error(f"{str(exc)[len('Symlink loop from '):]} is a symlink loop; check the path.")
    return None


def _internal_error(exc: BaseException) -> int:
    print(f"deploypipe: internal error: {type(exc).__name__}: {exc}; "
          "rerun with --debug for the traceback and please report it.", file=sys.stderr)
    return 3


# what the system says of a path the user gave (other OSErrors stay internal: they may be our bug)
_PATH_ERRORS = {errno.ENAMETOOLONG, errno.ELOOP, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
                errno.EISDIR, errno.ENOTDIR, errno.ENOENT}
_OUT_OF_MEMORY = ("can't allocate memory", "failed to allocate memory", "out of memory", "bad_alloc")


def _is_out_of_memory(exc: BaseException) -> bool:
    return any(s in str(exc).lower() for s in _OUT_OF_MEMORY)


def _interrupted() -> int:
    print("deploypipe: interrupted; finished stages are kept and a re-run resumes them.", file=sys.stderr)
    return 130


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while handling a KeyboardInterrupt (its cause or context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _run(args: argparse.Namespace) -> int:
    """The command; with ``--json -`` its JSON alone goes to stdout, everything else it
    prints to stderr, so ``deploypipe inspect m.onnx --json - | jq`` works."""
    if getattr(args, "json", None) != "-":
        return int(args.func(args) or 0)
    from ..utils import files

    files.json_stdout.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return int(args.func(args) or 0)
    finally:
        files.json_stdout.pop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
