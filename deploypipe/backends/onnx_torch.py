"""An ONNX CNN graph as a PyTorch module, so the torch backend can time ONNX-only models.

The torch backend runs a model's own PyTorch module, but latency-table sub-models, the
candidates of a measure-and-correct loop and graphs pruned by ONNX surgery exist only as
ONNX files. :func:`module_from_onnx` builds an :class:`OnnxModule` that computes what ONNX
Runtime computes from such a graph, on the CPU or CUDA, in fp32 or (after ``.half()``) fp16:

* every Conv, ConvTranspose, BatchNormalization, Gemm and MatMul with a constant weight is
  a real leaf module (``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d``, ...) named after
  its weight initializer (``layer1.0.conv1.weight`` -> submodule ``layer1.0.conv1``, with
  plain ``nn.Module`` containers for the dots), so :class:`.torch_profile.ModuleTimer`
  times it and :func:`.torch_profile.layers_from_timer` maps it back to its ONNX node;
  a weight without a ``.weight`` name gives a module named after the node instead;
* other floating constants are buffers of the ``onnx_constants`` submodule, so
  ``.to(device)``, ``.half()`` and channels-last reach them; integer constants stay CPU
  tensors, and the constant arguments of shape ops (Reshape targets, axes, pads, scales)
  Python lists, which ``.half()`` and ``.to()`` never touch;
* the other nodes are steps run functionally in graph order. A node that reads only
  constants is evaluated once here; shape arithmetic that is left (``Shape`` of a tensor
  whose batch is symbolic) runs on small CPU tensors, so the batch size can change.

Ops outside :data:`SUPPORTED_OPS`, and control flow, raise :class:`UnsupportedError`
naming the op and the node.
"""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

from ..errors import InputError, UnsupportedError

_HINT = "use a TensorRT or ONNX Runtime GPU target for this model"
_CONTROL_FLOW = ("If", "Loop", "Scan")
_SAME = ("SAME_UPPER", "SAME_LOWER")
# Inputs read as Python values (shapes, axes, pads, scales), not as tensors.
_PARAM_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Slice": (1, 2, 3, 4), "Split": (1,), "Squeeze": (1,), "Unsqueeze": (1,),
    "Pad": (1, 2, 3), "Resize": (1, 2, 3), "Upsample": (1,), "Tile": (1,), "Expand": (1,),
    "Clip": (1, 2), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "ConstantOfShape": (0,)}


def module_from_onnx(model: "onnx.ModelProto | str | Path") -> "OnnxModule":
    """An :class:`OnnxModule` (eval mode, CPU, fp32) computing what ``model`` computes."""
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        if not path.is_file():
            raise InputError(f"there is no ONNX file at {str(path)!r}", hint="check the path")
        model = onnx.load(str(path))
    return _Builder(model).build()


class _Step(NamedTuple):
    fn: Callable[..., Any]
    inputs: tuple[str, ...]   # env keys; "" is an absent optional input
    outputs: tuple[str, ...]
    free: tuple[str, ...]     # env keys read for the last time by this step


class _Precision:
    """The floating dtype of the current run (fp16 after ``.half()``), for Cast."""

    dtype = torch.float32


class OnnxModule(nn.Module):
    """An ONNX graph run by PyTorch; ``forward`` takes the graph inputs in ``input_names``
    order and returns one tensor, or a tuple in ``output_names`` order."""

    def __init__(self, input_names: Sequence[str], output_names: Sequence[str]):
        super().__init__()
        self.input_names: list[str] = list(input_names)
        self.output_names: list[str] = list(output_names)
        self.onnx_constants = nn.Module()
        self._steps: list[_Step] = []
        self._literals: dict[str, Any] = {"": None}
        self._buffer_keys: dict[str, str] = {}
        self._output_keys: list[str] = []
        self._precision = _Precision()

    def forward(self, *inputs: torch.Tensor) -> "torch.Tensor | tuple[torch.Tensor, ...]":
        if len(inputs) != len(self.input_names):
            raise InputError(f"this ONNX model takes {len(self.input_names)} inputs "
                             f"({', '.join(self.input_names)}) but got {len(inputs)}",
                             hint="pass one tensor per graph input, in order")
        self._precision.dtype = next((x.dtype for x in inputs if x.is_floating_point()),
                                     torch.float32)
        env = dict(self._literals)
        buffers = self.onnx_constants._buffers
        for key, name in self._buffer_keys.items():
            env[key] = buffers[name]
        env.update(zip(self.input_names, inputs))
        for step in self._steps:
            out = step.fn(*[env[k] for k in step.inputs])
            if len(step.outputs) == 1:
                env[step.outputs[0]] = out
            else:
                env.update(zip(step.outputs, out))
            for key in step.free:
                del env[key]
        outs = tuple(env[k] for k in self._output_keys)
        return outs[0] if len(outs) == 1 else outs

    def extra_repr(self) -> str:
        return (f"inputs={self.input_names}, outputs={self.output_names}, "
                f"steps={len(self._steps)}")


# --- building ------------------------------------------------------------------------------

