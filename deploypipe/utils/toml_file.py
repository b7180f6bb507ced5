"""Reading a user's TOML file (a target profile, a benchmark suite) with one-sentence errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    import tomli as tomllib

from ..errors import InputError


def read_toml(path: Path, what: str, *, missing_hint: str) -> dict[str, Any]:
    """The parsed contents of ``path``, the ``what`` (e.g. "target profile") the user named;
    ``missing_hint`` says what to give instead when the file does not exist."""
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a folder, not a TOML file", hint="give the path of the .toml file")
    if not path.is_file():
        if path.is_symlink():
            raise InputError(f"{what} {str(path)!r} is a symbolic link to nothing (or to itself)",
                             hint="give the path of the .toml file")
        raise InputError(f"{what} {str(path)!r} does not exist", hint=missing_hint)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {str(path)!r} is not valid TOML ({exc})",
                         hint="fix the file's syntax") from None
