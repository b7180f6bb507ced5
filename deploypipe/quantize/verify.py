"""The quantized model against its fp32 original on held-out images, output by output.

Each output passes when its error stays within ``max_error`` of the output's largest |fp32
value| and, for a classifier output (shape (N, classes)), when the top-1 class agrees on at
least ``min_agreement`` of the images (see :class:`Tolerance`). The error is each image's
largest absolute error, at the 99th percentile over the images: on 10,000 MNIST images a
resnet56 in int8 agreed on 99.92% of them, while one image's worst logit moved 2.57 against a
tolerance of 1.85; a single image in ten thousand would fail any model. The largest error of
all is reported beside it.
Both models run in ONNX Runtime on the CPU, whatever the target: the CPU kernels are the
reference semantics of a Q/DQ graph.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import UnsupportedError
from .config import Tolerance
from .data import ImageInput

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class OutputCheck:
    """One output: the error found and what was allowed."""

    name: str
    max_abs: float  # the largest absolute error over every image (reported)
    tolerance_abs: float  # max_error * max |fp32|
    agreement: float | None  # top-1 agreement; None for an output that is not (N, classes)
    min_agreement: float | None
    error_p99: float | None = None  # each image's largest error, 99th percentile (judged)

    @property
    def error(self) -> float:
        """The error the check judges: ``error_p99`` where known, else the largest."""
        return self.max_abs if self.error_p99 is None else self.error_p99

    @property
    def passed(self) -> bool:
        agrees = self.agreement is None or self.agreement >= self.min_agreement
        return agrees and self.error <= self.tolerance_abs

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


@dataclass(frozen=True)
class Verification:
    """Every output's check, on how many held-out images, with the accuracies both models
    reach on their labels (first classifier output)."""

    outputs: tuple[OutputCheck, ...]
    images: int
    tolerance: Tolerance
    accuracy_fp32: float | None = None
    accuracy_quantized: float | None = None

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def score(self) -> tuple[float, float]:
        """How close to passing (larger is better): the lowest top-1 agreement, then the
        largest error over its tolerance, negated."""
        agreement = min((o.agreement for o in self.outputs if o.agreement is not None), default=1.0)
        return agreement, -max(o.error / max(o.tolerance_abs, 1e-30) for o in self.outputs)

    def sentence(self) -> str:
        parts = []
        for o in self.outputs:
            agree = (f"top-1 agreement {o.agreement:.2%} (at least {o.min_agreement:.1%}), "
                     if o.agreement is not None else "")
            parts.append(f"{o.name}: {agree}error on 99% of images {o.error:.3g} (at most "
                         f"{o.tolerance_abs:.3g}; largest {o.max_abs:.3g})")
        return f"{'; '.join(parts)} on {self.images} held-out images: {'passed' if self.passed else 'FAILED'}"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "images": self.images, "tolerance": self.tolerance.to_dict(),
                "accuracy_fp32": self.accuracy_fp32, "accuracy_quantized": self.accuracy_quantized,
                "outputs": [o.to_dict() for o in self.outputs], "sentence": self.sentence()}


def run_cpu(model: "onnx.ModelProto", image: ImageInput, x: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
    """Every output of ``model`` on images ``x`` (ONNX Runtime, CPU), in batches."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        parts = [session.run(None, {image.name: b}) for b in image.batches(x, batch_size)]
    except Exception as exc:  # onnxruntime raises its own exception types, all with text
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
        raise UnsupportedError(f"ONNX Runtime cannot run the model on the dataset's images ({first})",
                               hint="check that the model runs in ONNX Runtime and takes images of this size") from None
    return [np.concatenate([p[k] for p in parts])[:len(x)] for k in range(len(parts[0]))]


def compare(reference: Sequence[np.ndarray], quantized: Sequence[np.ndarray], names: Sequence[str],
            tolerance: Tolerance, labels: np.ndarray | None = None) -> Verification:
    """Check ``quantized`` outputs against ``reference`` ones (same order)."""
    checks, accuracy = [], (None, None)
    for name, ref, got in zip(names, reference, quantized):
        ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
        classifier = ref.ndim == 2 and ref.shape[1] > 1
        agreement = float(np.mean(ref.argmax(1) == got.argmax(1))) if classifier else None
        if classifier and labels is not None and accuracy == (None, None):
            accuracy = (float(np.mean(ref.argmax(1) == labels)), float(np.mean(got.argmax(1) == labels)))
        per_image = np.abs(ref - got).reshape(len(ref), -1).max(axis=1) if ref.ndim and len(ref) \
            else np.abs(ref - got).reshape(-1)
        checks.append(OutputCheck(name, float(np.max(per_image, initial=0.0)),
                                  tolerance.max_error * float(np.max(np.abs(ref), initial=0.0)), agreement,
                                  tolerance.min_agreement if classifier else None,
                                  float(np.percentile(per_image, 99)) if per_image.size else 0.0))
    return Verification(tuple(checks), len(reference[0]) if reference else 0, tolerance, *accuracy)


def verify(fp32: "onnx.ModelProto", quantized: "onnx.ModelProto", image: ImageInput, x: np.ndarray,
           tolerance: Tolerance, labels: np.ndarray | None = None,
           reference: Sequence[np.ndarray] | None = None) -> Verification:
    """Run both models on ``x`` and compare (``reference``: fp32 outputs already computed)."""
    ref = reference if reference is not None else run_cpu(fp32, image, x)
    names = [o.name for o in fp32.graph.output]
    return compare(ref, run_cpu(quantized, image, x), names, tolerance, labels)
