"""BatchNorm folded into the convolution before it, for inference engines that do not do it
themselves (PyTorch eager runs every BatchNorm as a kernel of its own: a pass over memory
that TensorRT and ONNX Runtime fold away when they build).

In eval mode ``BN(conv(x)) = conv'(x)`` with ``W' = W * s`` and ``b' = (b - mean) * s + beta``
per output channel, ``s = gamma / sqrt(var + eps)``. Two forms, one rule (fold only where the
convolution's output feeds the BatchNorm alone, so nothing else sees the change):

* :func:`fold_onnx` on an ONNX graph (for modules built from ONNX by :mod:`.onnx_torch`); the
  folded weights keep their initializer names, so the module names and the per-layer
  mapping do not change;
* :func:`fold_module` on a PyTorch module, through ``torch.fx`` (a module fx cannot trace is
  returned as it is, said in a debug line).
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from ..utils.log import get_logger

if TYPE_CHECKING:
    import onnx
    from torch import nn

log = get_logger("backends.torch")


def fold_onnx(model: "onnx.ModelProto") -> tuple["onnx.ModelProto", int]:
    """A copy of ``model`` with every Conv -> BatchNormalization pair folded; (copy, count)."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    readers = Counter(name for n in g.node for name in n.input)
    readers.update(o.name for o in g.output)
    by_input = {n.input[0]: n for n in g.node if n.op_type == "BatchNormalization" and n.input}
    folded = []
    for conv in g.node:
        bn = by_input.get(conv.output[0]) if conv.op_type == "Conv" else None
        if bn is not None and readers[conv.output[0]] == 1 and _fold_pair(conv, bn, inits, readers, g):
            folded.append(bn)
    for bn in folded:
        g.node.remove(bn)
    return model, len(folded)


def _fold_pair(conv, bn, inits: dict, readers: Counter, g) -> bool:
    """Fold ``bn`` into ``conv`` in place when every parameter is a constant of its own."""
    from onnx import numpy_helper

    names = list(bn.input[1:5])
    weight = conv.input[1] if len(conv.input) > 1 else ""
    training = next((a.i for a in bn.attribute if a.name == "training_mode"), 0)
    if len(bn.output) != 1 or training or weight not in inits or readers[weight] != 1 \
            or any(n not in inits for n in names):
        return False
    if len(conv.input) > 2 and conv.input[2] and (conv.input[2] not in inits
                                                    or readers[conv.input[2]] != 1):
        return False
    gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in names)
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    s = gamma / np.sqrt(var + eps)
    w = numpy_helper.to_array(inits[weight])
    has_bias = len(conv.input) > 2 and bool(conv.input[2])
    b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else 0.0
    inits[weight].CopyFrom(numpy_helper.from_array(
        (w * s.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype), weight))
    bias = ((b - mean) * s + beta).astype(w.dtype)
    if has_bias:
        inits[conv.input[2]].CopyFrom(numpy_helper.from_array(bias, conv.input[2]))
    else:
        name = weight[: -len("weight")] + "bias" if weight.endswith("weight") else f"{weight}_bias"
        name = name if name not in inits else f"{weight}_folded_bias"
        g.initializer.append(numpy_helper.from_array(bias, name))
        inits[name] = g.initializer[-1]
        conv.input.append(name)
    conv.output[0] = bn.output[0]
    return True


def fold_module(module: "nn.Module") -> tuple["nn.Module", int]:
    """``module`` with Conv -> BatchNorm pairs folded by ``torch.fx`` (eval mode); (module,
    count). The module is returned unchanged when fx cannot trace it."""
    from torch import nn
    from torch.fx.experimental.optimization import fuse

    before = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    try:
        fused = fuse(module.eval(), inplace=False)
    except Exception as exc:  # fx cannot trace data-dependent control flow, and more
        log.debug("BatchNorm left unfolded: torch.fx cannot trace the model (%s)",
                  (str(exc).splitlines() or [type(exc).__name__])[0][:160])
        return module, 0
    after = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    return fused, before - after
