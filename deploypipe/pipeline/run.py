"""A run directory, its stages, and the manifest that makes runs resumable.

Every stage is named and timed. A stage that produced files records them in
``manifest.json`` with their SHA-256, the small results later stages need, and the stage's
key: a hash of what its result depends on (the input file, the options of this stage and
of every stage before it, the versions). A re-run reuses every finished stage whose key
is unchanged and whose files are intact (change only the fine-tuning epochs and training
and pruning are reused), and a run killed at any point restarts from the last finished
stage. Files are written atomically and the manifest last, so a kill never leaves a stage
marked done with a half-written file; the next run removes the temporary file such a kill
leaves, and the report of an earlier run, until this one finishes. One build at a time
writes into a folder (a second one waits for the first).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import InputError
from ..utils.faults import fault
from ..utils.files import probe_writable, remove_stale_temps, sha256_file, write_json
from ..utils.locks import folder_lock
from ..utils.log import get_logger

log = get_logger("build")

MANIFEST = "manifest.json"
FORMAT = "deploypipe.run/1"
FINAL_FILES = ("report.json", "report.html")  # written last, by a run that finished


@dataclass
class Run:
    out_dir: Path
    keys: dict[str, str] = field(default_factory=dict)  # stage name -> key
    inputs: dict[str, Any] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)
    writer: bool = True  # False on the non-zero ranks of a distributed run

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError(f"run folder {str(self.out_dir)!r} is a file", hint="choose another output path")
        probe_writable(self.out_dir)  # created by the first file a stage writes: a run that fails first writes nothing
        if self.writer:
            self._hold_folder()
        self._done: dict[str, dict] = self._load_manifest()

    def _hold_folder(self) -> None:
        """Lock the folder for this run (a second build into it waits), then clear what a
        killed run left: temporary files of atomic writes, and the final report, which
        only a run that finishes writes again (a folder without one is not a success)."""
        lock = folder_lock(self.out_dir)
        lock.__enter__()
        weakref.finalize(self, lock.__exit__, None, None, None)
        for path in remove_stale_temps(self.out_dir):
            log.info("removed %s, left by a run that was killed while writing it", path.name)
        for name in FINAL_FILES:
            self.path(name).unlink(missing_ok=True)

    def path(self, name: str) -> Path:
        return self.out_dir / name

    # -- the manifest ---------------------------------------------------------------
    def _load_manifest(self) -> dict[str, dict]:
        path = self.path(MANIFEST)
        if not path.exists():
            return {}
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            log.info("%s is unreadable: starting the run afresh", path)
            return {}
        if manifest.get("format") != FORMAT:
            return {}
        return dict(manifest.get("stages") or {})

    def cached(self, name: str) -> dict | None:
        """The results of stage ``name`` from an earlier run, if its files are intact."""
        entry = self._done.get(name)
        if entry is None or name not in self.keys:
            return None
        if entry.get("key") != self.keys[name]:
            log.info("options for stage %s changed since the previous run: running it again", name)
            return None
        for file, digest in entry.get("outputs", {}).items():
            path = self.path(file)
            if not path.is_file() or sha256_file(path) != digest:
                log.info("stage %s of the previous run lost %s: running it again", name, file)
                return None
        log.info("reusing stage %s from the previous run", name)
        self.stages.append({"name": name, "seconds": 0.0, "reused": True})
        return dict(entry.get("data") or {})

    def record(self, name: str, outputs: Sequence[str] = (), data: dict | None = None) -> None:
        """Mark stage ``name`` done with its files (already written) and results."""
        self._done[name] = {"key": self.keys.get(name), "outputs": {f: sha256_file(self.path(f)) for f in outputs},
                            "data": data or {}, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        fault(f"{name}:end")
        if self.writer:
            write_json(self.path(MANIFEST), {"format": FORMAT, "inputs": self.inputs, "stages": self._done})

    @contextlib.contextmanager
    def stage(self, name: str, message: str | None = None) -> Iterator[None]:
        fault(f"{name}:start")
        if message:
            log.info(message)
        start = time.perf_counter()
        yield
        self.stages.append({"name": name, "seconds": round(time.perf_counter() - start, 3)})


def chain_keys(base: dict[str, Any], stages: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """Keys for stages run in order: each hashes its own options and the key before it."""
    keys: dict[str, str] = {}
    previous = _digest(base)
    for name, options in stages:
        previous = keys[name] = _digest({"after": previous, "stage": name, "options": options})
    return keys


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
