"""Least-squares reconstruction of a consumer layer's output from a subset of its input
channels: the refit step of layer-wise channel pruning (He et al. 2017, ThiNet, CPLI).

A consumer (``Conv2d`` with ``groups == 1`` and zero padding, or ``Linear``) computes
``y = X w (+ b)`` where X is the im2col matrix of its input (``F.unfold``; one row per
output position, ``C_in * kh * kw`` columns, channel-major like ``weight.reshape(O, -1)``).
:class:`LeastSquares` accumulates ``X^T X``, ``X^T T`` and ``sum T^2`` for a target T (the
dense model's output of the same layer) over calibration batches, so any subset of columns
can be solved, and any solution scored, without keeping the rows.

The ridge term pulls towards the layer's current weights, not towards zero:
``min ||T - X w||^2 + lam ||w - w0||^2``, ``lam = ridge * mean(diag(X^T X))``. Where the
calibration set does not determine w (more columns than rows, or columns that are always
zero, e.g. the border taps of a 3x3 conv on a 1x1 map), the solution keeps the weights
it had instead of shrinking them.

Grouped and depthwise convolutions are not refitted: an output channel of a grouped conv
reads only its own group's inputs, so removing an input channel either removes the whole
group's outputs too (depthwise: the output channel is in the same channel group and goes
with it, leaving nothing to refit) or leaves a block-diagonal problem; they are sliced
as plain removal. Other consumers (ConvTranspose, Conv1d/3d, padded by reflection) too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .torch_groups import Consumer


def refittable(module: nn.Module) -> bool:
    """Whether :func:`design_rows` and :func:`write_weight` handle ``module`` exactly."""
    if isinstance(module, nn.Linear):
        return True
    return (type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


def inner_size(module: nn.Module) -> int:
    """Columns of the flattened weight per input feature (kh * kw for a conv, 1 for Linear)."""
    return int(np.prod(module.weight.shape[2:])) if isinstance(module, nn.Conv2d) else 1


def channel_columns(consumer: Consumer, width: int) -> np.ndarray:
    """[width, k]: the flattened-weight columns that each channel of the group occupies."""
    inner = inner_size(consumer.module)
    rows = [consumer.member.indices([c]) for c in range(width)]
    return np.stack([(r[:, None] * inner + np.arange(inner)[None, :]).reshape(-1) for r in rows])


def positions_for(module: nn.Module, output: Tensor, count: int, gen: torch.Generator) -> Tensor | None:
    """Random output positions (flat h*w indices) to sample from a conv's output; None: all."""
    if not isinstance(module, nn.Conv2d):
        return None
    total = int(np.prod(output.shape[2:]))
    if count <= 0 or count >= total:
        return None
    return torch.randperm(total, generator=gen)[:count]


def design_rows(module: nn.Module, x: Tensor, positions: Tensor | None) -> Tensor:
    """[rows, D (+1 for the bias)]: the consumer's regression inputs for one batch."""
    if isinstance(module, nn.Conv2d):
        cols = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=module.padding,
                        stride=module.stride)  # [N, D, L]
        if positions is not None:
            cols = cols[:, :, positions]
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    else:
        rows = x.reshape(-1, x.shape[-1])
    if module.bias is not None:
        rows = torch.cat([rows, torch.ones(rows.shape[0], 1, dtype=rows.dtype)], dim=1)
    return rows


def output_rows(module: nn.Module, y: Tensor, positions: Tensor | None) -> Tensor:
    """[rows, O]: the layer output at the rows :func:`design_rows` produced."""
    if isinstance(module, nn.Conv2d):
        flat = y.reshape(y.shape[0], y.shape[1], -1)
        if positions is not None:
            flat = flat[:, :, positions]
        return flat.transpose(1, 2).reshape(-1, y.shape[1])
    return y.reshape(-1, y.shape[-1])


def weight_matrix(module: nn.Module) -> np.ndarray:
    """[D (+1), O]: the current weights (and bias) as regression coefficients."""
    w = module.weight.detach().reshape(module.weight.shape[0], -1).double()
    if module.bias is not None:
        w = torch.cat([w, module.bias.detach().double()[:, None]], dim=1)
    return w.T.cpu().numpy()


@dataclass
class LeastSquares:
    """Sufficient statistics of one consumer's regression: X^T X, X^T T, sum T^2 per output."""

    dim: int
    outputs: int
    bias: bool = False
    gram: np.ndarray = field(init=False)
    cross: np.ndarray = field(init=False)
    energy: np.ndarray = field(init=False)
    rows: int = 0

    def __post_init__(self) -> None:
        self.gram = np.zeros((self.dim, self.dim))
        self.cross = np.zeros((self.dim, self.outputs))
        self.energy = np.zeros(self.outputs)

    def add(self, x: Tensor, t: Tensor) -> None:
        x, t = x.detach().float(), t.detach().float()
        self.gram += (x.T @ x).double().numpy()
        self.cross += (x.T @ t).double().numpy()
        self.energy += (t.double() ** 2).sum(0).numpy()
        self.rows += x.shape[0]

    def ridge_value(self, ridge: float) -> float:
        d = np.diag(self.gram)[: self.dim - int(self.bias)]
        return float(ridge * max(d.mean() if len(d) else 0.0, 1e-12))

    def system(self, prior: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
        """(M, c) of the ridge problem min w^T M w - 2 c^T w: M = G + lam I (not on the bias)."""
        lam = np.full(self.dim, self.ridge_value(ridge))
        if self.bias:
            lam[-1] = 0.0
        return self.gram + np.diag(lam), self.cross + lam[:, None] * prior

    def solve(self, keep: np.ndarray, prior: np.ndarray, ridge: float) -> np.ndarray:
        """[D, O] coefficients using only columns ``keep`` (the others are 0)."""
        m, c = self.system(prior, ridge)
        out = np.zeros((self.dim, self.outputs))
        if len(keep):
            sub = m[np.ix_(keep, keep)]
            out[keep] = np.linalg.solve(sub + 1e-12 * np.eye(len(keep)) * np.trace(sub) / len(keep), c[keep])
        return out

    def error(self, coef: np.ndarray, weights: np.ndarray | None = None) -> float:
        """sum_o w_o ||T_o - X coef_o||^2 from the statistics alone."""
        per = self.energy - 2 * np.einsum("do,do->o", coef, self.cross) + np.einsum("do,de,eo->o", coef,
                                                                                      self.gram, coef)
        return float(np.sum(per if weights is None else weights * per))


def write_weight(module: nn.Module, coef: np.ndarray) -> None:
    """Copy [D (+1), O] coefficients into the module's weight (and bias), in place."""
    with torch.no_grad():
        w = torch.from_numpy(coef.T.copy()).to(module.weight.dtype)
        if module.bias is not None:
            module.bias.copy_(w[:, -1])
            w = w[:, :-1]
        module.weight.copy_(w.reshape(module.weight.shape))
