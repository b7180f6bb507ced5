"""report.html in a real browser (slow tier): headless Chromium (Debian's ``chromium``,
installed here with apt-get when it is missing and we may) loads the page with no console
message (no CSP violation, no failed resource), the DOM holds every plot, and the
screenshot shows them (the plots' colours cover a good part of it)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from deploypipe.report import write_html_report

pytestmark = pytest.mark.slow

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0"]
PRUNED_BLUE, DENSE_GREY = (9, 105, 218), (154, 167, 180)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("headless Chromium is not installed: run `apt-get install -y chromium` (Debian) as root")
    return found


def browse(chromium: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    """What the page logged to the console (CSP violations, failed loads, script errors)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_page_renders_every_plot_without_errors(chromium, latency_run, tmp_path):
    page = write_html_report(latency_run)
    dom = browse(chromium, page, tmp_path / "p1", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    images = re.findall(r'<img [^>]*src="([^"]{0,40})', dom.stdout)
    assert len(images) == 5 and all(src.startswith("data:image/png;base64,") for src in images)
    for sid in ("summary", "widths", "layers", "latency-table", "rounds", "latency-loop", "details"):
        assert f'<section id="{sid}">' in dom.stdout
    shot = tmp_path / "report.png"
    run = browse(chromium, page, tmp_path / "p2", f"--screenshot={shot}", "--window-size=1100,4200")
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    assert console_messages(run.stderr) == []
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    counts = {rgb: n for n, rgb in colours}
    assert len(counts) > 200  # not blank: text, plots and their antialiasing
    assert counts.get(PRUNED_BLUE, 0) > 5000 and counts.get(DENSE_GREY, 0) > 5000  # the bars are drawn
    if os.environ.get("DEPLOYPIPE_SCREENSHOT_DIR"):  # keep it for a look (CI artifact)
        shutil.copy(shot, Path(os.environ["DEPLOYPIPE_SCREENSHOT_DIR"]) / "report.png")


def test_the_console_check_catches_a_blocked_resource(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
                   "content=\"default-src 'none'; img-src data:\"></head>"
                   '<body><img src="http://127.0.0.1:9/x.png"><p>x</p></body></html>')
    run = browse(chromium, bad, tmp_path / "p", "--dump-dom")
    assert any("violates the following Content Security Policy" in m for m in console_messages(run.stderr))
