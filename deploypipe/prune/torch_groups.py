"""The ONNX channel groups, applied to the PyTorch model they were exported from.

The exporter keeps parameter names as initializer names, so every member of a group
(``layer1.0.conv1.weight``, axis 1, offset 0, block 1) names a torch parameter or buffer.
``TorchPruner`` uses that to

* slice the model physically (``apply``): each member tensor loses the dropped slices and
  the modules are rebuilt at their new widths (:func:`deploypipe.models.resize`);
* mask channels without removing them (``ConsumerMasks``): a mask multiplies each
  consumer's input channel, which is exactly what removal does (the oracle's "dead
  channel"), so gradients with respect to the mask are the first-order loss change of
  removing a channel (Taylor, Group Fisher).
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..graph import Analysis, ChannelGroup, Member, analyse, load_onnx

_MASKABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)


@dataclass(frozen=True)
class Consumer:
    """A module reading group channels on its input's ``axis`` at ``member``'s offsets."""

    module: nn.Module
    name: str
    axis: int
    member: Member
    groups: int = 1  # a grouped conv pruned by positions: the member repeats in every group


class TorchPruner:
    """Channel groups of ``model`` (found on its ONNX export) and the edits they allow."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], *, opset: int = 17):
        self.model = model
        self.input_shape = tuple(int(d) for d in input_shape)
        self.opset = opset
        self.analysis: Analysis
        self.refresh()

    # -- analysis --------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-export and re-analyse (after the model's widths changed)."""
        self.analysis = analyse(export_model(self.model, self.input_shape, opset=self.opset))
        tensors = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        self.torch_reasons: dict[int, str] = {}
        for g in self.analysis.groups:
            missing = [m.tensor for m in g.members if m.tensor not in tensors]
            if missing and g.prunable:
                self.torch_reasons[g.id] = (f"ONNX tensor {missing[0]!r} is not a PyTorch parameter "
                                            "(the exporter renamed or folded it)")

    @property
    def groups(self) -> list[ChannelGroup]:
        return self.analysis.groups

    def is_prunable(self, group: ChannelGroup) -> bool:
        return group.prunable and group.id not in self.torch_reasons

    @property
    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups if self.is_prunable(g)]

    def widths(self) -> np.ndarray:
        return self.analysis.widths()

    def reasons(self, group: ChannelGroup) -> list[str]:
        extra = [self.torch_reasons[group.id]] if group.id in self.torch_reasons else []
        return list(group.reasons) + extra

    # -- physical removal --------------------------------------------------------------
    def apply(self, drop: Mapping[int, Sequence[int]]) -> None:
        """Remove the channels in ``drop`` ({group id: indices}) from the model, in place.
        Parameters are replaced: optimizers must be rebuilt afterwards."""
        from ..graph import check_drop
        from ..models.resize import resize_to_state_dict

        clean = check_drop(self.analysis, drop)
        for gid in clean:
            if gid in self.torch_reasons:
                raise InputError(f"channel group {gid} cannot be pruned in PyTorch ({self.torch_reasons[gid]})",
                                 hint="remove it from the drop list")
        state = self.model.state_dict()
        for name, cuts in _cuts(self.analysis, clean).items():
            tensor = state[name]
            for axis, keep in cuts.items():
                tensor = tensor.index_select(axis, torch.as_tensor(keep, device=tensor.device))
            state[name] = tensor.contiguous()
        resize_to_state_dict(self.model, state)
        self.model.load_state_dict(state)
        self.refresh()

    # -- masks ----------------------------------------------------------------------
    def consumers(self, group: ChannelGroup) -> list[Consumer]:
        modules = dict(self.model.named_modules())
        out = []
        for m in group.by_role("consumer"):
            owner, _, attr = m.tensor.rpartition(".")
            module = modules.get(owner)
            if attr != "weight" or not isinstance(module, _MASKABLE):
                continue
            transposed = isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d))
            if isinstance(module, nn.Linear):
                axis = -1
            elif (m.axis == 0) == transposed:
                axis = 1
            else:
                continue
            groups = module.groups if isinstance(module, nn.modules.conv._ConvNd) and not transposed else 1
            out.append(Consumer(module, owner, axis, m, groups))
        return out


