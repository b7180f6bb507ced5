"""Shipped profiles reach a built wheel (the editable install reads the checkout's files)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_carries_and_loads_the_profiles(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("deploypipe", "profiles"):
        shutil.copytree(ROOT / folder, src / folder, symlinks=True, ignore=ignore)
    out = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(out)], check=True, cwd=tmp_path)
    (wheel,) = out.glob("deploypipe-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    shipped = sorted(p.name for p in (ROOT / "profiles").glob("*.toml"))
    assert {f"deploypipe/targets/profiles/{n}" for n in shipped} <= names
    # -S: no site-packages, so the editable install cannot answer instead of the wheel
    code = ("import deploypipe.targets as t; print(t.profiles_dir()); "
            "print(','.join(p.name for p in t.list_targets()))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    res = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env=env, cwd=tmp_path, check=True)
    folder, names_line = res.stdout.splitlines()
    assert Path(folder) == tmp_path / "site" / "deploypipe" / "targets" / "profiles"
    assert names_line.split(",") == sorted(n.removesuffix(".toml") for n in shipped)
