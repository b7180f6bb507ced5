"""Baselines: saved runs, stored per target profile and per machine fingerprint, as
``ROOT/<profile>/<fingerprint key>/<name>.json``. A baseline is only compared with a run on
the same target settings and the same hardware and runtime versions; comparing across
hardware is refused unless asked for, and then it warns."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from ..measure.fingerprint import _KEY_FIELDS, Fingerprint
from ..utils.files import write_json
from ..utils.locks import entry_lock
from ..utils.log import get_logger
from .results import BenchRun

log = get_logger("bench")

DEFAULT_ROOT = Path("benchmarks/baselines")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Target settings that change what a latency means; the rest (batch, iterations) is per case.
TIMING_FIELDS = ("backend", "providers", "device", "precision", "threads", "inter_op_threads",
                 "optimization")


class BaselineStore:
    """The folder of baselines (``benchmarks/baselines`` unless the user gives another)."""

    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)

    def path(self, target: str, key: str, name: str) -> Path:
        return self.root / target / key / f"{check_name(name)}.json"

    def save(self, run: BenchRun, name: str) -> Path:
        """Write ``run`` as baseline ``name`` for its target and machine (atomically, one
        process at a time)."""
        path = self.path(run.target_name, run.fingerprint.key(), name)
        with entry_lock(path, "the baseline"):
            return write_json(path, run.to_dict())

    def find(self, spec: str, target: str, fingerprint: Fingerprint, *,
             allow_other_hardware: bool = False) -> Path:
        """The file of baseline ``spec`` (a name, or a path to a JSON file) for ``target``
        on this machine; a name found only for other machines is refused unless allowed."""
        if _looks_like_path(spec):
            path = Path(spec)
            if not path.is_file():
                raise InputError(f"baseline file {spec!r} does not exist", hint="check the path")
            return path
        here = self.path(target, fingerprint.key(), spec)
        if here.is_file():
            return here
        return self._elsewhere(spec, target, fingerprint, allow_other_hardware)

    def _elsewhere(self, name: str, target: str, fingerprint: Fingerprint,
                   allow: bool) -> Path:
        others = sorted(self.root.glob(f"{target}/*/{check_name(name)}.json"))
        if not others:
            raise InputError(f"there is no baseline {name!r} for target {target!r} in "
                             f"{str(self.root)!r}",
                             hint=f"take one with `deploypipe bench SUITE --target {target} "
                             f"--save {name}`")
        if not allow:
            keys = ", ".join(p.parent.name for p in others)
            raise InputError(f"baseline {name!r} for target {target!r} was taken on other "
                             f"hardware (fingerprint {keys}), not on this machine "
                             f"({fingerprint.key()})",
                             hint=f"take one here with --save {name}, or pass "
                             "--allow-other-hardware to compare anyway")
        return max(others, key=lambda p: p.stat().st_mtime)


def load_run(path: str | Path) -> BenchRun:
    """Read a saved run (a baseline or a --json output's ``run``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read baseline {str(path)!r} ({exc})",
                         hint="give a file written by `deploypipe bench --save`") from None
    if isinstance(data, Mapping) and "run" in data and "format" not in data:
        data = data["run"]  # a --json output holds the run under "run"
    return BenchRun.from_dict(data, str(path))


def check_comparable(baseline: BenchRun, current: BenchRun, *,
                     allow_other_hardware: bool = False) -> str | None:
    """Refuse a baseline of another target or, unless allowed, of other hardware; return
    the warning to show when other hardware is allowed."""
    check_same_target(baseline.target, current.target)
    return check_same_hardware(baseline.fingerprint, current.fingerprint,
                               allow=allow_other_hardware)


def check_same_target(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    if baseline.get("name") != current.get("name"):
        raise InputError(f"the baseline was taken on target {baseline.get('name')!r}, not "
                         f"{current.get('name')!r}",
                         hint="compare runs of the same target profile")
    for field in TIMING_FIELDS:
        if baseline.get(field) != current.get(field):
            raise InputError(f"target {current.get('name')!r} had {field} = "
                             f"{baseline.get(field)!r} when the baseline was taken and has "
                             f"{current.get(field)!r} now",
                             hint="take a new baseline with --save")


def check_same_hardware(baseline: Fingerprint, current: Fingerprint, *,
                        allow: bool) -> str | None:
    """``None`` on the same hardware; else a refusal, or with ``allow`` the warning."""
    if baseline.key() == current.key():
        return None
    diff = "; ".join(f"{f} {getattr(baseline, f)!r} then, {getattr(current, f)!r} now"
                     for f in _KEY_FIELDS if getattr(baseline, f) != getattr(current, f))
    if not allow:
        raise InputError(f"the baseline was taken on other hardware or runtime versions "
                         f"(fingerprint {baseline.key()}, this machine {current.key()}: {diff})",
                         hint="take a baseline on this machine with --save, or pass "
                         "--allow-other-hardware to compare anyway")
    return (f"comparing with a baseline from other hardware ({diff}); latency differences "
            "may come from the machine, not the models")


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InputError(f"baseline name {name!r} is not a simple name",
                         hint="use letters, digits, '.', '_' and '-', such as 'main'")
    return name


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".json") or "/" in spec or "\\" in spec
