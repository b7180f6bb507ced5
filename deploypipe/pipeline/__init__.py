"""The end-to-end pipeline behind ``deploypipe build``."""
from .build import build
from .config import BuildConfig

__all__ = ["BuildConfig", "build"]
