"""The surgery oracle: a shrunk graph must compute exactly what the original computes
when the dropped channels are made dead by zeroing their consumer weights.

Zeroing consumers (not producers) is the exact statement: a dropped channel's producer may
pass through an activation with f(0) != 0 (Sigmoid, HardSigmoid, a bias), but once its
consumer weights are zero it contributes nothing, which is what removal does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import UnsupportedError
from ..utils.closeness import Closeness, compare_arrays
from .analysis import Analysis, check_drop


@dataclass(frozen=True)
class OracleReport:
    """The oracle's verdict: errors of every output over every trial, held to
    ``atol + rtol * max |reference|`` (:mod:`deploypipe.utils.closeness`, per tensor)."""

    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    passed: bool
    outputs: tuple[str, ...]
    worst: str = ""

    @classmethod
    def of(cls, closeness: Closeness, names: Sequence[str]) -> "OracleReport":
        return cls(closeness.max_abs, closeness.max_rel, closeness.atol, closeness.rtol,
                   closeness.passed, tuple(names), closeness.worst(len(names), names))

    def to_dict(self) -> dict:
        return {"max_abs": self.max_abs, "max_rel": self.max_rel, "atol": self.atol,
                "rtol": self.rtol, "passed": self.passed}

    def sentence(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        worst = f", {self.worst}" if self.worst and not self.passed else ""
        return (f"oracle {verdict}: max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g} "
                f"(tolerance {self.atol:g} + {self.rtol:g} x max |reference|{worst})")


def dead_channels_model(analysis: Analysis, drop: Mapping[int, Sequence[int]]) -> onnx.ModelProto:
    """The original model with the consumer weights of dropped channels set to zero."""
    clean = check_drop(analysis, drop)
    zero: dict[str, list[tuple[int, np.ndarray]]] = {}
    for gid, channels in clean.items():
        for m in analysis.groups[gid].by_role("consumer"):
            zero.setdefault(m.tensor, []).append((m.axis, m.indices(channels)))
    model = onnx.ModelProto()
    model.CopyFrom(analysis.model)
    at = {t.name: i for i, t in enumerate(model.graph.initializer)}
    for name, cuts in zero.items():
        arr = analysis.view.const(name).copy()
        for axis, idx in cuts:
            index = [slice(None)] * arr.ndim
            index[axis] = idx
            arr[tuple(index)] = 0
        model.graph.initializer[at[name]].CopyFrom(numpy_helper.from_array(arr, name))
    return model


def random_feeds(model: onnx.ModelProto, *, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if not np.issubdtype(dtype, np.floating):
            raise UnsupportedError(f"graph input {vi.name!r} is not floating point",
                                   hint="the oracle feeds random floats; give the model float inputs")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (batch if i == 0 else 1)
                for i, d in enumerate(tt.shape.dim)]
        feeds[vi.name] = rng.standard_normal(dims).astype(dtype)
    return feeds


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, threads: int = 0) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types, all with text
        from ..utils.ort_session import load_refusal

        raise load_refusal("the model", exc) from None
    return sess.run(None, feeds)


def compare(reference: list[np.ndarray], result: list[np.ndarray], *, atol: float, rtol: float,
            names: Sequence[str] = ()) -> OracleReport:
    """``result`` against ``reference``, output by output, at the tensor's scale."""
    return OracleReport.of(compare_arrays(zip(reference, result), atol=atol, rtol=rtol,
                                          per="tensor"), names)


def verify_shrink(analysis: Analysis, shrunk: onnx.ModelProto, drop: Mapping[int, Sequence[int]], *,
                  batch: int = 2, trials: int = 2, seed: int = 0, atol: float = 1e-4,
                  rtol: float = 1e-4) -> OracleReport:
    """Run the shrunk model and the dead-channel original on the same random inputs."""
    dead = dead_channels_model(analysis, drop)
    names = [o.name for o in analysis.model.graph.output]
    pairs = []
    for trial in range(trials):
        feeds = random_feeds(analysis.model, batch=batch, seed=seed + trial)
        pairs += zip(run_onnx(dead, feeds), run_onnx(shrunk, feeds))
    return OracleReport.of(compare_arrays(pairs, atol=atol, rtol=rtol, per="tensor"), names)
