"""Layer-wise reconstruction of a model given only as ONNX: after channel surgery, refit
every layer that lost input channels so that its output on the pruned model's activations
matches the dense model's (He et al. 2017, ThiNet; the refit CPLI does on PyTorch modules,
done here on the ONNX graph with ONNX Runtime and numpy, no PyTorch).

The layers refitted are ``Conv`` (group 1, 2-D) and ``Gemm`` / ``MatMul`` with constant
weights, in topological order. For each:

* target T: the dense model's output of the same node on the calibration images, at the
  output channels the pruned node keeps (read from ``drop`` and the channel groups);
* input X: the node's input in the pruned model with every layer before it already
  refitted (so a refit also corrects the error earlier layers left), unfolded into one
  row per sampled output position (at most ``rows`` per layer);
* ridge least squares in float64 from X^T X and X^T T:
  ``min ||T - X w - b||^2 + lam ||w - w0||^2``, ``lam = ridge * mean(diag(X^T X))``, pulling
  towards the sliced weights w0, so what the images do not determine keeps its value.
  Conv and Gemm also get a bias (added when they had none): it absorbs the mean that the
  removed channels contributed.

Layers whose inputs do not depend on one another share one run of the pruned model.
Grouped and depthwise convolutions are not refitted (an output channel reads only its own
group's inputs: there is nothing to mix); the summary names them and every other skip.
The input models are never modified.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import InputError
from .analysis import Analysis, check_drop
from .evaluate import check_images, chunks, run, session, single_input, with_outputs
from .surgery import element_masks
from .view import GraphView

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class LayerFit:
    """One refitted node. Errors are relative, ``||T - X w||^2 / ||T||^2`` on the sampled
    rows: ``before`` with the sliced weights, ``after`` with the refitted ones (both on the
    input the node sees once the layers before it are refitted)."""

    node: str
    op_type: str
    rows: int
    columns: int
    outputs: int
    error_before: float
    error_after: float


@dataclass(frozen=True)
class RefitSummary:
    """What :func:`refit` did: the layers refitted (in order), the ones that lost input
    channels but were left as plain removal and why, on how many images, in how long."""

    layers: tuple[LayerFit, ...]
    skipped: tuple[tuple[str, str], ...]  # (node, why it was left as plain removal)
    images: int
    ridge: float
    seconds: float

    @property
    def error_before(self) -> float:
        return float(np.mean([f.error_before for f in self.layers])) if self.layers else 0.0

    @property
    def error_after(self) -> float:
        return float(np.mean([f.error_after for f in self.layers])) if self.layers else 0.0

    def to_dict(self) -> dict:
        return {"layers": [asdict(f) for f in self.layers],
                "skipped": [{"node": n, "reason": r} for n, r in self.skipped],
                "images": self.images, "ridge": self.ridge, "seconds": self.seconds,
                "error_before": self.error_before, "error_after": self.error_after}

    def sentence(self) -> str:
        text = (f"refitted {len(self.layers)} layers on {self.images} images in {self.seconds:.1f} s "
                f"(mean relative reconstruction error {self.error_before:.3g} -> {self.error_after:.3g})")
        if self.skipped:
            text += f"; {len(self.skipped)} left as plain removal ({self.skipped[0][0]}: {self.skipped[0][1]})"
        return text + "."


@dataclass(frozen=True)
class _Settings:
    ridge: float
    rows: int
    batch: int
    seed: int


@dataclass
class _Layer:
    """A node to refit, in the pruned model (``index`` = its position in both graphs)."""

    index: int
    name: str
    op_type: str
    x: str
    y: str
    weight: str
    bias: str | None
    keep: np.ndarray  # the dense output channels the pruned node keeps
    attrs: dict = field(default_factory=dict)
    level: int = 0

    @property
    def fits_bias(self) -> bool:
        return self.op_type == "Conv" or (self.op_type == "Gemm" and self.attrs["beta"] != 0)


def refit(analysis: Analysis, small: onnx.ModelProto, drop: Mapping[int, Sequence[int]], images, *,
          ridge: float = 1e-2, rows: int = 16384, batch: int = 64,
          seed: int = 0) -> tuple[onnx.ModelProto, RefitSummary]:
    """Refit ``small`` (= ``shrink(analysis, drop)``) layer by layer on calibration ``images``
    (N x ..., preprocessed as the model expects; a few hundred do); returns a new model and
    what was done. ``rows``: sampled output positions per layer (memory: ``rows`` x outputs
    floats per layer are kept); ``batch``: images per ONNX Runtime run (the dense run returns
    every refitted layer's output at once); ``seed``: which positions are sampled."""
    start = time.perf_counter()
    x = check_images(images, "calibration images")
    if not ridge >= 0 or rows < 1:
        raise InputError(f"ridge must be >= 0 and rows >= 1, not ridge={ridge}, rows={rows}",
                         hint="the defaults are ridge=1e-2, rows=16384")
    settings = _Settings(float(ridge), int(rows), int(batch), int(seed))
    model = onnx.ModelProto()
    model.CopyFrom(small)
    layers, skipped = _find_layers(analysis, model, drop)
    fits: list[LayerFit] = []
    if layers:
        targets = _dense_targets(analysis.model, layers, x, settings)
        weights = _Weights(model)
        for level in sorted({layer.level for layer in layers}):
            stage = [layer for layer in layers if layer.level == level]
            fits += _fit_stage(weights, stage, targets, x, settings)
    summary = RefitSummary(tuple(fits), tuple(skipped), len(x), settings.ridge, time.perf_counter() - start)
    return model, summary


# -- which nodes --------------------------------------------------------------------------
def _find_layers(analysis: Analysis, model: onnx.ModelProto, drop) -> tuple[list[_Layer], list[tuple[str, str]]]:
    """The nodes that lost input channels: refittable ones, and the others with a reason."""
    dense, small = analysis.view, GraphView(model)
    if [n.op_type for n in dense.nodes] != [n.op_type for n in small.nodes]:
        raise InputError("the pruned model's nodes are not the analysed model's",
                         hint="pass the model that shrink(analysis, drop) returned, with that analysis and drop")
    kept = _kept_outputs(analysis, drop)
    users: dict[str, int] = defaultdict(int)
    for node in small.nodes:
        for name in set(node.input):
            users[name] += 1
    layers, skipped = [], []
    for i, node in enumerate(small.nodes):
        if node.op_type not in LAYER_OPS or not _lost_inputs(dense, small, dense.nodes[i], node):
            continue
        why = _why_not(small, node, users)
        if why:
            skipped.append((small.name(node), why))
        else:
            layers.append(_layer(i, small, node, kept))
    _set_levels(model, layers)
    return layers, skipped


def _in_width(view: GraphView, node: onnx.NodeProto) -> int | None:
    """How many input channels the node's constant weight reads (None: no such weight)."""
    shape = view.shape(node.input[1]) if len(node.input) > 1 and view.is_const(node.input[1]) else None
    if shape is None or len(shape) < 2:
        return None
    if node.op_type == "Conv":
        return shape[1] * int(view.attr(node, "group", 1))
    if node.op_type == "Gemm":
        return shape[1] if view.attr(node, "transB", 0) else shape[0]
    return shape[0]  # ConvTranspose, MatMul


def _lost_inputs(dense: GraphView, small: GraphView, dense_node: onnx.NodeProto, node: onnx.NodeProto) -> bool:
    before, after = _in_width(dense, dense_node), _in_width(small, node)
    return before is not None and after is not None and after < before


def _why_not(view: GraphView, node: onnx.NodeProto, users: Mapping[str, int]) -> str | None:
    """Why a node that lost input channels is left as plain removal (None: it is refitted)."""
    group = int(view.attr(node, "group", 1))
    bias = view.input(node, 2)
    if node.op_type == "ConvTranspose":
        return "a transposed convolution (only Conv, Gemm and MatMul are refitted)"
    if node.op_type == "Conv" and group > 1:
        kind = "depthwise" if view.shape(node.input[1])[1] == 1 else "grouped"
        return (f"a {kind} convolution (group={group}): each output channel reads only its own group's "
                "inputs, so there is nothing to mix")
    if node.op_type == "Conv" and len(view.shape(node.input[1])) != 4:
        return f"a {len(view.shape(node.input[1])) - 2}-D convolution (only 2-D ones are refitted)"
    if node.op_type == "Gemm" and (view.attr(node, "transA", 0) or view.attr(node, "alpha", 1.0) == 0):
        return "a Gemm with transA or alpha 0"
    if bias is not None and not view.is_const(bias):
        return "its bias is computed, not a constant"
    if node.op_type == "Gemm" and bias is not None and math.prod(view.shape(bias)) not in (1, _out_width(view, node)):
        return "its bias is not one value per output"
    if any(users[name] > 1 for name in (node.input[1], bias) if name):
        return "its weights are shared with another node"
    return None


def _out_axis(view: GraphView, node: onnx.NodeProto) -> int:
    """The axis of the weight that holds the node's output channels."""
    if node.op_type == "Gemm":
        return 0 if view.attr(node, "transB", 0) else 1
    return 1 if node.op_type == "MatMul" else 0


def _out_width(view: GraphView, node: onnx.NodeProto) -> int:
    return int(view.shape(node.input[1])[_out_axis(view, node)])


def _kept_outputs(analysis: Analysis, drop):
    """``kept(tensor, axis)``: the indices of a dense weight's axis that surgery keeps."""
    masks = element_masks(analysis, check_drop(analysis, drop))
    dims = {(d.tensor, d.axis): d.dim.id for d in analysis.decls}

    def kept(tensor: str, axis: int) -> np.ndarray:
        mask = masks.get(dims.get((tensor, axis), -1))
        return np.arange(analysis.view.shape(tensor)[axis]) if mask is None else np.flatnonzero(mask)
    return kept


def _layer(index: int, view: GraphView, node: onnx.NodeProto, kept) -> _Layer:
    axis = _out_axis(view, node)
    w = node.input[1]
    keep = kept(w, axis)
    if len(keep) != _out_width(view, node):
        raise InputError(f"{view.label(node)} has {_out_width(view, node)} outputs but the drop list keeps "
                         f"{len(keep)}", hint="pass the drop list that shrink(analysis, drop) was given")
    attrs = {"strides": None, "dilations": None, "pads": None, "auto_pad": "NOTSET",
             "transB": 0, "alpha": 1.0, "beta": 1.0}
    attrs = {k: view.attr(node, k, v) for k, v in attrs.items()}
    if isinstance(attrs["auto_pad"], bytes):
        attrs["auto_pad"] = attrs["auto_pad"].decode()
    attrs["kernel"] = tuple(view.shape(w)[2:])
    return _Layer(index, view.name(node), node.op_type, node.input[0], node.output[0], w,
                  view.input(node, 2), keep, attrs)


def _set_levels(model: onnx.ModelProto, layers: Sequence[_Layer]) -> None:
    """A layer's level: how many layers to refit lie on the longest path before it. Layers
    of one level do not feed each other, so one run of the pruned model serves them all."""
    at = {layer.index: layer for layer in layers}
    level: dict[str, int] = defaultdict(int)
    for i, node in enumerate(model.graph.node):
        lv = max((level[name] for name in node.input if name), default=0)
        if i in at:
            at[i].level = lv
            lv += 1
        for name in node.output:
            level[name] = lv


# -- calibration rows -----------------------------------------------------------------------
@dataclass
class _Targets:
    """Per layer and calibration batch: the sampled output rows and the dense values there."""

    rows: dict[int, list[tuple[np.ndarray, ...]]] = field(default_factory=lambda: defaultdict(list))
    values: dict[int, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))