class _Builder:
    """Walks the graph once: folds constant nodes, makes modules and steps."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.protos = {t.name: t for t in graph.initializer}
        self.arrays: dict[str, np.ndarray] = {}
        inputs = [v.name for v in graph.input if v.name not in self.protos]
        self.root = OnnxModule(inputs, [v.name for v in graph.output])
        self.known = set(inputs)
        self.index = 0

    def build(self) -> OnnxModule:
        _check_graph(self.model)
        for self.index, node in enumerate(self.model.graph.node):
            self._add(node)
        self._finish()
        return self.root.eval()

    # constants
    def is_const(self, name: str) -> bool:
        return name in self.arrays or name in self.protos

    def const(self, name: str) -> np.ndarray | None:
        if name not in self.arrays and name in self.protos:
            self.arrays[name] = numpy_helper.to_array(self.protos[name])
        return self.arrays.get(name)

    def weight(self, node: onnx.NodeProto, i: int, optional: bool = False) -> np.ndarray | None:
        """The constant input ``i`` of a module-making node (None if optional and absent)."""
        name = node.input[i] if i < len(node.input) else ""
        if not name and optional:
            return None
        value = self.const(name) if name else None
        if value is None:
            raise UnsupportedError(f"the torch backend needs constant weights, but input {i} of "
                                   f"{node.op_type} node {_label(node)} is computed at run time",
                                   hint=_HINT)
        return value

    # nodes
    def _add(self, node: onnx.NodeProto) -> None:
        attrs = _attrs(node)
        present = [n for n in node.input if n]
        if node.op_type not in _MODULE_OPS and all(self.is_const(n) for n in present):
            self._fold(node, attrs)
            return
        made = (_MODULE_OPS.get(node.op_type) or _BUILDERS[node.op_type])(self, node, attrs)
        fn, used = made if isinstance(made, tuple) else (made, range(len(node.input)))
        keys = tuple(self._key(node, i) for i in used)
        outs = tuple(o or f"\0unused{self.index}.{k}" for k, o in enumerate(_outputs(node)))
        self.root._steps.append(_Step(fn, keys, outs, ()))
        self.known.update(outs)

    def _fold(self, node: onnx.NodeProto, attrs: dict[str, Any]) -> None:
        made = _BUILDERS[node.op_type](self, node, attrs)
        fn, used = made if isinstance(made, tuple) else (made, range(len(node.input)))
        args = [_as_tensor(self.const(node.input[i])) if i < len(node.input) and node.input[i]
                else None for i in used]
        with torch.no_grad():
            out = fn(*args)
        outs = _outputs(node)
        for name, value in zip(outs, out if len(outs) > 1 else (out,)):
            if name:
                self.arrays[name] = value.detach().cpu().numpy() if torch.is_tensor(value) \
                    else np.asarray(value)

    def _key(self, node: onnx.NodeProto, i: int) -> str:
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            return ""
        if self.is_const(name):
            return self._const_key(name, param=i in _PARAM_INPUTS.get(node.op_type, ()))
        if name not in self.known:
            raise InputError(f"{node.op_type} node {_label(node)} reads tensor {name!r} that no "
                             "earlier node or graph input provides",
                             hint="check the model with onnx.checker (nodes must be in order)")
        return name

    def _const_key(self, name: str, *, param: bool) -> str:
        """Where a constant lives: a Python value, a floating buffer, or a CPU tensor."""
        value, root = self.const(name), self.root
        if param:
            key = name + "\0value"
            root._literals[key] = value.tolist()
        elif value.dtype.kind == "f":
            key = name + "\0buffer"
            if key not in root._buffer_keys:
                buf = _free_name(root.onnx_constants, re.sub(r"\W", "_", name) or "c")
                root.onnx_constants.register_buffer(buf, torch.from_numpy(np.array(value)))
                root._buffer_keys[key] = buf
        else:
            key = name + "\0tensor"
            root._literals[key] = torch.from_numpy(np.array(value))
        return key

    def _finish(self) -> None:
        root = self.root
        keys = []
        for name in root.output_names:
            if self.is_const(name):
                keys.append(self._const_key(name, param=False))
            elif name in self.known:
                keys.append(name)
            else:
                raise InputError(f"graph output {name!r} is written by no node",
                                 hint="check the model with onnx.checker")
        root._output_keys = keys
        last: dict[str, int] = {}
        for i, step in enumerate(root._steps):
            last.update({k: i for k in (*step.inputs, *step.outputs)})
        frees: dict[int, list[str]] = {}
        for key, i in last.items():
            if key and key not in keys:
                frees.setdefault(i, []).append(key)
        root._steps = [s._replace(free=tuple(frees.get(i, ()))) for i, s in enumerate(root._steps)]

    # module names
    def place(self, node: onnx.NodeProto, weight_name: str, module: nn.Module) -> None:
        """Attach ``module`` under its weight's prefix (``a.b.weight`` -> ``a.b``), or
        under the node's sanitized name when that is not possible."""
        module.eval()
        path = weight_name[: -len(".weight")] if weight_name.endswith(".weight") else ""
        if path and _attach(self.root, path, module):
            return
        base = re.sub(r"\W", "_", node.name).strip("_") or f"{node.op_type}_{self.index}"
        self.root.add_module(_free_name(self.root, base), module)


def _attach(root: nn.Module, path: str, module: nn.Module) -> bool:
    """Add ``module`` at dotted ``path``, creating plain containers; False if a segment
    is empty, taken by something else, or inside a module that is not a plain container."""
    segments = path.split(".")
    parent: nn.Module | None = root
    for i, seg in enumerate(segments):
        child = parent._modules.get(seg) if parent is not None else None
        last = i == len(segments) - 1
        if not seg or (child is not None and (last or type(child) is not nn.Module)):
            return False
        if child is None and hasattr(parent if parent is not None else _FRESH, seg):
            return False
        parent = child
    parent = root
    for seg in segments[:-1]:
        if seg not in parent._modules:
            parent.add_module(seg, nn.Module())
        parent = parent._modules[seg]
    parent.add_module(segments[-1], module)
    return True


_FRESH = nn.Module()


def _free_name(owner: nn.Module, base: str) -> str:
    name, k = base, 1
    while hasattr(owner, name):
        k += 1
        name = f"{base}_{k}"
    return name


