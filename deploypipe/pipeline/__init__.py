"""The end-to-end pipeline behind ``deploypipe build``: a :class:`BuildConfig` in, a
:class:`BuildReport` out."""
from .build import build
from ..report.schema import BuildReport
from .config import (BuildConfig, DataOptions, ModelSource, OutputOptions, PruneOptions, QuantizeOptions,
                     TrainOptions)

__all__ = ["BuildConfig", "BuildReport", "DataOptions", "ModelSource", "OutputOptions", "PruneOptions",
           "QuantizeOptions", "TrainOptions", "build"]
