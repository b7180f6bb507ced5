"""Random CNN graphs for property-based tests and fuzzing of the channel surgery.

A graph is described by a *spec*: a list of block dicts (plain data, so Hypothesis can
shrink a failure to a minimal list and a failure can be stored as JSON). ``build_cnn``
turns a spec into an ONNX model with seeded random weights. Blocks cover the patterns
the analysis must follow: residual adds, concat/split/slice on channels, depthwise and
grouped convs, squeeze-excite, per-channel and scalar constants (PP-LCNet's learnable
affine), activations with f(0) != 0, pooling/resize/pad, channel shuffles (alone and in
ShuffleNet units between grouped convs), GroupNorm (the op, and PyTorch's export of it),
LayerNorm over the channels (which must freeze), and flatten into a dense head.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BLOCKS = ("conv", "residual", "se", "csp", "slice_concat", "branch_concat", "scale", "pool",
          "resize", "pad", "shuffle", "depthwise", "grouped", "convtranspose", "transpose_roundtrip",
          "shuffle_unit", "groupnorm", "affine", "layernorm")
ACTS = ("Relu", "HardSwish", "SiLU", "Sigmoid", "LeakyRelu", "PRelu", "Clip", "GELU", "none")
HEADS = ("gap_gemm", "flatten_gemm", "reshape_matmul")


def random_spec(seed: int, *, max_blocks: int = 6) -> dict[str, Any]:
    """A random spec from a seed (the fuzzer's source of graphs)."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(rng.randint(1, max_blocks)):
        kind = rng.choice(BLOCKS)
        blocks.append({"kind": kind, "c": rng.choice([4, 6, 8, 12]), "act": rng.choice(ACTS),
                       "bn": rng.random() < 0.6, "k": rng.choice([1, 3])})
    return {"in_channels": rng.choice([1, 3]), "size": rng.choice([6, 8]), "stem": rng.choice([4, 8]),
            "blocks": blocks, "head": rng.choice(HEADS), "classes": rng.choice([3, 5]), "seed": seed}


def spec_opset(spec: dict[str, Any]) -> int:
    """17, or 21 when a block uses the GroupNormalization op (its opset-18 form, scale and
    bias per group, fails the ONNX checker as deprecated)."""
    return 21 if any(b["kind"] == "groupnorm" and b.get("k") == 3 for b in spec["blocks"]) else 17


def build_cnn(spec: dict[str, Any]) -> onnx.ModelProto:
    opset = spec_opset(spec)
    b = _Builder(np.random.default_rng(spec.get("seed", 0)))
    x = "input"
    c, h = spec["in_channels"], spec["size"]
    b.inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", c, h, h]))
    x, c = b.conv(x, c, spec["stem"], k=3, act="Relu", bn=True)
    for block in spec["blocks"]:
        x, c, h = getattr(b, "block_" + block["kind"])(x, c, h, block)
    x = b.head(x, c, h, spec["head"], spec["classes"])
    graph = helper.make_graph(b.nodes, "random_cnn", b.inputs,
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", spec["classes"]])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10 if opset >= 21 else 8
    return model


class _Builder:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.count = 0

    # -- primitives ---------------------------------------------------------------
    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, arr: np.ndarray, prefix: str = "w") -> str:
        name = self.name(prefix)
        arr = np.asarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [self.name("t") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type.lower()), **attrs))
        return outs

    def op1(self, op_type: str, inputs: list[str], **attrs) -> str:
        return self.op(op_type, inputs, **attrs)[0]

    def conv(self, x: str, cin: int, cout: int, *, k: int = 3, groups: int = 1, stride: int = 1,
             act: str = "Relu", bn: bool = True, bias: bool = False) -> tuple[str, int]:
        w = self.rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32) * np.sqrt(2 / (cin // groups * k * k))
        inputs = [x, self.const(w)]
        if bias or not bn:
            inputs.append(self.const(self.rng.uniform(-0.1, 0.1, cout).astype(np.float32), "b"))
        y = self.op1("Conv", inputs, kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride] * 2, group=groups)
        if bn:
            y = self.batchnorm(y, cout)
        return self.act(y, cout, act), cout

    def batchnorm(self, x: str, c: int) -> str:
        r = self.rng
        params = [r.uniform(0.5, 1.5, c), r.uniform(-0.2, 0.2, c), r.uniform(-0.2, 0.2, c), r.uniform(0.5, 1.5, c)]
        return self.op1("BatchNormalization", [x] + [self.const(p.astype(np.float32), "bn") for p in params])

    def act(self, x: str, c: int, act: str) -> str:
        if act == "none":
            return x
        if act == "SiLU":
            return self.op1("Mul", [x, self.op1("Sigmoid", [x])])
        if act == "GELU":
            half = self.const(np.array(0.5, np.float32), "k")
            one = self.const(np.array(1.0, np.float32), "k")
            root = self.const(np.array(np.sqrt(2.0), np.float32), "k")
            erf = self.op1("Erf", [self.op1("Div", [x, root])])
            return self.op1("Mul", [self.op1("Mul", [x, half]), self.op1("Add", [erf, one])])
        if act == "PRelu":
            slope = self.rng.uniform(0.05, 0.3, (c, 1, 1)).astype(np.float32)
            return self.op1("PRelu", [x, self.const(slope, "slope")])
        if act == "Clip":
            return self.op1("Clip", [x, self.const(np.array(-1.0, np.float32), "k"),
                                     self.const(np.array(6.0, np.float32), "k")])
        if act == "LeakyRelu":
            return self.op1("LeakyRelu", [x], alpha=0.1)
        return self.op1(act, [x])

    # -- blocks: each returns (tensor, channels, spatial size) ------------------------
    def block_conv(self, x, c, h, s):
        y, c2 = self.conv(x, c, s["c"], k=s["k"], act=s["act"], bn=s["bn"])
        return y, c2, h

    def block_residual(self, x, c, h, s):
        y, _ = self.conv(x, c, s["c"], k=s["k"], act=s["act"], bn=s["bn"])
        y, _ = self.conv(y, s["c"], c, k=s["k"], act="none", bn=True)
        return self.op1("Relu", [self.op1("Add", [x, y])]), c, h

    def block_depthwise(self, x, c, h, s):
        y, _ = self.conv(x, c, c * 2, k=3, groups=c, act=s["act"], bn=s["bn"])  # multiplier 2
        y, c2 = self.conv(y, c * 2, s["c"], k=1, act="Relu", bn=True)
        return y, c2, h

    def block_grouped(self, x, c, h, s):
        y, c1 = self.conv(x, c, 8, k=1, act="Relu", bn=True)
        y, c2 = self.conv(y, c1, 12, k=s["k"], groups=4, act=s["act"], bn=s["bn"])
        return y, c2, h

    def block_se(self, x, c, h, s):
        pooled = self.op1("GlobalAveragePool", [x])
        r, _ = self.conv(pooled, c, max(2, c // 2), k=1, act="Relu", bn=False)
        e, _ = self.conv(r, max(2, c // 2), c, k=1, act="none", bn=False)
        gate = self.op1("HardSigmoid", [e], alpha=1 / 6, beta=0.5) if s["act"] == "HardSwish" else self.op1("Sigmoid", [e])
        return self.op1("Mul", [x, gate]), c, h

    def block_csp(self, x, c, h, s):
        half = s["c"]
        y, _ = self.conv(x, c, 2 * half, k=1, act=s["act"], bn=s["bn"])
        a, b = self.op("Split", [y, self.const(np.array([half, half], np.int64), "split")], n_out=2, axis=1)
        b2, _ = self.conv(b, half, half, k=3, act="Relu", bn=True)
        return self.op1("Concat", [a, b, b2], axis=1), 3 * half, h

    def block_slice_concat(self, x, c, h, s):
        y, c2 = self.conv(x, c, s["c"] + 2, k=1, act=s["act"], bn=s["bn"])
        starts, ends, axes = (self.const(np.array([v], np.int64), "sl") for v in (1, c2 - 1, 1))
        inner = self.op1("Slice", [y, starts, ends, axes])
        return self.op1("Concat", [inner, x], axis=1), c2 - 2 + c, h

    def block_branch_concat(self, x, c, h, s):
        a, ca = self.conv(x, c, s["c"], k=1, act=s["act"], bn=s["bn"])
        b, cb = self.conv(x, c, 4, k=3, act="Relu", bn=True)
        return self.op1("Concat", [a, b], axis=1), ca + cb, h

    def block_scale(self, x, c, h, s):
        scale = self.rng.uniform(0.5, 1.5, (1, c, 1, 1)).astype(np.float32)
        shift = self.rng.uniform(-0.5, 0.5, (c, 1, 1)).astype(np.float32)
        y = self.op1("Mul", [x, self.const(scale, "scale")])
        return self.op1("Add", [y, self.const(shift, "shift")]), c, h

    def block_pool(self, x, c, h, s):
        if h < 4:
            return x, c, h
        op = "MaxPool" if s["bn"] else "AveragePool"
        return self.op1(op, [x], kernel_shape=[2, 2], strides=[2, 2]), c, h // 2

    def block_resize(self, x, c, h, s):
        if h > 8:
            return x, c, h
        scales = self.const(np.array([1, 1, 2, 2], np.float32), "scales")
        return self.op1("Resize", [x, "", scales], mode="nearest"), c, h * 2

    def block_pad(self, x, c, h, s):
        pads = self.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
        y = self.op1("Pad", [x, pads])
        return self.op1("MaxPool", [y], kernel_shape=[3, 3], strides=[1, 1]), c, h

    def block_shuffle(self, x, c, h, s):
        if c % 2:
            return x, c, h
        return self.shuffle(x, c, h, 2), c, h

    def shuffle(self, x: str, c: int, h: int, groups: int) -> str:
        """ShuffleNet's channel shuffle: Reshape [N,g,C/g,H,W], swap the two axes, Reshape back."""
        shape1 = self.const(np.array([0, groups, c // groups, h, h], np.int64), "shape")
        shape2 = self.const(np.array([0, c, h, h], np.int64), "shape")
        y = self.op1("Reshape", [x, shape1])
        y = self.op1("Transpose", [y], perm=[0, 2, 1, 3, 4])
        return self.op1("Reshape", [y, shape2])

    def block_shuffle_unit(self, x, c, h, s):
        """A ShuffleNet unit: grouped 1x1, shuffle, depthwise 3x3, grouped 1x1, residual add.
        With k=3 the grouped convs keep their group count (positions pruned), with k=1 they
        have as many groups as channels per group (whole groups pruned)."""
        g = 3 if s["c"] % 3 == 0 else 2
        if c % g:
            x, c = self.conv(x, c, 4 * g, k=1, act="Relu", bn=True)
        mid = g * s["c"] if s["k"] == 3 else g * g
        y, _ = self.conv(x, c, mid, k=1, groups=g, act="Relu", bn=True)
        y = self.shuffle(y, mid, h, g)
        y, _ = self.conv(y, mid, mid, k=3, groups=mid, act="none", bn=s["bn"])
        y, _ = self.conv(y, mid, c, k=1, groups=g, act="none", bn=True)
        return self.op1("Relu", [self.op1("Add", [x, y])]), c, h

    def block_groupnorm(self, x, c, h, s):
        """A conv, then GroupNorm: the op (k=3) or PyTorch's export of it (k=1: Reshape
        [N,G,-1], InstanceNormalization, Reshape to the input's Shape, Mul, Add)."""
        y, c2 = self.conv(x, c, s["c"], k=1, act="none", bn=False)
        groups = c2 // 2 if s["bn"] else 2
        gamma = self.rng.uniform(0.5, 1.5, c2).astype(np.float32)
        beta = self.rng.uniform(-0.2, 0.2, c2).astype(np.float32)
        if s["k"] == 3:
            y = self.op1("GroupNormalization", [y, self.const(gamma, "gn"), self.const(beta, "gn")],
                         num_groups=groups, epsilon=1e-5)
        else:
            grouped = self.op1("Reshape", [y, self.const(np.array([0, groups, -1], np.int64), "shape")])
            normed = self.op1("InstanceNormalization", [grouped, self.const(np.ones(groups, np.float32), "gn"),
                                                        self.const(np.zeros(groups, np.float32), "gn")], epsilon=1e-5)
            y = self.op1("Reshape", [normed, self.op1("Shape", [y])])
            y = self.op1("Mul", [y, self.const(gamma.reshape(c2, 1, 1), "gn")])
            y = self.op1("Add", [y, self.const(beta.reshape(c2, 1, 1), "gn")])
        return self.act(y, c2, s["act"]), c2, h

    def block_affine(self, x, c, h, s):
        """PP-LCNet's learnable affine: a scalar scale and bias after BatchNorm."""
        y, c2 = self.conv(x, c, s["c"], k=s["k"], act="none", bn=True)
        shape = () if s["bn"] else (1,)
        y = self.op1("Mul", [y, self.const(self.rng.uniform(0.5, 1.5, shape).astype(np.float32), "affine")])
        y = self.op1("Add", [y, self.const(self.rng.uniform(-0.5, 0.5, shape).astype(np.float32), "affine")])
        return self.act(y, c2, s["act"]), c2, h

    def block_layernorm(self, x, c, h, s):
        """LayerNorm over the channels (ConvNeXt's channels-last form, or over C,H,W), then a
        conv: the normalised channels must freeze, the conv's output stays prunable."""
        r = self.rng
        if s["bn"]:
            y = self.op1("Transpose", [x], perm=[0, 2, 3, 1])
            y = self.op1("LayerNormalization", [y, self.const(r.uniform(0.5, 1.5, c).astype(np.float32), "ln"),
                                                self.const(r.uniform(-0.2, 0.2, c).astype(np.float32), "ln")],
                         axis=-1, epsilon=1e-5)
            y = self.op1("Transpose", [y], perm=[0, 3, 1, 2])
        else:
            y = self.op1("LayerNormalization", [x, self.const(r.uniform(0.5, 1.5, (c, h, h)).astype(np.float32), "ln")],
                         axis=1, epsilon=1e-5)
        y, c2 = self.conv(y, c, s["c"], k=s["k"], act=s["act"], bn=False)
        return y, c2, h

    def block_convtranspose(self, x, c, h, s):
        if h > 8:
            return x, c, h
        w = self.rng.standard_normal((c, s["c"], 2, 2)).astype(np.float32) * 0.3
        y = self.op1("ConvTranspose", [x, self.const(w), self.const(np.zeros(s["c"], np.float32), "b")],
                     kernel_shape=[2, 2], strides=[2, 2])
        return self.act(y, s["c"], s["act"]), s["c"], h * 2

    def block_transpose_roundtrip(self, x, c, h, s):
        """NCHW -> NHWC, a per-channel MatMul on the last axis, back to NCHW."""
        y = self.op1("Transpose", [x], perm=[0, 2, 3, 1])
        w = self.rng.standard_normal((c, s["c"])).astype(np.float32) / np.sqrt(c)
        y = self.op1("MatMul", [y, self.const(w)])
        y = self.op1("Add", [y, self.const(self.rng.uniform(-0.1, 0.1, s["c"]).astype(np.float32), "b")])
        return self.op1("Transpose", [y], perm=[0, 3, 1, 2]), s["c"], h

    # -- heads ----------------------------------------------------------------------
    def head(self, x: str, c: int, h: int, kind: str, classes: int) -> str:
        if kind == "gap_gemm":
            x = self.op1("Flatten", [self.op1("GlobalAveragePool", [x])], axis=1)
            features = c
        elif kind == "flatten_gemm":
            x = self.op1("Flatten", [x], axis=1)
            features = c * h * h
        else:
            shape = self.const(np.array([0, -1], np.int64), "shape")
            x = self.op1("Reshape", [x, shape])
            w = self.rng.standard_normal((c * h * h, classes)).astype(np.float32) / np.sqrt(c * h * h)
            return self.op1("Add", [self.op1("MatMul", [x, self.const(w)]),
                                    self.const(np.zeros(classes, np.float32), "b")])
        w = self.rng.standard_normal((classes, features)).astype(np.float32) / np.sqrt(features)
        return self.op1("Gemm", [x, self.const(w), self.const(np.zeros(classes, np.float32), "b")], transB=1)
