"""Locks between deploypipe processes (``filelock``): one per cache entry, one per measured
device and one per run folder.

Two ``lut`` runs on the same model would otherwise measure the same table at once and
overwrite each other's cache file, and any two measurements on one device slow each other
down. With the locks the second run says in one line what it waits for, waits, and then
uses what the first one measured. Lock files live in ``$DEPLOYPIPE_CACHE/locks`` (else
``~/.cache/deploypipe/locks``), so runs of one user on one machine see each other.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .log import get_logger

log = get_logger("locks")

_LOCKS: dict[str, FileLock] = {}  # one object per lock file: re-entrant within this process
_GUARD = threading.Lock()


def locks_dir() -> Path:
    base = os.environ.get("DEPLOYPIPE_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "deploypipe") / "locks"


@contextlib.contextmanager
def held(lock_file: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold ``lock_file``; if another process holds it, log that this run waits for
    ``what`` and wait (Ctrl-C still interrupts)."""
    from .files import ensure_writable_dir

    lock_file = Path(lock_file)
    ensure_writable_dir(lock_file.parent)
    with _GUARD:
        lock = _LOCKS.setdefault(str(lock_file.absolute()), FileLock(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("waiting for %s: another deploypipe run holds it (lock %s)", what, lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def entry_lock(entry: str | os.PathLike, what: str = "a cache entry") -> contextlib.AbstractContextManager:
    """The lock of one cache file (read it, complete it, write it: one run at a time)."""
    return held(locks_dir() / f"entry-{_digest(entry)}.lock", f"{what} {Path(entry).name}")


def folder_lock(folder: str | os.PathLike) -> contextlib.AbstractContextManager:
    """The lock of a run folder: one build writes into it at a time."""
    return held(locks_dir() / f"run-{_digest(folder)}.lock", f"run folder {str(folder)!r}")


def device_lock(device: str) -> contextlib.AbstractContextManager:
    """The lock of a measured device of this machine (``cpu``, ``cuda:0``): one timing at a
    time (keyed by host name, so a home folder shared between machines does not serialise them)."""
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{socket.gethostname()}-{device or 'cpu'}")[:80]
    return held(locks_dir() / f"device-{label}.lock", f"device {device or 'cpu'}")


def _digest(path: str | os.PathLike) -> str:
    return hashlib.sha256(str(Path(path).absolute()).encode()).hexdigest()[:16]
