"""Turn a model into its FBS form: every convolution that feeds straight into a
BatchNorm becomes an :class:`FBSConv` (the BN an ``nn.Identity``), on a copy.

The pairs, and which gated convolution each convolution's input comes from, are read
from a ``torch.fx`` trace of the original model (the zoo's ResNets, VGGs and
MobileNetV2s trace; a model that does not is refused with the reason). "Comes from"
means through ops that keep a zero channel zero (ReLU, ReLU6, max-pooling, dropout,
identity): a channel suppressed there is skipped on the input side of the next
convolution, the second half of the paper's saving. A convolution behind a residual
``add`` sees the sum, which a gate does not zero, so it reads all its input channels.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import fx, nn

from ...errors import UnsupportedError
from ..torch_groups import evaluation
from .gate import FBSConv

_ZERO_KEEPING_MODULES = (nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.Dropout, nn.Identity)
_ZERO_KEEPING_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6}


@dataclass(frozen=True)
class ConvSite:
    """A convolution of the gated model: its original name, the module that runs it, its
    FBS gate (None if ungated), the gated conv its input channels come from, and its
    dense output map size (H * W) for the given input."""

    name: str
    conv: nn.Conv2d
    gate: FBSConv | None
    feed: str | None
    out_pixels: int


@dataclass
class GatedModel:
    """The FBS copy of a model and what MAC counting and static removal need to know."""

    model: nn.Module
    sites: list[ConvSite]
    bn_of: dict[str, str]  # gated conv name -> the BN it absorbed (original names)
    input_shape: tuple[int, ...]
    density: float = field(default=1.0)

    @property
    def gates(self) -> dict[str, FBSConv]:
        return {s.name: s.gate for s in self.sites if s.gate is not None}

    def set_density(self, density: float) -> None:
        self.density = float(density)
        for gate in self.gates.values():
            gate.density = self.density


def gate_model(model: nn.Module, input_shape: Sequence[int], *, init_scale: float = 0.0) -> GatedModel:
    """An FBS copy of ``model`` (left untouched) for inputs of ``input_shape`` (N, C, H, W);
    ``init_scale`` is the gates' initial weight noise (see :class:`FBSConv`)."""
    graph = _trace(model)
    pairs = _conv_bn_pairs(graph)
    if not pairs:
        raise UnsupportedError("FBS found no convolution followed by a BatchNorm to gate",
                               hint="FBS gates conv + BN pairs, as in the zoo's ResNets, VGGs and MobileNetV2s")
    feeds = _feeds(graph, set(pairs.values()), {bn: conv for conv, bn in pairs.items()})
    gated = copy.deepcopy(model)
    for conv_name, bn_name in pairs.items():
        wrapped = FBSConv(gated.get_submodule(conv_name), gated.get_submodule(bn_name), init_scale=init_scale)
        _replace(gated, conv_name, wrapped)
        _replace(gated, bn_name, nn.Identity())
    pixels = _out_pixels(gated, tuple(input_shape), list(feeds))
    sites = [ConvSite(name, _conv_of(gated, name), gated.get_submodule(name) if name in pairs else None,
                      feeds[name], pixels[name]) for name in feeds]
    return GatedModel(gated, sites, dict(pairs), tuple(input_shape))


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds, all meaning "dynamic control flow"
        raise UnsupportedError(f"FBS needs a torch.fx trace of the model and tracing failed: "
                               f"{str(exc).splitlines()[0][:200]}",
                               hint="FBS supports models without data-dependent control flow "
                               "(the zoo's ResNets, VGGs, MobileNetV2)") from None


def _conv_bn_pairs(graph: fx.GraphModule) -> dict[str, str]:
    """conv name -> bn name for every Conv2d whose only user is a BatchNorm2d."""
    pairs = {}
    for node in graph.graph.nodes:
        if not _is_module(graph, node, nn.BatchNorm2d):
            continue
        src = node.args[0]
        if isinstance(src, fx.Node) and _is_module(graph, src, nn.Conv2d) and len(src.users) == 1:
            pairs[str(src.target)] = str(node.target)
    return pairs


def _feeds(graph: fx.GraphModule, gated_bns: set[str], conv_of_bn: dict[str, str]) -> dict[str, str | None]:
    """For every Conv2d (in graph order): the gated conv whose output reaches its input
    through zero-keeping ops only, else None."""
    out: dict[str, str | None] = {}
    for node in graph.graph.nodes:
        if not _is_module(graph, node, nn.Conv2d):
            continue
        src = node.args[0]
        while isinstance(src, fx.Node) and _keeps_zero(graph, src):
            src = src.args[0]
        hit = isinstance(src, fx.Node) and src.op == "call_module" and str(src.target) in gated_bns
        out[str(node.target)] = conv_of_bn[str(src.target)] if hit else None
    return out


def _keeps_zero(graph: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(graph.get_submodule(str(node.target)), _ZERO_KEEPING_MODULES)
    return node.op == "call_function" and node.target in _ZERO_KEEPING_FUNCTIONS


def _is_module(graph: fx.GraphModule, node: fx.Node, kind: type) -> bool:
    return node.op == "call_module" and isinstance(graph.get_submodule(str(node.target)), kind)


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)


def _conv_of(gated: nn.Module, name: str) -> nn.Conv2d:
    module = gated.get_submodule(name)
    return module.conv if isinstance(module, FBSConv) else module


@torch.no_grad()
def _out_pixels(gated: nn.Module, input_shape: tuple[int, ...], names: list[str]) -> dict[str, int]:
    """H * W of every convolution's output, from one forward with hooks."""
    sizes: dict[str, int] = {}
    handles = [_conv_of(gated, n).register_forward_hook(
        lambda _m, _i, out, n=n: sizes.__setitem__(n, int(out.shape[2] * out.shape[3]))) for n in names]
    try:
        with evaluation(gated):
            gated(torch.zeros((1, *input_shape[1:])))
    finally:
        for h in handles:
            h.remove()
    return sizes