def _dense_targets(dense: onnx.ModelProto, layers: Sequence[_Layer], x: np.ndarray, s: _Settings) -> _Targets:
    sess = session(with_outputs(dense, [layer.y for layer in layers]))
    name, dtype = single_input(sess)
    rng = np.random.default_rng(s.seed)
    per_image = math.ceil(s.rows / len(x))
    targets = _Targets()
    for xb in chunks(x, s.batch):
        outs = run(sess, [layer.y for layer in layers], {name: xb.astype(dtype, copy=False)})
        for layer, y in zip(layers, outs):
            idx = _sample(_row_space(layer, y.shape), per_image * len(xb), rng)
            targets.rows[layer.index].append(idx)
            targets.values[layer.index].append(_output_rows(layer, y, idx)[:, layer.keep])
    return targets


def _row_space(layer: _Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The axes that index regression rows: (N, H, W) of a conv output, all but the last otherwise."""
    return (shape[0], *shape[2:]) if layer.op_type == "Conv" else tuple(shape[:-1])


def _sample(space: tuple[int, ...], count: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    total = math.prod(space)
    flat = np.arange(total) if count >= total else np.sort(rng.choice(total, count, replace=False))
    return np.unravel_index(flat, space)


def _output_rows(layer: _Layer, y: np.ndarray, idx: tuple[np.ndarray, ...]) -> np.ndarray:
    """[rows, channels] of a layer's output at the sampled rows."""
    if layer.op_type == "Conv":
        return y[(idx[0], slice(None), *idx[1:])]
    return y[idx]


def _design(layer: _Layer, x: np.ndarray, idx: tuple[np.ndarray, ...]) -> np.ndarray:
    """[rows, columns]: the regression inputs (im2col for a conv, channel-major like the
    weight's flattening), with a column of ones when a bias is fitted."""
    rows = _patches(layer, x, idx) if layer.op_type == "Conv" else x[idx]
    if layer.fits_bias:
        rows = np.concatenate([rows, np.ones((len(rows), 1), dtype=rows.dtype)], axis=1)
    return rows


def _patches(layer: _Layer, x: np.ndarray, idx: tuple[np.ndarray, ...]) -> np.ndarray:
    kh, kw = layer.attrs["kernel"]
    sh, sw = layer.attrs["strides"] or (1, 1)
    dh, dw = layer.attrs["dilations"] or (1, 1)
    top, left, bottom, right = _pads(layer, x.shape[2:])
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, oh, ow = idx
    hi = oh[:, None] * sh + np.arange(kh) * dh
    wi = ow[:, None] * sw + np.arange(kw) * dw
    patches = xp[n[:, None, None], :, hi[:, :, None], wi[:, None, :]]  # [rows, kh, kw, C]
    return patches.transpose(0, 3, 1, 2).reshape(len(n), -1)


def _pads(layer: _Layer, size: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), from ``pads`` or ``auto_pad`` (ONNX's SAME rule)."""
    auto = layer.attrs["auto_pad"]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for n, k, s, d in zip(size, layer.attrs["kernel"], layer.attrs["strides"] or (1, 1),
                              layer.attrs["dilations"] or (1, 1)):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return begin[0], begin[1], end[0], end[1]
    pads = layer.attrs["pads"] if auto == "NOTSET" and layer.attrs["pads"] else (0, 0, 0, 0)
    return tuple(int(p) for p in pads)


# -- the regression -------------------------------------------------------------------------
@dataclass
class _Normal:
    """X^T X, X^T T and sum T^2 of one layer, accumulated in float64."""

    gram: np.ndarray
    cross: np.ndarray
    energy: float = 0.0
    rows: int = 0

    @classmethod
    def empty(cls, columns: int, outputs: int) -> "_Normal":
        return cls(np.zeros((columns, columns)), np.zeros((columns, outputs)))

    def add(self, x: np.ndarray, t: np.ndarray) -> None:
        x, t = x.astype(np.float64), t.astype(np.float64)
        self.gram += x.T @ x
        self.cross += x.T @ t
        self.energy += float(np.square(t).sum())
        self.rows += len(x)

    def error(self, coef: np.ndarray) -> float:
        """``||T - X coef||^2 / ||T||^2``, from the statistics alone."""
        err = self.energy - 2 * np.sum(coef * self.cross) + np.sum(coef * (self.gram @ coef))
        return max(float(err), 0.0) / max(self.energy, 1e-30)

    def solve(self, prior: np.ndarray, ridge: float, bias: bool) -> np.ndarray:
        """The ridge solution pulled towards ``prior`` (the bias row is not pulled)."""
        diag = np.diag(self.gram)[:len(prior) - int(bias)]
        lam = np.full(len(prior), ridge * max(float(diag.mean()) if len(diag) else 0.0, 1e-12))
        if bias:
            lam[-1] = 0.0
        m, c = self.gram + np.diag(lam), self.cross + lam[:, None] * prior
        try:
            return np.linalg.solve(m, c)
        except np.linalg.LinAlgError:
            return np.linalg.lstsq(m, c, rcond=None)[0]


def _fit_stage(weights: "_Weights", stage: Sequence[_Layer], targets: _Targets, x: np.ndarray,
               s: _Settings) -> list[LayerFit]:
    """Refit the layers of one level from one run of the pruned model as it is now."""
    inputs = list(dict.fromkeys(layer.x for layer in stage))
    sess = session(with_outputs(weights.model, inputs))
    name, dtype = single_input(sess)
    priors = {layer.index: weights.coefficients(layer) for layer in stage}
    stats = {layer.index: _Normal.empty(*priors[layer.index].shape) for layer in stage}
    for b, xb in enumerate(chunks(x, s.batch)):
        acts = dict(zip(inputs, run(sess, inputs, {name: xb.astype(dtype, copy=False)})))
        for layer in stage:
            stats[layer.index].add(_design(layer, acts[layer.x], targets.rows[layer.index][b]),
                                   targets.values[layer.index][b])
    fits = []
    for layer in stage:
        st, prior = stats[layer.index], priors[layer.index]
        coef = st.solve(prior, s.ridge, layer.fits_bias)
        weights.write(layer, coef)
        fits.append(LayerFit(layer.name, layer.op_type, st.rows, len(prior), prior.shape[1],
                             st.error(prior), st.error(coef)))
    return fits


# -- reading and writing the weights --------------------------------------------------------
class _Weights:
    """The working model's initializers, read and replaced by name."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.at = {t.name: i for i, t in enumerate(model.graph.initializer)}

    def get(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.model.graph.initializer[self.at[name]])

    def put(self, name: str, arr: np.ndarray) -> None:
        tensor = numpy_helper.from_array(np.ascontiguousarray(arr), name)
        if name in self.at:
            self.model.graph.initializer[self.at[name]].CopyFrom(tensor)
        else:
            self.model.graph.initializer.append(tensor)
            self.at[name] = len(self.model.graph.initializer) - 1

    def coefficients(self, layer: _Layer) -> np.ndarray:
        """[columns, outputs]: the layer's current weights (and bias) as regression coefficients."""
        w = self.get(layer.weight).astype(np.float64)
        a = layer.attrs
        if layer.op_type == "Conv":
            coef = w.reshape(len(w), -1).T
        elif layer.op_type == "Gemm":
            coef = (w.T if a["transB"] else w) * a["alpha"]
        else:
            coef = w
        if not layer.fits_bias:
            return coef
        bias = np.zeros(coef.shape[1])
        if layer.bias is not None:
            bias += self.get(layer.bias).astype(np.float64).reshape(-1) * _beta(layer)
        return np.vstack([coef, bias[None, :]])

    def write(self, layer: _Layer, coef: np.ndarray) -> None:
        """Store refitted coefficients in the layer's weight (and bias, added if missing)."""
        old = self.get(layer.weight)
        a = layer.attrs
        w = coef[:-1] if layer.fits_bias else coef
        if layer.op_type == "Conv":
            w = w.T.reshape(old.shape)
        elif layer.op_type == "Gemm":
            w = (w.T if a["transB"] else w) / a["alpha"]
        self.put(layer.weight, w.astype(old.dtype))
        if layer.fits_bias:
            self._write_bias(layer, coef[-1] / _beta(layer), old.dtype)

    def _write_bias(self, layer: _Layer, bias: np.ndarray, dtype: np.dtype) -> None:
        if layer.bias is not None and self.get(layer.bias).size == bias.size:
            self.put(layer.bias, bias.reshape(self.get(layer.bias).shape).astype(dtype))
            return
        name = layer.bias or f"{layer.weight}__refit_bias"
        while layer.bias is None and name in self.at:
            name += "_"
        self.put(name, bias.astype(dtype))
        node = self.model.graph.node[layer.index]
        if len(node.input) > 2:
            node.input[2] = name
        else:
            node.input.append(name)



def _beta(layer: _Layer) -> float:
    """The factor on a layer's bias input (Gemm's ``beta``; 1 for a Conv)."""
    return float(layer.attrs["beta"]) if layer.op_type == "Gemm" else 1.0
