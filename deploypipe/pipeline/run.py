"""A run directory, its stages, and the manifest that makes runs resumable.

Every stage is named and timed. A stage that produced files records them in
``manifest.json`` with their SHA-256, the small results later stages need, and the stage's
key: a hash of what its result depends on (the input file, the options of this stage and
of every stage before it, the versions). A re-run reuses every finished stage whose key
is unchanged and whose files are intact (change only the fine-tuning epochs and training
and pruning are reused), and a run killed at any point restarts from the last finished
stage. Files are written atomically and the
manifest last, so a kill never leaves a stage marked done with a half-written file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..utils.files import ensure_writable_dir, sha256_file, write_json
from ..utils.log import get_logger

log = get_logger("build")

MANIFEST = "manifest.json"
FORMAT = "deploypipe.run/1"
FAULT_ENV = "DEPLOYPIPE_FAULT"  # for tests only: "kill:<stage>" or "kill:<stage>:end"


@dataclass
class Run:
    out_dir: Path
    keys: dict[str, str] = field(default_factory=dict)  # stage name -> key
    inputs: dict[str, Any] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)
    writer: bool = True  # False on the non-zero ranks of a distributed run

    def __post_init__(self) -> None:
        self.out_dir = ensure_writable_dir(self.out_dir)
        self._done: dict[str, dict] = self._load_manifest()

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
        _fault(name, "end")
        if self.writer:
            write_json(self.path(MANIFEST), {"format": FORMAT, "inputs": self.inputs, "stages": self._done})

    @contextlib.contextmanager
    def stage(self, name: str, message: str | None = None) -> Iterator[None]:
        _fault(name, "start")
        if message:
            log.info(message)
        start = time.perf_counter()
        yield
        self.stages.append({"name": name, "seconds": round(time.perf_counter() - start, 3)})


def _fault(stage: str, when: str) -> None:
    """Tests kill the process at a stage boundary to prove that runs resume."""
    spec = os.environ.get(FAULT_ENV, "")
    if not spec.startswith("kill:"):
        return
    parts = spec.split(":")
    if parts[1] == stage and (parts[2] if len(parts) > 2 else "start") == when:
        os.kill(os.getpid(), signal.SIGKILL)


def chain_keys(base: dict[str, Any], stages: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """Keys for stages run in order: each hashes its own options and the key before it."""
    keys: dict[str, str] = {}
    previous = _digest(base)
    for name, options in stages:
        previous = keys[name] = _digest({"after": previous, "stage": name, "options": options})
    return keys


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