def _check_graph(model: onnx.ModelProto) -> None:
    if len(model.graph.sparse_initializer):
        raise UnsupportedError("the torch backend cannot read sparse initializers", hint=_HINT)
    for node in model.graph.node:
        if node.op_type in _CONTROL_FLOW:
            raise UnsupportedError(f"the torch backend cannot run the control-flow op "
                                   f"{node.op_type} (node {_label(node)})", hint=_HINT)
        if node.domain not in ("", "ai.onnx") or node.op_type not in _BUILDERS:
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            raise UnsupportedError(f"the torch backend cannot run ONNX op {op} "
                                   f"(node {_label(node)})", hint=_HINT)


def _unsupported(node: onnx.NodeProto, what: str) -> UnsupportedError:
    return UnsupportedError(f"the torch backend cannot run {node.op_type} node {_label(node)} "
                            f"with {what}", hint=_HINT)


def _label(node: onnx.NodeProto) -> str:
    return repr(node.name) if node.name else f"writing {node.output[0]!r}"


def _outputs(node: onnx.NodeProto) -> list[str]:
    """The node's outputs without trailing absent ones."""
    outs = list(node.output)
    while outs and not outs[-1]:
        outs.pop()
    return outs


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        out[attr.name] = value
    return out


def _as_tensor(value: np.ndarray | None) -> torch.Tensor | None:
    """A CPU tensor of ``value``, sharing its memory when numpy allows (no 500 MB copies)."""
    if value is None:
        return None
    value = np.asarray(value)
    if not value.flags.c_contiguous or not value.flags.writeable:
        value = value.copy()
    return torch.from_numpy(value)


def _ints(value: Any) -> Any:
    return value.tolist() if torch.is_tensor(value) else value


def _scalar(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.reshape(-1)[0].item()
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _materialize(module: nn.Module, **arrays: np.ndarray | None) -> nn.Module:
    """Give a module built on the meta device its real parameters and buffers."""
    for name, value in arrays.items():
        if value is None:
            continue
        tensor = _as_tensor(value)
        if name in module._parameters:
            module._parameters[name] = nn.Parameter(tensor, requires_grad=False)
        else:
            module._buffers[name] = tensor
    return module


# --- module ops ----------------------------------------------------------------------------

class _Window:
    """Kernel, strides, dilations and padding (explicit or auto_pad) of a conv or pool."""

    def __init__(self, attrs: dict[str, Any], kernel: Sequence[int]):
        nd = len(kernel)
        self.kernel = tuple(int(k) for k in kernel)
        self.strides = tuple(attrs.get("strides", [1] * nd))
        self.dilations = tuple(attrs.get("dilations", [1] * nd))
        self.pads = tuple(attrs.get("pads", [0] * 2 * nd))
        self.auto = attrs.get("auto_pad", "NOTSET")

    def symmetric(self) -> tuple[int, ...] | None:
        """Equal begin/end pads known without the input shape, else None."""
        nd = len(self.kernel)
        if self.auto == "VALID":
            return (0,) * nd
        begin, end = self.pads[:nd], self.pads[nd:]
        return begin if self.auto not in _SAME and begin == end else None

    def onnx_pads(self, spatial: Sequence[int]) -> list[int]:
        """ONNX pads (begins, then ends) for an input of these spatial sizes."""
        nd = len(self.kernel)
        if self.auto == "VALID":
            return [0] * 2 * nd
        if self.auto not in _SAME:
            return list(self.pads)
        begin, end = [], []
        for n, k, s, d in zip(spatial, self.kernel, self.strides, self.dilations):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if self.auto == "SAME_UPPER" else big)
            end.append(big if self.auto == "SAME_UPPER" else small)
        return begin + end


def _torch_pads(pads: Sequence[int]) -> list[int]:
    """ONNX pads (x1_begin, x2_begin, ..., x1_end, ...) as F.pad's (last axis first)."""
    nd = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(nd)):
        out += [int(pads[i]), int(pads[i + nd])]
    return out


_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _conv_inputs(b: _Builder, node: onnx.NodeProto, a: dict, classes: dict[int, type]):
    """A (transposed) conv node's weight, bias, spatial rank, groups and window; refused when
    ``classes`` has no module of that rank."""
    w, bias = b.weight(node, 1), b.weight(node, 2, optional=True)
    nd, groups = w.ndim - 2, int(a.get("group", 1))
    if nd not in classes:
        raise _unsupported(node, f"{nd} spatial dimensions")
    return w, bias, nd, groups, _Window(a, w.shape[2:])


def _conv(b: _Builder, node: onnx.NodeProto, a: dict) -> tuple[Callable, list[int]]:
    w, bias, nd, groups, win = _conv_inputs(b, node, a, _CONV)
    static = win.symmetric()
    conv = _CONV[nd](w.shape[1] * groups, w.shape[0], win.kernel, stride=win.strides,
                     padding=static or 0, dilation=win.dilations, groups=groups,
                     bias=bias is not None, device="meta")
    b.place(node, node.input[1], _materialize(conv, weight=w, bias=bias))
    return (conv if static is not None else functools.partial(_padded_call, conv, win)), [0]


def _padded_call(module: nn.Module, win: _Window, x: torch.Tensor) -> torch.Tensor:
    return module(F.pad(x, _torch_pads(win.onnx_pads(x.shape[2:]))))


def _conv_transpose(b: _Builder, node: onnx.NodeProto, a: dict) -> tuple[Callable, list[int]]:
    w, bias, nd, groups, win = _conv_inputs(b, node, a, _CONV_T)
    out_pad = tuple(a.get("output_padding", [0] * nd))
    out_shape = a.get("output_shape")
    static = win.symmetric() if out_shape is None and win.auto == "NOTSET" else None
    conv = _CONV_T[nd](w.shape[0], w.shape[1] * groups, win.kernel, stride=win.strides,
                       padding=static or 0, output_padding=out_pad, groups=groups,
                       bias=bias is not None, dilation=win.dilations, device="meta")
    b.place(node, node.input[1], _materialize(conv, weight=w, bias=bias))
    if static is not None:
        return conv, [0]
    return functools.partial(_cropped_call, conv, win, out_pad, out_shape), [0]


