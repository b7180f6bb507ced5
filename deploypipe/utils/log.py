"""Console output: one logger, quiet by default in tests, progress bars that respect it."""
from __future__ import annotations

import logging
import sys

LOGGER_NAME = "deploypipe"


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")


def configure(verbosity: int = 0) -> None:
    """Called once by the CLI: messages go to stderr, plain, without level prefixes;
    ``verbosity`` > 0 adds debug messages, < 0 (``-q``) keeps warnings and errors only."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO)
    logger.propagate = False


def progress(iterable=None, **kw):
    """A tqdm progress bar on stderr, hidden when stderr is not a terminal unless forced."""
    from tqdm.auto import tqdm

    kw.setdefault("disable", None)  # None: disable on non-TTY
    kw.setdefault("leave", False)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, file=sys.stderr, **kw)
