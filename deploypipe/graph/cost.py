"""MACs, parameters and activation memory as functions of the groups' widths.

Every cost the pruning allocators need is a low-degree polynomial of the widths: a Conv's
MACs scale with its output channels times its input channels (only the output for a
grouped conv, whose channels-per-group stay fixed), a weight's size with the product of
its pruned axes. The model is exact for the graph it came from: ``macs(widths)`` equals
the MACs counted on the shrunk graph.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .view import static_prod

if TYPE_CHECKING:
    from .analysis import Analysis


class CostModel:
    def __init__(self, analysis: "Analysis"):
        n_groups = len(analysis.groups)
        dims = analysis.dims
        self.widths0 = analysis.widths().astype(np.float64)
        self._dim_row = {d.id: i for i, d in enumerate(dims)}
        self._elems = np.zeros((len(dims), n_groups))  # elements per channel of group g in dim d
        for g in analysis.groups:
            for dim_id, runs in g.layout:
                self._elems[self._dim_row[dim_id], g.id] = sum(k for _, k in runs) * dims[dim_id].block
        self._len0 = np.array([d.length for d in dims], dtype=np.float64)
        self._fixed = self._len0 - self._elems @ self.widths0  # slots of groups without members

        self._mac_c = np.array([m.macs for m in analysis.mac_nodes], dtype=np.float64)
        self._mac_out = np.array([self._row(m.out_dim) for m in analysis.mac_nodes], dtype=np.int64)
        self._mac_in = np.array([self._row(None if m.grouped else m.in_dim) for m in analysis.mac_nodes],
                                dtype=np.int64)
        self._param_terms = self._params_terms(analysis)
        self._param_fixed = analysis.params - sum(size for size, _ in self._param_terms)
        self.activation_per_channel = self._activations(analysis)
        self.output_per_channel = self._activations(analysis, _producer_outputs(analysis))

    def _row(self, dim) -> int:
        return -1 if dim is None else self._dim_row[dim.id]

    def _params_terms(self, analysis: "Analysis") -> list[tuple[float, list[int]]]:
        axes: dict[str, dict[int, int]] = {}
        for d in analysis.decls:
            axes.setdefault(d.tensor, {})[d.axis] = self._dim_row[d.dim.id]
        terms = []
        for tensor, by_axis in axes.items():
            shape = analysis.view.shape(tensor)
            terms.append((float(np.prod(shape)), list(by_axis.values())))
        return terms

    def _activations(self, analysis: "Analysis", only: set[str] | None = None) -> np.ndarray:
        """Feature-map elements per channel and sample over the activations each group's
        channels occupy: all of them (``only`` None: Conv, BatchNorm, ReLU, Add, pool and
        Flatten outputs alike), or those among ``only``."""
        out = np.zeros(len(analysis.groups))
        for g in analysis.groups:
            total = 0
            for m in g.activations:
                if only is not None and m.tensor not in only:
                    continue
                shape = analysis.view.shape(m.tensor)
                rest = static_prod(shape[m.axis + 1:]) if shape else None
                total += m.block * (rest or 1)
            out[g.id] = total
        return out

    # -- evaluation --------------------------------------------------------------
    def dim_lengths(self, widths) -> np.ndarray:
        return self._fixed + self._elems @ np.asarray(widths, dtype=np.float64)

    def ratios(self, widths) -> np.ndarray:
        return np.append(self.dim_lengths(widths) / np.maximum(self._len0, 1), 1.0)  # index -1 -> 1

    def macs(self, widths) -> float:
        r = self.ratios(widths)
        return float(np.sum(self._mac_c * r[self._mac_out] * r[self._mac_in]))

    def params(self, widths) -> float:
        r = self.ratios(widths)
        return float(self._param_fixed + sum(size * np.prod(r[rows]) for size, rows in self._param_terms))

    def marginal_macs(self, widths) -> np.ndarray:
        """MACs saved by removing one channel of each group at ``widths`` (first order, exact
        for the linear terms)."""
        r = self.ratios(widths)
        d_len = np.vstack([self._elems / np.maximum(self._len0, 1)[:, None], np.zeros(self._elems.shape[1])])
        grad = (self._mac_c * r[self._mac_in])[:, None] * d_len[self._mac_out] + \
               (self._mac_c * r[self._mac_out])[:, None] * d_len[self._mac_in]
        return grad.sum(axis=0)

    def marginal_params(self, widths) -> np.ndarray:
        widths = np.asarray(widths, dtype=np.float64)
        base = self.params(widths)
        out = np.zeros(len(widths))
        for g in range(len(widths)):
            w = widths.copy()
            w[g] -= 1
            out[g] = base - self.params(w)
        return out


_PRODUCING_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _producer_outputs(analysis: "Analysis") -> set[str]:
    """Output tensors of the layers that compute channels (convolutions and matrix
    products): the feature maps Group Fisher's memory term counts (Liu et al. 2021 sum
    the output size of every conv a channel removes, not the BatchNorm, ReLU or Add
    tensors that carry the same channel)."""
    return {out for node in analysis.model.graph.node if node.op_type in _PRODUCING_OPS for out in node.output}