def _cropped_call(module: nn.Module, win: _Window, out_pad: tuple[int, ...],
                  out_shape: list[int] | None, x: torch.Tensor) -> torch.Tensor:
    """A transposed conv run without padding, then cropped by the ONNX pads."""
    nd = len(win.kernel)
    if out_shape is None and win.auto not in _SAME:
        pads = list(win.pads) if win.auto != "VALID" else [0] * 2 * nd
    else:
        spatial = x.shape[2:]
        target = out_shape[-nd:] if out_shape else [n * s for n, s in zip(spatial, win.strides)]
        begin, end = [], []
        for n, k, s, d, op, t in zip(spatial, win.kernel, win.strides, win.dilations, out_pad,
                                     target):
            total = s * (n - 1) + op + (k - 1) * d + 1 - t
            small, big = total // 2, total - total // 2
            begin.append(small if win.auto == "SAME_UPPER" else big)
            end.append(big if win.auto == "SAME_UPPER" else small)
        pads = begin + end
    return F.pad(module(x), [-p for p in _torch_pads(pads)])


def _batch_norm(b: _Builder, node: onnx.NodeProto, a: dict) -> Any:
    if a.get("training_mode", 0) or len(_outputs(node)) > 1:
        raise _unsupported(node, "training-mode outputs (running mean and variance)")
    if a.get("spatial", 1) == 0:
        raise _unsupported(node, "spatial=0 (per-element statistics)")
    eps = float(a.get("epsilon", 1e-5))
    params = [b.const(n) for n in node.input[1:5]]
    if any(p is None for p in params):
        return functools.partial(_batch_norm_fn, eps)
    scale, bias, mean, var = params
    bn = nn.BatchNorm2d(scale.size, eps=eps, device="meta")
    _materialize(bn, weight=scale, bias=bias, running_mean=mean, running_var=var,
                 num_batches_tracked=np.zeros((), np.int64))
    b.place(node, node.input[1], bn)
    return functools.partial(_any_rank, bn), [0]


