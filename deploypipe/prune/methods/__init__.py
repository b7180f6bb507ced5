"""Pruning methods, keyed by name (``deploypipe list methods``)."""
from .base import METHODS, Param, PruneContext, PruneMethod, PruneRequest, create_method, parse_method_args
from . import schedules  # noqa: F401  (registers oneshot, iterative)
from . import group_fisher, increg  # noqa: F401  (registers group_fisher, increg, greg1, greg2)
from . import cascade, cpli  # noqa: F401  (registers cascade, cpli)
from . import fbs  # noqa: F401  (registers fbs)

__all__ = ["METHODS", "Param", "PruneContext", "PruneMethod", "PruneRequest", "create_method",
           "parse_method_args"]
