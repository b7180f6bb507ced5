"""Reader for the IDX format of the original MNIST files (plain or gzip-compressed)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import InputError

# IDX type code -> big-endian numpy dtype.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file; a bad header or size is an InputError."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise InputError(f"{str(path)!r} is not an IDX file (bad magic number)",
                         hint="give the original MNIST files (e.g. train-images-idx3-ubyte.gz)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise InputError(f"IDX file {str(path)!r} has a truncated header", hint="replace the file")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(f"IDX file {str(path)!r} holds {len(raw) - header} data bytes but its "
                         f"header {dims} needs {expected}", hint="the file is truncated or corrupt; replace it")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read IDX file {str(path)!r} ({exc})", hint="replace the file") from None


def find_idx(folder: Path, stem: str) -> Path | None:
    """The file for ``stem`` (e.g. ``train-images``): ``train-images-idx3-ubyte[.gz]`` or
    ``train-images.idx3-ubyte`` as some mirrors name it."""
    hits = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith(stem)
                  and "idx" in p.name and "ubyte" in p.name)
    return hits[0] if hits else None