def _any_rank(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A BatchNorm2d on an (N, C, ...) tensor of any rank."""
    if x.dim() == 4:
        return module(x)
    return module(x.reshape(x.shape[0], x.shape[1], -1, 1)).reshape(x.shape)


def _batch_norm_fn(eps: float, x, scale, bias, mean, var) -> torch.Tensor:
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=eps)


def _gemm(b: _Builder, node: onnx.NodeProto, a: dict) -> Any:
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    trans_a, trans_b = int(a.get("transA", 0)), int(a.get("transB", 0))
    w = b.const(node.input[1])
    c_name = node.input[2] if len(node.input) > 2 else ""
    c = b.const(c_name) if c_name else None
    bias_like = c is None or c.ndim < 2 or c.shape[0] == 1
    if w is None or w.ndim != 2 or (c_name and c is None) or not bias_like:
        return functools.partial(_gemm_fn, alpha, beta, trans_a, trans_b)
    weight = w if trans_b else w.T
    weight = weight * np.asarray(alpha, weight.dtype) if alpha != 1.0 else weight
    bias = None
    if c is not None:
        bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],))
        bias = bias * np.asarray(beta, bias.dtype) if beta != 1.0 else bias
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    b.place(node, node.input[1], _materialize(linear, weight=weight, bias=bias))
    return (functools.partial(_transposed_call, linear) if trans_a else linear), [0]


def _transposed_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x.t())


def _gemm_fn(alpha, beta, trans_a, trans_b, x, w, c=None) -> torch.Tensor:
    x, w = _align(x.t() if trans_a else x, w.t() if trans_b else w)
    y = x @ w
    y = y * alpha if alpha != 1.0 else y
    if c is None:
        return y
    y, c = _align(y, c)
    return y + (c * beta if beta != 1.0 else c)


def _matmul(b: _Builder, node: onnx.NodeProto, a: dict) -> Any:
    w = b.const(node.input[1])
    if w is None or w.ndim != 2 or b.is_const(node.input[0]):
        return functools.partial(_binary, torch.matmul)
    linear = nn.Linear(w.shape[0], w.shape[1], bias=False, device="meta")
    b.place(node, node.input[1], _materialize(linear, weight=w.T))
    return linear, [0]


_MODULE_OPS = {"Conv": _conv, "ConvTranspose": _conv_transpose,
               "BatchNormalization": _batch_norm, "Gemm": _gemm, "MatMul": _matmul}


# --- elementwise ops -----------------------------------------------------------------------

def _align(*xs: torch.Tensor) -> list[torch.Tensor]:
    """Tensors on one device: CPU shape tensors join the device of the others."""
    devices = {x.device for x in xs if x is not None}
    if len(devices) < 2:
        return list(xs)
    device = next(d for d in devices if d.type != "cpu")
    return [x.to(device) if x is not None else None for x in xs]


def _binary(fn: Callable, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.device != b.device:
        a, b = _align(a, b)
    return fn(a, b)


def _nary(fn: Callable, mean: bool, *xs: torch.Tensor) -> torch.Tensor:
    xs = _align(*xs)
    out = functools.reduce(fn, xs)
    return out / len(xs) if mean else out


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


def _mod(fmod: bool, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.fmod(a, b) if fmod else torch.remainder(a, b)


def _where(cond: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(*_align(cond, a, b))


def _identity(x: torch.Tensor, *_: Any) -> torch.Tensor:
    return x


def _prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, x * slope)


def _hard_sigmoid(alpha: float, beta: float, x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x * alpha + beta, 0.0, 1.0)


def _clip(x: torch.Tensor, low: Any = None, high: Any = None) -> torch.Tensor:
    low, high = _scalar(low), _scalar(high)
    if low is None and high is None:
        return x
    return torch.clamp(x, low, high)


_UNARY: dict[str, Callable] = {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp,
    "Log": torch.log, "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs,
    "Reciprocal": torch.reciprocal, "Floor": torch.floor, "Ceil": torch.ceil,
    "Round": torch.round, "Sign": torch.sign, "Erf": torch.erf, "Not": torch.logical_not,
    "Softplus": F.softplus, "HardSwish": F.hardswish, "Mish": F.mish, "Identity": _identity}
_BINARY: dict[str, Callable] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": _div, "Pow": torch.pow,
    "Equal": torch.eq, "Greater": torch.gt, "Less": torch.lt, "GreaterOrEqual": torch.ge,
    "LessOrEqual": torch.le, "And": torch.logical_and, "Or": torch.logical_or,
    "Xor": torch.logical_xor}
_NARY: dict[str, tuple[Callable, bool]] = {
    "Sum": (torch.add, False), "Mean": (torch.add, True), "Max": (torch.maximum, False),
    "Min": (torch.minimum, False)}


def _activation(b: _Builder, node: onnx.NodeProto, a: dict) -> Callable:
    op = node.op_type
    if op == "LeakyRelu":
        return functools.partial(F.leaky_relu, negative_slope=float(a.get("alpha", 0.01)))
    if op == "Elu":
        return functools.partial(F.elu, alpha=float(a.get("alpha", 1.0)))
    if op == "HardSigmoid":
        return functools.partial(_hard_sigmoid, float(a.get("alpha", 0.2)),
                                 float(a.get("beta", 0.5)))
    if op == "Gelu":
        return functools.partial(F.gelu, approximate=a.get("approximate", "none"))
    if op == "PRelu":
        return _prelu
    if op == "Mod":
        return functools.partial(_binary, functools.partial(_mod, bool(a.get("fmod", 0))))
    if op == "Clip" and b.opset < 11:
        return (functools.partial(_clip, low=a.get("min"), high=a.get("max")), [0])
    return _clip


def _table_op(b: _Builder, node: onnx.NodeProto, a: dict) -> Callable:
    op = node.op_type
    if op in _UNARY:
        return _UNARY[op]
    if op in _BINARY:
        return functools.partial(_binary, _BINARY[op])
    fn, mean = _NARY[op]
    return functools.partial(_nary, fn, mean)


# --- shape ops -----------------------------------------------------------------------------

def _reshape(x: torch.Tensor, shape: Any, allowzero: int = 0) -> torch.Tensor:
    shape = _ints(shape)
    if not allowzero:
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _flatten(axis: int, x: torch.Tensor) -> torch.Tensor:
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _squeeze(x: torch.Tensor, axes: Any = None) -> torch.Tensor:
    if axes is None:
        return x.squeeze()
    axes = _ints(axes)
    return x.squeeze(tuple(a % x.dim() for a in ([axes] if isinstance(axes, int) else axes)))


def _unsqueeze(x: torch.Tensor, axes: Any) -> torch.Tensor:
    axes = _ints(axes)
    axes = [axes] if isinstance(axes, int) else axes
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return x


def _concat(axis: int, *xs: torch.Tensor) -> torch.Tensor:
    return torch.cat(_align(*xs), dim=axis)


def _split(axis: int, n: int, equal_chunks: bool, x: torch.Tensor, split: Any = None):
    sizes = _ints(split) if split is not None else None
    if not sizes:
        d = x.shape[axis]
        chunk = -(-d // n) if equal_chunks else d // n
        sizes = [chunk] * (n - 1) + [d - chunk * (n - 1)]
    parts = torch.split(x, list(sizes), dim=axis)
    return parts if n > 1 else parts[0]


def _slice(x: torch.Tensor, starts: Any, ends: Any, axes: Any = None, steps: Any = None):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    index: list[Any] = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= x.dim()
        n = x.shape[axis]
        start, end = start + n if start < 0 else start, end + n if end < 0 else end
        if step > 0:
            index[axis] = slice(min(max(start, 0), n), min(max(end, 0), n), step)
        else:
            picks = range(min(max(start, 0), n - 1), min(max(end, -1), n - 1), step)
            x = x.index_select(axis, torch.tensor(list(picks), dtype=torch.long, device=x.device))
    return x[tuple(index)]


def _gather(axis: int, data: torch.Tensor, indices: Any) -> torch.Tensor:
    idx = indices if torch.is_tensor(indices) else torch.tensor(indices)
    idx = idx.to(device=data.device, dtype=torch.long)
    axis %= data.dim()
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    out = data.index_select(axis, idx.reshape(-1))
    return out.reshape((*data.shape[:axis], *idx.shape, *data.shape[axis + 1:]))


def _shape(start: int, end: int | None, x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(tuple(x.shape)[start:end], dtype=torch.int64)


def _size(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(x.numel(), dtype=torch.int64)


def _expand(x: torch.Tensor, shape: Any) -> torch.Tensor:
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(_ints(shape))))


def _tile(x: torch.Tensor, repeats: Any) -> torch.Tensor:
    return x.repeat(*_ints(repeats))


def _transpose(perm: list[int] | None, x: torch.Tensor) -> torch.Tensor:
    return x.permute(*(perm if perm is not None else reversed(range(x.dim()))))


def _pad(mode: str, x: torch.Tensor, pads: Any, value: Any = None, axes: Any = None):
    pads, rank = _ints(pads), x.dim()
    axes = [a % rank for a in _ints(axes)] if axes is not None else list(range(rank))
    begin, end = dict(zip(axes, pads[: len(axes)])), dict(zip(axes, pads[len(axes):]))
    tp: list[int] = []
    for d in reversed(range(rank)):
        tp += [int(begin.get(d, 0)), int(end.get(d, 0))]
    while tp and tp[-1] == 0 and tp[-2] == 0:
        del tp[-2:]
    if not tp:
        return x
    if mode == "constant":
        value = _scalar(value)
        return F.pad(x, tp, value=float(value) if value is not None else 0.0)
    return F.pad(x, tp, mode={"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode])


_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32,
           7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64,
           16: torch.bfloat16}


_HALF = (torch.float16, torch.bfloat16)


def _cast(dtype: torch.dtype, precision: _Precision, x: torch.Tensor) -> torch.Tensor:
    """Cast; a cast to fp32/fp64 in a model run in fp16 gives fp16, as ``.half()`` means."""
    if dtype in (torch.float32, torch.float64) and precision.dtype in _HALF:
        dtype = precision.dtype
    return x.to(dtype)


def _constant_of_shape(value: torch.Tensor, shape: Any) -> torch.Tensor:
    return torch.full(tuple(_ints(shape)), value.item(), dtype=value.dtype)


def _constant(node: onnx.NodeProto, a: dict) -> np.ndarray:
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.array(a[key], dtype=dtype)
    raise _unsupported(node, f"a {', '.join(a) or 'missing'} value")


def _shape_op(b: _Builder, node: onnx.NodeProto, a: dict) -> Any:
    """Builders of the shape and data-movement ops."""
    op, n_out = node.op_type, len(_outputs(node))
    p = functools.partial
    if op == "Reshape":
        return (p(_reshape, shape=a["shape"]), [0]) if "shape" in a else \
            p(_reshape, allowzero=int(a.get("allowzero", 0)))
    if op == "Flatten":
        return p(_flatten, int(a.get("axis", 1)))
    if op in ("Squeeze", "Unsqueeze"):
        fn = _squeeze if op == "Squeeze" else _unsqueeze
        return (p(fn, axes=a["axes"]), [0]) if "axes" in a else fn
    if op == "Concat":
        return p(_concat, int(a["axis"]))
    if op == "Split":
        fn = p(_split, int(a.get("axis", 0)), n_out, "num_outputs" in a)
        return (p(fn, split=a["split"]), [0]) if "split" in a else fn
    if op == "Slice":
        if b.opset < 10:
            return p(_slice, starts=a["starts"], ends=a["ends"], axes=a.get("axes")), [0]
        return _slice
    if op == "Gather":
        return p(_gather, int(a.get("axis", 0)))
    if op == "Shape":
        return p(_shape, int(a.get("start", 0)), a.get("end"))
    if op == "Transpose":
        return p(_transpose, a.get("perm"))
    if op == "Pad":
        if b.opset < 11:
            return p(_pad, a.get("mode", "constant"), pads=a["pads"],
                     value=a.get("value", 0.0)), [0]
        return p(_pad, a.get("mode", "constant"))
    if op == "Cast":
        if int(a["to"]) not in _DTYPES:
            raise _unsupported(node, f"target type {helper.tensor_dtype_to_string(int(a['to']))}")
        return p(_cast, _DTYPES[int(a["to"])], b.root._precision)
    return _simple_shape_op(node, a, n_out)


def _simple_shape_op(node: onnx.NodeProto, a: dict, n_out: int) -> Any:
    op = node.op_type
    if op == "Constant":
        value = _constant(node, a)
        return lambda: torch.from_numpy(np.array(value))
    if op == "ConstantOfShape":
        value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        return functools.partial(_constant_of_shape, torch.from_numpy(np.array(value).reshape(-1)))
    if op == "Dropout":
        return _identity if n_out == 1 else _dropout_with_mask
    table = {"Size": _size, "Expand": _expand, "Tile": _tile, "Where": _where}
    return table[op]


def _dropout_with_mask(x: torch.Tensor, *_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return x, torch.ones_like(x, dtype=torch.bool)


# --- pooling, normalisation, softmax, resize -------------------------------------------------

def _pooling(b: _Builder, node: onnx.NodeProto, a: dict) -> Callable:
    op = node.op_type
    if op == "GlobalAveragePool":
        return _global_avg_pool
    if op == "GlobalMaxPool":
        return _global_max_pool
    if len(_outputs(node)) > 1:
        raise _unsupported(node, "an Indices output")
    win = _Window(a, a["kernel_shape"])
    if op == "AveragePool" and any(d != 1 for d in win.dilations):
        raise _unsupported(node, "dilations")
    include = bool(a.get("count_include_pad", 0))
    return functools.partial(_pool, op == "MaxPool", win, bool(a.get("ceil_mode", 0)), include)


def _global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        return F.adaptive_avg_pool2d(x, 1)
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def _global_max_pool(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _pool(is_max: bool, win: _Window, ceil: bool, include_pad: bool, x: torch.Tensor):
    """Max or average pooling; pads torch cannot express are applied explicitly."""
    nd = x.dim() - 2
    k, s, d = win.kernel, win.strides, win.dilations
    sym = win.symmetric()
    if sym is not None and all(p <= ((kk - 1) * dd + 1) // 2 for p, kk, dd in zip(sym, k, d)):
        if is_max:
            return _MAX_POOL[nd](x, k, s, sym, d, ceil_mode=ceil)
        return _AVG_POOL[nd](x, k, s, sym, ceil_mode=ceil, count_include_pad=include_pad)
    pads = win.onnx_pads(x.shape[2:])
    extra = _ceil_extra(x.shape[2:], pads, win) if ceil else [0] * nd
    full = _torch_pads(pads[:nd] + [p + e for p, e in zip(pads[nd:], extra)])
    if is_max:
        return _MAX_POOL[nd](F.pad(x, full, value=float("-inf")), k, s, 0, d)
    # average = window sum / number of counted cells (input, plus pads if included)
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    mask = F.pad(ones, _torch_pads(pads), value=1.0 if include_pad else 0.0)
    mask = F.pad(mask, _torch_pads([0] * nd + list(extra)))
    return _AVG_POOL[nd](F.pad(x, full), k, s) / _AVG_POOL[nd](mask, k, s)


def _ceil_extra(spatial: Sequence[int], pads: list[int], win: _Window) -> list[int]:
    """End padding that makes floor-mode pooling give ceil-mode's output size (a window
    must start inside the input or its begin padding, as in ONNX Runtime and PyTorch)."""
    nd, extra = len(spatial), []
    for i, (n, k, s, d) in enumerate(zip(spatial, win.kernel, win.strides, win.dilations)):
        size, span = n + pads[i] + pads[i + nd], (k - 1) * d + 1
        out = -(-(size - span) // s) + 1
        if (out - 1) * s >= n + pads[i]:
            out -= 1
        extra.append(max(0, (out - 1) * s + span - size))
    return extra


def _lrn(size: int, alpha: float, beta: float, bias: float, x: torch.Tensor) -> torch.Tensor:
    """ONNX LRN: the channel window is [c - floor((size-1)/2), c + ceil((size-1)/2)]."""
    n, c = x.shape[0], x.shape[1]
    sq = (x * x).reshape(n, 1, c, -1)
    sq = F.pad(sq, (0, 0, (size - 1) // 2, size // 2))
    mean = F.avg_pool2d(sq, (size, 1), stride=1).reshape(x.shape)
    return x / (bias + alpha * mean).pow(beta)


def _instance_norm(eps: float, x, scale, bias) -> torch.Tensor:
    return F.instance_norm(x, weight=scale, bias=bias, eps=eps)


def _group_norm(groups: int, eps: float, x, scale, bias) -> torch.Tensor:
    c = x.shape[1]
    if scale.numel() != c:  # opset 18: one scale and bias per group
        scale, bias = scale.repeat_interleave(c // groups), bias.repeat_interleave(c // groups)
    return F.group_norm(x, groups, scale, bias, eps)


def _layer_norm(axis: int, eps: float, x, scale, bias=None) -> torch.Tensor:
    axis %= x.dim()
    y = F.layer_norm(x, tuple(x.shape[axis:]), eps=eps) * scale
    return y + bias if bias is not None else y


def _softmax(fn: Callable, axis: int, coerce_2d: bool, x: torch.Tensor) -> torch.Tensor:
    """Softmax over ``axis``; before opset 13 over all axes from ``axis`` on, flattened."""
    axis %= x.dim()
    if not coerce_2d or axis == x.dim() - 1:
        return fn(x, dim=axis)
    return fn(x.reshape(math.prod(x.shape[:axis]), -1), dim=1).reshape(x.shape)


def _reduce(kind: str, keep: bool, noop: bool, x: torch.Tensor, axes: Any = None):
    axes = _ints(axes) if axes is not None else []
    if not axes:
        if noop:
            return x
        axes = list(range(x.dim()))
    dims = tuple(a % x.dim() for a in axes)
    fn = {"ReduceMean": torch.mean, "ReduceSum": torch.sum, "ReduceMax": torch.amax,
          "ReduceMin": torch.amin}[kind]
    return fn(x, dim=dims, keepdim=keep)


def _norm_op(b: _Builder, node: onnx.NodeProto, a: dict) -> Any:
    """Builders of LRN, the normalisations, softmax and the reductions."""
    op, eps, p = node.op_type, float(a.get("epsilon", 1e-5)), functools.partial
    if op == "LRN":
        return p(_lrn, int(a["size"]), float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75)),
                 float(a.get("bias", 1.0)))
    if op == "InstanceNormalization":
        return p(_instance_norm, eps)
    if op == "GroupNormalization":
        return p(_group_norm, int(a["num_groups"]), eps)
    if op == "LayerNormalization":
        if len(_outputs(node)) > 1:
            raise _unsupported(node, "Mean and InvStdDev outputs")
        return p(_layer_norm, int(a.get("axis", -1)), eps)
    if op in ("Softmax", "LogSoftmax"):
        fn = F.softmax if op == "Softmax" else F.log_softmax
        default = -1 if b.opset >= 13 else 1
        return p(_softmax, fn, int(a.get("axis", default)), b.opset < 13)
    keep, noop = bool(a.get("keepdims", 1)), bool(a.get("noop_with_empty_axes", 0))
    if "axes" in a:
        return p(_reduce, op, keep, noop, axes=a["axes"]), [0]
    return p(_reduce, op, keep, noop)


class _Resize:
    """Resize and Upsample, nearest or (multi)linear, one axis at a time through index
    tables that follow ONNX's coordinate transforms and rounding exactly."""

    def __init__(self, mode: str, coord: str, nearest: str, *, full: bool,
                 axes: list[int] | None = None, fixed_scales: list[float] | None = None):
        self.mode, self.coord, self.nearest, self.full = mode, coord, nearest, full
        self.axes, self.fixed_scales = axes, fixed_scales
        self._tables: dict[tuple, Any] = {}

    def __call__(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        if self.full:  # Resize-11+: X, roi, scales, sizes
            scales, sizes = (list(args) + [None] * 3)[1:3]
        else:  # Resize-10 and Upsample: X, scales (or the scales attribute)
            scales, sizes = (args[0] if args else self.fixed_scales), None
        for axis, out, scale in self._targets(tuple(x.shape), scales, sizes):
            if out != x.shape[axis] or scale != 1.0:
                x = self._resize_axis(x, axis, out, scale)
        return x

    def _targets(self, shape: tuple[int, ...], scales: Any, sizes: Any):
        axes = [a % len(shape) for a in self.axes] if self.axes else list(range(len(shape)))
        sizes = _ints(sizes) if sizes is not None else None
        scales = _ints(scales) if scales is not None else None
        if sizes:
            return [(a, int(s), float(np.float32(s) / np.float32(shape[a])))
                    for a, s in zip(axes, sizes)]
        return [(a, int(np.float32(sc) * np.float32(shape[a])), float(np.float32(sc)))
                for a, sc in zip(axes, scales)]

    def _resize_axis(self, x: torch.Tensor, axis: int, out: int, scale: float) -> torch.Tensor:
        key = (axis, x.shape[axis], out, scale, x.device, x.dtype)
        if key not in self._tables:
            self._tables[key] = self._table(x, axis, x.shape[axis], out, scale)
        table = self._tables[key]
        if self.mode == "nearest":
            return x.index_select(axis, table)
        i0, i1, w = table
        return torch.lerp(x.index_select(axis, i0), x.index_select(axis, i1), w)

    def _table(self, x: torch.Tensor, axis: int, n: int, out: int, scale: float) -> Any:
        src = _source_coords(self.coord, n, out, scale)
        if self.mode == "nearest":
            idx = np.clip(_round(self.nearest, src, scale), 0, n - 1).astype(np.int64)
            return torch.from_numpy(idx).to(x.device)
        src = np.clip(src, 0, n - 1)
        i0 = np.minimum(np.floor(src), n - 1).astype(np.int64)
        i1 = np.minimum(i0 + 1, n - 1)
        shape = [1] * x.dim()
        shape[axis] = out
        w = torch.from_numpy((src - i0).astype(np.float32)).reshape(shape)
        return (torch.from_numpy(i0).to(x.device), torch.from_numpy(i1).to(x.device),
                w.to(device=x.device, dtype=x.dtype))


def _source_coords(coord: str, n: int, out: int, scale: float) -> np.ndarray:
    """Input coordinates of the output cells (float32, as ONNX Runtime computes them)."""
    x, s, f = np.arange(out, dtype=np.float32), np.float32(scale), np.float32
    if coord == "half_pixel":
        return (x + f(0.5)) / s - f(0.5)
    if coord == "pytorch_half_pixel":
        return (x + f(0.5)) / s - f(0.5) if out > 1 else np.zeros_like(x)
    if coord == "align_corners":
        return np.zeros_like(x) if out == 1 else x * f(n - 1) / f(out - 1)
    if coord == "asymmetric":
        return x / s
    adjustment = f(out) / (s * f(n))  # half_pixel_symmetric
    offset = f(n) / f(2) * (f(1) - adjustment)
    return offset + (x + f(0.5)) / s - f(0.5)


def _round(mode: str, x: np.ndarray, scale: float) -> np.ndarray:
    if mode == "round_prefer_floor":
        return np.ceil(x - np.float32(0.5))
    if mode == "round_prefer_ceil":
        return np.floor(x + np.float32(0.5))
    if mode == "floor":
        return np.floor(x)
    if mode == "ceil":
        return np.ceil(x)
    return np.ceil(x) if scale < 1 else np.trunc(x)  # "simple": Resize-10 and Upsample


_COORDS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
           "half_pixel_symmetric")


