"""The human report of a build: ``report.html``, one self-contained page (inline CSS,
plots as base64 PNG, nothing fetched from anywhere) built from ``report.json`` and the
files beside it. ``deploypipe report RUN_DIR`` rebuilds it.

    from deploypipe.report import write_html_report
    write_html_report("runs/demo")          # -> runs/demo/report.html

A build writes both files from its typed report with :func:`write_build_report`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..utils.files import write_json, write_text
from ..utils.log import get_logger
from .html import Section, note, page
from .quantized import quantized_section
from .schema import BuildReport
from .sections import layers_section, loop_section, rounds_section, table_section, widths_section
from .summary import details_section, header, summary_section

__all__ = ["HTML_FILE", "JSON_FILE", "BuildReport", "load_report", "render_html", "try_write_html_report", "write_build_report",
           "write_html_report"]

log = get_logger("report")
HTML_FILE = "report.html"
JSON_FILE = "report.json"


def load_report(run_dir: str | Path) -> dict[str, Any]:
    """``report.json`` of a run directory."""
    path = run_folder(run_dir) / JSON_FILE
    if not path.is_file():
        raise InputError(f"{str(path)!r} does not exist", hint="give the run directory of a `deploypipe build`")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read {str(path)!r} as JSON ({exc})", hint="rerun the build") from None
    damaged = [k for k in ("dense", "pruned", "target") if not isinstance(report.get(k), dict)] \
        if isinstance(report, dict) else ["the whole file"]
    if damaged:  # the page would be all '?' (or fail part-way) and replace a good report.html
        raise InputError(f"{str(path)!r} is not a deploypipe build report ({damaged[0]} is missing or not an "
                         "object)", hint="rerun the build")
    return report


def render_html(report: dict[str, Any], run_dir: str | Path | None = None) -> str:
    """The page for ``report`` (``run_dir`` holds the files it names, e.g. the latency table)."""
    folder = Path(run_dir) if run_dir is not None else None
    builders: list[tuple[str, str, Callable[[], Section]]] = [
        ("summary", "Summary", lambda: summary_section(report)),
        ("quantized", "Quantization", lambda: quantized_section(report)),
        ("widths", "Widths per group", lambda: widths_section(report)),
        ("layers", "Per-layer latency", lambda: layers_section(report)),
        ("latency-table", "Latency table", lambda: table_section(report, folder)),
        ("rounds", "Accuracy and MACs per pruning round", lambda: rounds_section(report)),
        ("latency-loop", "Predicted against measured latency", lambda: loop_section(report)),
        ("details", "Details", lambda: details_section(report)),
    ]
    sections = [_guarded(*b) for b in builders]
    name = (report.get("target") or {}).get("name", "")
    return page(f"deploypipe build report{' · ' + str(name) if name else ''}", _guarded_header(report), sections)


def write_html_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` into ``run_dir`` from its ``report.json`` (atomically)."""
    folder = run_folder(run_dir)
    return write_text(folder / HTML_FILE, render_html(load_report(folder), folder))


def run_folder(run_dir: str | Path) -> Path:
    """The run folder, also when its report.json is what was named."""
    path = Path(run_dir)
    return path.parent if path.name == JSON_FILE and path.is_file() else path


def write_build_report(run_dir: str | Path, report: BuildReport) -> Path | None:
    """The end of a build: ``report.json`` (``report.to_dict()``), then ``report.html`` read
    back from it, as ``deploypipe report`` would (the page's failure is logged, not raised)."""
    write_json(Path(run_dir) / JSON_FILE, report.to_dict())
    return try_write_html_report(run_dir)


def try_write_html_report(run_dir: str | Path) -> Path | None:
    """``write_html_report`` for the end of a build: a failure is logged, not raised (the
    model and report.json are written; ``deploypipe report RUN_DIR`` can try again)."""
    try:
        return write_html_report(run_dir)
    except Exception as exc:  # the page is a view of report.json: never lose a build to it
        log.warning("could not write report.html (%s: %s); rebuild it with `deploypipe report %s`",
                    type(exc).__name__, exc, run_dir)
        return None


def _guarded(sid: str, title: str, build: Callable[[], Section]) -> Section:
    """A section, or a note saying why it could not be drawn (malformed report.json)."""
    try:
        return build()
    except Exception as exc:  # one bad part must not cost the whole page
        if isinstance(exc, ImportError) and "matplotlib" in f"{exc.name} {exc}":  # the plots extra is missing
            log.info("report.html: section %r needs matplotlib (pip install 'deploypipe[plots]')", title)
            return Section(sid, title, note("This plot needs matplotlib: pip install 'deploypipe[plots]', then "
                                            "`deploypipe report RUN_DIR` draws it."))
        log.warning("report.html: section %r not drawn (%s: %s)", title, type(exc).__name__, exc)
        return Section(sid, title, note(f"This section could not be drawn from report.json "
                                        f"({type(exc).__name__}: {exc})."))


def _guarded_header(report: dict[str, Any]) -> str:
    try:
        return header(report)
    except Exception as exc:  # as for sections
        return note(f"No run description ({type(exc).__name__}).")
