"""A run directory and its stages: each stage is named and timed; artifacts are written
atomically into the directory."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..utils.files import ensure_writable_dir
from ..utils.log import get_logger

log = get_logger("build")


@dataclass
class Run:
    out_dir: Path
    stages: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out_dir = ensure_writable_dir(self.out_dir)

    def path(self, name: str) -> Path:
        return self.out_dir / name

    @contextlib.contextmanager
    def stage(self, name: str, message: str | None = None) -> Iterator[None]:
        if message:
            log.info(message)
        start = time.perf_counter()
        yield
        self.stages.append({"name": name, "seconds": round(time.perf_counter() - start, 3)})
