"""Atomic writes, content hashes and output-path checks.

Every artifact deploypipe writes goes to a temporary file in the destination folder and
is renamed into place, so a crash or a full disk never leaves a half-written file and
never touches an input.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import InputError
from .faults import fault


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` if the block succeeds."""
    dest = Path(dest)
    ensure_writable_dir(dest.parent)
    _check_replaceable(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(dest.name), suffix=TEMP_SUFFIX, dir=dest.parent)
    except OSError as exc:  # /proc, a full or read-only disk: the folder exists but takes no files
        raise _os_error(exc, dest) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual mode
        fault(f"write:{dest.name}")
        os.replace(tmp_path, dest)
    except OSError as exc:
        _unlink_quiet(tmp_path)
        raise _os_error(exc, dest) from None
    except Exception:
        _unlink_quiet(tmp_path)
        if _disk_full(dest.parent):  # torch.save reports a full disk as a RuntimeError
            raise _os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), dest) from None
        raise
    except BaseException:
        _unlink_quiet(tmp_path)
        raise


TEMP_SUFFIX = ".tmp"


def temp_prefix(name: str) -> str:
    """How the temporary file of an atomic write of ``name`` starts (``.name.``)."""
    return f".{name}."


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporary files that atomic writes killed mid-way (SIGKILL, power loss)
    left in ``folder`` (only those of ``name`` when given). Call it only while no other
    process can be writing there (under the folder's or the entry's lock)."""
    folder = Path(folder)
    pattern = f"{temp_prefix(name) if name else '.'}*{TEMP_SUFFIX}"
    removed = []
    for path in folder.glob(pattern) if folder.is_dir() else ():
        if path.is_file():
            _unlink_quiet(path)
            removed.append(path)
    return removed


def write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest: str | os.PathLike, text: str) -> Path:
    return write_bytes(dest, text.encode("utf-8"))


STDOUT = "-"  # ``--json -``: the JSON goes to standard output (the CLI sends its other prints to stderr)
json_stdout: list = []  # the stream ``-`` means, set by the CLI; empty: sys.stdout


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    if str(dest) == STDOUT:
        stream = json_stdout[-1] if json_stdout else sys.stdout
        stream.write(text)
        stream.flush()
        return Path(STDOUT)
    return write_text(dest, text)


def write_with(dest: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Atomically write ``dest`` with ``writer(tmp_path)`` (e.g. ``torch.save``, ``onnx.save``)."""
    with atomic_path(dest) as tmp:
        writer(tmp)
    return Path(dest)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that files can be created in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, folder) from None
    if not folder.is_dir():
        raise InputError(f"output location {str(folder)!r} exists and is not a folder",
                         hint="choose another output path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into folder {str(folder)!r} (permission denied)",
                         hint="choose an output path in a folder you can write to")
    return folder


def check_output_path(out: str | os.PathLike, *inputs: str | os.PathLike | None) -> Path:
    """Refuse, before any long work, an output path that would overwrite an input or that
    cannot be written (a folder that takes no files, a path through a file, /proc)."""
    if str(out) == STDOUT:
        return Path(STDOUT)
    out = Path(out)
    for inp in inputs:
        if inp is None:
            continue
        inp = Path(inp)
        if inp.is_dir() and out.resolve().is_relative_to(inp.resolve()):
            _check_in_folder(out, inp)
        for read, what in _read_by(inp, out):
            if out.resolve() == read.resolve() or (out.exists() and read.exists() and _same_file(out, read)):
                raise InputError(f"output path {str(out)!r} is {what}",
                                 hint="write the result to a new path so that the input is kept")
    if out.exists() and out.is_dir() and out.suffix:
        raise InputError(f"output path {str(out)!r} is a folder", hint="give a file name")
    if not out.is_dir():
        _check_replaceable(out)
    probe_writable(out if out.is_dir() else out.parent, out)
    return out


