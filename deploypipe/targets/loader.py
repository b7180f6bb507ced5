"""Finding and loading target profiles: shipped ones by name, a user's own file by path.

Shipped profiles live in the repository's top-level ``profiles/`` folder. The package
reaches them through ``deploypipe/targets/profiles`` (a link to that folder in a checkout or
an editable install, a copy inside a built wheel), so both kinds of install find them.
"""
from __future__ import annotations

import difflib
import importlib.resources
from pathlib import Path

from ..errors import InputError
from ..utils.toml_file import read_toml
from .target_profile import TargetProfile

DEFAULT_TARGET = "cpu"
_SUFFIX = ".toml"


def profiles_dir() -> Path:
    """The folder of shipped profiles (inside the package, else the checkout's ``profiles/``)."""
    packaged = Path(str(importlib.resources.files(__package__) / "profiles"))
    if packaged.is_dir():
        return packaged.resolve()
    return Path(__file__).resolve().parents[2] / "profiles"


def shipped_names() -> list[str]:
    folder = profiles_dir()
    return sorted(p.stem for p in folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []


def load_target(name_or_path: str | Path | TargetProfile) -> TargetProfile:
    """A shipped profile by name (``cpu``, ``gpu-trt-fp16``) or a TOML file by path."""
    if isinstance(name_or_path, TargetProfile):
        return name_or_path
    text = str(name_or_path)
    if _looks_like_path(text):
        return load_profile_file(Path(text))
    path = profiles_dir() / f"{text}{_SUFFIX}"
    if not path.is_file():
        raise InputError(f"unknown target {text!r}", hint=_suggest(text))
    return load_profile_file(path)


def list_targets() -> list[TargetProfile]:
    """Every shipped profile, sorted by name."""
    return [load_profile_file(profiles_dir() / f"{n}{_SUFFIX}") for n in shipped_names()]


def load_profile_file(path: Path) -> TargetProfile:
    """Parse and validate one TOML profile; its name defaults to the file name."""
    data = read_toml(path, "target profile", missing_hint="give a shipped profile name (see "
                     "`deploypipe list targets`) or the path of a TOML file")
    return TargetProfile.from_mapping(data, source=str(path), default_name=path.stem)


def _looks_like_path(text: str) -> bool:
    return text.endswith(_SUFFIX) or "/" in text or "\\" in text


def _suggest(name: str) -> str:
    names = shipped_names()
    close = difflib.get_close_matches(name, names, n=3)
    if close:
        return f"did you mean {', '.join(close)}? (`deploypipe list targets` shows them all)"
    return f"choose one of: {', '.join(names)}, or give the path of a TOML file"
