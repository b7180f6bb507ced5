"""Channel pruning in PyTorch: budgets, group state, criteria, allocation and methods.

The package is also callable: ``deploypipe.prune(model, example_inputs, budget="macs:2x")``
is :func:`deploypipe.prune.call.prune` (pruning alone, in memory, as Torch-Pruning's ``MetaPruner``
is called), so the name users reach for and the package that implements it are one.
"""
from __future__ import annotations

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from .call import prune

        return prune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