def _resize(b: _Builder, node: onnx.NodeProto, a: dict) -> Any:
    mode = {"bilinear": "linear"}.get(a.get("mode", "nearest"), a.get("mode", "nearest"))
    coord = a.get("coordinate_transformation_mode", "half_pixel")
    if mode not in ("nearest", "linear"):
        raise _unsupported(node, f"mode {mode!r}")
    if a.get("antialias", 0) or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise _unsupported(node, "antialias or keep_aspect_ratio_policy")
    if node.op_type == "Upsample" or b.opset < 11:
        fixed = a.get("scales")
        resizer = _Resize(mode, "asymmetric", "simple", full=False, fixed_scales=fixed)
        return (resizer, [0]) if fixed is not None else (resizer, [0, 1])
    if coord not in _COORDS:
        raise _unsupported(node, f"coordinate_transformation_mode {coord!r}")
    return _Resize(mode, coord, a.get("nearest_mode", "round_prefer_floor"), full=True,
                   axes=a.get("axes"))


def _const_op(b: _Builder, node: onnx.NodeProto, a: dict) -> Any:
    return _simple_shape_op(node, a, len(_outputs(node)))


_BUILDERS: dict[str, Callable[..., Any]] = {
    **{op: _table_op for op in (*_UNARY, *_BINARY, *_NARY)},
    **{op: _activation for op in ("LeakyRelu", "Elu", "HardSigmoid", "Gelu", "PRelu", "Mod",
                                  "Clip")},
    **{op: _shape_op for op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split",
                                "Slice", "Gather", "Shape", "Transpose", "Pad", "Cast", "Size",
                                "Expand", "Tile", "Where", "Dropout")},
    **{op: _const_op for op in ("Constant", "ConstantOfShape")},
    **{op: _pooling for op in ("GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool")},
    **{op: _norm_op for op in ("LRN", "InstanceNormalization", "GroupNormalization",
                               "LayerNormalization", "Softmax", "LogSoftmax", "ReduceMean",
                               "ReduceSum", "ReduceMax", "ReduceMin")},
    "Resize": _resize, "Upsample": _resize,
    **_MODULE_OPS,
}
#: Every ONNX op (default domain) that :func:`module_from_onnx` can run.
SUPPORTED_OPS: frozenset[str] = frozenset(_BUILDERS)
