"""Pruning methods, keyed by name (``deploypipe list methods``)."""
from .base import METHODS, Param, PruneContext, PruneMethod, PruneRequest, create_method, parse_method_args
from . import schedules  # noqa: F401  (registers oneshot, iterative)

__all__ = ["METHODS", "Param", "PruneContext", "PruneMethod", "PruneRequest", "create_method",
           "parse_method_args"]
