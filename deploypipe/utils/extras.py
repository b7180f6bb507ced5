"""Optional dependencies, imported where they are needed: a missing one is one sentence that
names the extra which installs it (``pip install 'deploypipe[datasets]'``)."""
from __future__ import annotations

import importlib
from typing import Any

from ..errors import InputError

# module -> (the distribution that provides it, the deploypipe extra that installs it)
PROVIDERS = {
    "sklearn": ("scikit-learn", "datasets"),
    "PIL": ("pillow", "datasets"),
    "matplotlib": ("matplotlib", "plots"),
}


def require(module: str, needed_for: str) -> Any:
    """Import ``module`` (dotted names allowed) or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        dist, extra = PROVIDERS[module.split(".")[0]]
        raise InputError(f"{needed_for} needs {dist}, which is not installed",
                         hint=f"pip install 'deploypipe[{extra}]' (or pip install {dist})") from None
