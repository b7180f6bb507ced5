"""Where deploypipe keeps what it can rebuild: engines, timing caches, converted datasets."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$DEPLOYPIPE_CACHE``, else ``$XDG_CACHE_HOME/deploypipe``, else ``~/.cache/deploypipe``."""
    if os.environ.get("DEPLOYPIPE_CACHE"):
        return Path(os.environ["DEPLOYPIPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deploypipe"
