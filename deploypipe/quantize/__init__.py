"""Post-training quantization of ONNX graphs: int8 Q/DQ graphs calibrated on a dataset's
training images, fp16 graphs, each verified against fp32 on held-out images.

    from deploypipe.quantize import QuantizeConfig, quantize_file
    q = quantize_file("pruned.onnx", "pruned.int8.onnx", load_dataset("digits"), QuantizeConfig("int8"))
    print(q.sentence())   # layers in int8, layers kept in fp32 and why, agreement and error

ONNX Runtime's own tools do the work (``onnxruntime.quantization`` for int8,
``onnxruntime.transformers.float16`` for fp16): no dependency beyond onnxruntime.
"""
from __future__ import annotations

from .config import PRECISIONS, TOLERANCES, QuantizeConfig, Tolerance, scheme_for
from .data import ImageInput, image_input, load_images
from .graph import has_qdq, is_quantized, layer_precisions
from .model import model_size, quantize_file, quantize_model
from .result import KeptLayer, Quantized
from .timing import TimingQuantizer
from .verify import OutputCheck, Verification

__all__ = ["PRECISIONS", "TOLERANCES", "ImageInput", "KeptLayer", "OutputCheck", "QuantizeConfig", "Quantized",
           "TimingQuantizer", "Tolerance", "Verification", "has_qdq", "image_input", "is_quantized",
           "layer_precisions", "load_images", "model_size", "quantize_file", "quantize_model", "scheme_for"]
