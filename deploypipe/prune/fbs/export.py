"""The gated model as ONNX: the saliency branch, the rank mask and the boost/suppress
multiply are ordinary ONNX ops (ReduceMean, Gemm, Relu, comparisons, ReduceSum, Mul), so
any engine runs it and gets the gated model's outputs, but computes every channel: no
engine skips channels per input, so its latency is the dense model's plus the gates'."""
from __future__ import annotations

from pathlib import Path

from ...export import ParityReport, export_onnx, verify_onnx
from .wrap import GatedModel


def export_gated(gated: GatedModel, path: str | Path, *, atol: float = 1e-4, rtol: float = 1e-3) -> ParityReport:
    """Write the gated model to ``path`` and compare ONNX Runtime with PyTorch on it."""
    export_onnx(gated.model, path, input_shape=(1, *gated.input_shape[1:]))
    return verify_onnx(gated.model, path, atol=atol, rtol=rtol)