def _cuts(analysis: Analysis, drop: Mapping[int, np.ndarray]) -> dict[str, dict[int, np.ndarray]]:
    """Per tensor and axis: the indices that stay."""
    removed: dict[str, dict[int, list[np.ndarray]]] = {}
    lengths: dict[tuple[str, int], int] = {}
    for gid, channels in drop.items():
        for m in analysis.groups[gid].members:
            removed.setdefault(m.tensor, {}).setdefault(m.axis, []).append(m.indices(channels))
            lengths[(m.tensor, m.axis)] = analysis.view.shape(m.tensor)[m.axis]
    cuts: dict[str, dict[int, np.ndarray]] = {}
    for name, axes in removed.items():
        for axis, parts in axes.items():
            keep = np.ones(lengths[(name, axis)], dtype=bool)
            keep[np.concatenate(parts)] = False
            cuts.setdefault(name, {})[axis] = np.nonzero(keep)[0]
    return cuts


class ConsumerMasks:
    """Multiply each group's channels by a mask at every consumer's input.

    ``per_sample=True`` gives each sample its own mask row (``begin(batch)`` before each
    forward), so ``grad`` holds per-sample dL_n/dm_c: Taylor takes |sum_n|, Group Fisher
    sum_n (.)^2. With fixed 0/1 values (``set``), masked channels are dead for training
    methods that decide as they go.
    """

    def __init__(self, pruner: TorchPruner, groups: Sequence[ChannelGroup] | None = None, *,
                 per_sample: bool = False):
        self.pruner = pruner
        self.groups = list(groups if groups is not None else pruner.prunable)
        self.per_sample = per_sample
        self.values: dict[int, torch.Tensor] = {g.id: torch.ones(g.width) for g in self.groups}
        self.live: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def set(self, gid: int, values: torch.Tensor | np.ndarray) -> None:
        values = torch.as_tensor(values)
        self.values[gid] = (values if values.is_floating_point() else values.float()).clone()

    def drop(self, plan: Mapping[int, Sequence[int]]) -> None:
        """Zero the channels a drop plan (``{group id: indices}``) removes, keep the rest:
        the masked model then computes what the pruned one will."""
        for gid, idx in plan.items():
            values = torch.ones(self.pruner.groups[gid].width)
            values[list(idx)] = 0
            self.set(gid, values)

    def begin(self, batch: int | None = None) -> None:
        """Fresh leaf mask tensors for the next forward (gradients land in ``live[g].grad``)."""
        for g in self.groups:
            base = self.values[g.id]
            value = base.expand(batch, -1).clone() if self.per_sample and batch else base.clone()
            self.live[g.id] = value.requires_grad_(True)

    def grads(self) -> dict[int, torch.Tensor]:
        return {gid: t.grad for gid, t in self.live.items() if t.grad is not None}

    def __enter__(self) -> "ConsumerMasks":
        by_module: dict[int, list[tuple[Consumer, int]]] = {}
        modules: dict[int, Consumer] = {}
        for g in self.groups:
            for c in self.pruner.consumers(g):
                by_module.setdefault(id(c.module), []).append((c, g.id))
                modules[id(c.module)] = c
        for key, entries in by_module.items():
            self._handles.append(modules[key].module.register_forward_pre_hook(self._hook(entries)))
        self.begin()
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, entries: list[tuple[Consumer, int]]):
        def hook(module: nn.Module, args):
            x = args[0]
            axis = entries[0][0].axis % x.dim()
            scale = torch.ones((x.shape[0] if self.per_sample else 1, x.shape[axis]), dtype=x.dtype, device=x.device)
            for consumer, gid in entries:
                mask = self.live[gid].to(x.device, x.dtype)
                m = consumer.member
                rows = (mask if mask.dim() == 2 else mask.unsqueeze(0)).repeat_interleave(m.block, dim=1)
                idx = torch.arange(m.offset, m.offset + rows.shape[1], device=x.device)
                if consumer.groups > 1:  # the same positions of every group
                    per = x.shape[axis] // consumer.groups
                    idx = torch.cat([idx + k * per for k in range(consumer.groups)])
                    rows = rows.repeat(1, consumer.groups)
                scale = scale.index_copy(1, idx, rows.expand(scale.shape[0], -1))
            shape = [1] * x.dim()
            shape[0], shape[axis] = scale.shape[0], scale.shape[1]
            return (x * scale.reshape(shape),) + tuple(args[1:])

        return hook


def export_model(model: nn.Module, input_shape: Sequence[int], *, opset: int = 17):
    """The ONNX model of ``model`` (parameter names kept), through a temporary file."""
    from ..export import export_onnx

    with tempfile.TemporaryDirectory(prefix="deploypipe-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, input_shape=tuple(input_shape), opset=opset)
        return load_onnx(path, check=False)


@contextlib.contextmanager
def evaluation(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block, every submodule's own mode back afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, t in modes.items():
            m.training = t