def _check_in_folder(out: Path, folder: Path) -> None:
    """An output inside an input folder (a dataset's) may be a new file beside its images, but
    must not replace one of its files, nor add a folder beside its class folders (a new class)."""
    if out.exists() and out.resolve() != folder.resolve():
        raise InputError(f"output path {str(out)!r} is a file of the input folder {str(folder)!r}",
                         hint="write the result to a new path so that the input is kept")
    if out.resolve() == folder.resolve() or (out.resolve().parent == folder.resolve() and not out.suffix):
        raise InputError(f"output path {str(out)!r} would add a folder to the input folder {str(folder)!r} "
                         "(a new class of its images)", hint="write the result outside that folder")


def _read_by(inp: Path, out: Path) -> list[tuple[Path, str]]:
    """``inp`` and the files it reads beside it (an ONNX model's external data), each with how
    a refusal names it; the external data are looked up only when ``out`` exists (the only
    case in which writing could destroy one)."""
    files = [(inp, "the input file")]
    if out.exists() and inp.suffix.lower() == ".onnx" and inp.is_file():
        files += [(f, f"the external data of {str(inp)!r}") for f in external_data_files(inp)]
    return files


def external_data_files(model_path: Path) -> list[Path]:
    """The files an ONNX model keeps its external tensors in (read without loading them)."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # not a readable model: the command that reads it says so
        return []
    names = set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in t.external_data if e.key == "location")
    return [model_path.parent / n for n in sorted(names)]


def check_result_and_json(output: str | os.PathLike, json_out: str | os.PathLike | None,
                          *inputs: str | os.PathLike | None) -> None:
    """A command's ``-o`` and ``--json``, both checked before any work, and not one path."""
    check_output_path(output, *inputs)
    if json_out:
        check_distinct_outputs(**{"-o": output, "--json": json_out})
        check_output_path(json_out, *inputs)


def check_distinct_outputs(**outputs: str | os.PathLike | None) -> None:
    """Refuse two outputs of one command on the same path (``-o x.onnx --json x.onnx``): the
    second written would replace the first."""
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None or str(path) == STDOUT:
            continue
        resolved = Path(path).resolve()
        if resolved in seen:
            raise InputError(f"{seen[resolved]} and {option} are both {str(path)!r}: the second written would "
                             "replace the first", hint=f"give {option} another path")
        seen[resolved] = option


def _check_replaceable(dest: Path) -> None:
    """Refuse to put a file in place of a device, a pipe or a socket (``-o /dev/full``)."""
    if dest.exists() and not dest.is_file() and not dest.is_dir():
        raise InputError(f"output path {str(dest)!r} is a device or pipe, not a file",
                         hint="give the path of a regular file")


def probe_writable(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> None:
    """Create and delete a file in ``folder``, or in its nearest existing parent when it
    does not exist yet (it is created only when the result is written), so that an output
    (``out``, for the message) that cannot be written fails before the work, not after it."""
    folder = Path(folder).absolute()
    out = Path(out) if out is not None else folder
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write {str(out)!r}: {str(existing)!r} is a file, not a folder",
                         hint="choose an output path in a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".deploypipe-probe.", suffix=TEMP_SUFFIX, dir=existing)
    except OSError as exc:
        raise _os_error(exc, out) from None
    os.close(fd)
    _unlink_quiet(Path(probe))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _unlink_quiet(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < DISK_FULL_BYTES
    except OSError:
        return False


DISK_FULL_BYTES = 1 << 20  # less free space than this after a failed write: the disk was full


def _os_error(exc: OSError, path: Path) -> InputError:
    if exc.errno == errno.ENOSPC:
        return InputError(f"no space left on the device while writing {str(path)!r}",
                          hint="free some disk space or write to another disk; nothing was overwritten")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"cannot write {str(path)!r} ({exc.strerror.lower()})",
                          hint="choose an output path in a folder you can write to")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):  # /proc, /sys: the folder exists but takes no files
        return InputError(f"cannot write {str(path)!r}: its folder takes no new files "
                          f"({(exc.strerror or str(exc)).lower()})",
                          hint="choose an output path in a folder you can write to")
    return InputError(f"cannot write {str(path)!r} ({exc.strerror or exc})",
                      hint="check the output path")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
