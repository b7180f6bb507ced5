"""report.html: built by every build from a real report.json, self-contained, every section
present (plots where report.json has the data, a note where it does not), hostile strings
escaped, and ``deploypipe report RUN_DIR`` rebuilds it."""
from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

from deploypipe.cli import main
from deploypipe.report import render_html, write_html_report

SECTIONS = ("summary", "quantized", "widths", "layers", "latency-table", "rounds", "latency-loop", "details")
HOSTILE = '<script>alert("x")</script>"><img src=x onerror=alert(1)>$\\frac{$'


class Page(HTMLParser):
    """Tags, attributes, section ids and text of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]

    def section_ids(self) -> list[str]:
        return [a["id"] for a in self.all("section")]

    def section_text(self) -> str:
        return " ".join(self.text)


def page_of(folder: Path) -> Page:
    return Page((folder / "report.html").read_text(encoding="utf-8"))


def test_every_build_writes_the_page(built):
    report = json.loads((built / "report.json").read_text())
    assert "report.html" in report["artifacts"]
    page = page_of(built)
    assert page.section_ids() == list(SECTIONS)
    text = page.section_text()
    assert f"{report['dense']['accuracy'] * 100:.2f}%" in text and f"{report['pruned']['accuracy'] * 100:.2f}%" in text
    assert "latency median (ms)" in text and "latency p90 (ms)" in text and "x fewer" in text
    # widths, per-layer latency and accuracy per round are plotted; no latency budget: notes
    assert len(page.all("img")) == 3
    assert "No latency table" in text and "No latency loop" in text


def test_the_page_is_self_contained(built):
    page = page_of(built)
    for attrs in page.all("img"):
        assert attrs["src"].startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(attrs["src"].split(",", 1)[1]))).verify()  # a real PNG
    assert all(a["href"].startswith("#") for a in page.all("a"))
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    for _, attrs in page.tags:
        assert not any(str(v).startswith(("http:", "https:", "//")) for k, v in attrs.items() if k in ("src", "href"))
    csp = [a for a in page.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]


def test_rounds_carry_accuracy_for_the_plot(built):
    rounds = json.loads((built / "report.json").read_text())["rounds"]
    assert len(rounds) == 2 and all(0 <= r["accuracy"] <= 1 and r["accuracy_images"] > 0 for r in rounds)
    assert rounds[1]["macs"] < rounds[0]["macs"]


def test_latency_sections_are_drawn_when_present(latency_run):
    write_html_report(latency_run)
    page = page_of(latency_run)
    assert len(page.all("img")) == 5
    text = page.section_text()
    assert "No latency table" not in text and "No latency loop" not in text
    assert "over the budget: scale 0.94" in text and "latency budget met in round 2 of 2" in text
    assert "stars: the width kept" in text


def test_latency_table_outside_the_run_dir_is_not_read(latency_run):
    report = json.loads((latency_run / "report.json").read_text())
    report["latency_table"]["path"] = "../../../../etc/passwd"
    html = render_html(report, latency_run)
    assert "is not in the run directory" in html


def test_hostile_strings_are_escaped(latency_run):
    report = json.loads((latency_run / "report.json").read_text())
    report["command"] = report["dataset"] = report["target"]["name"] = HOSTILE
    report["groups"][0].update(frozen=True, reason=HOSTILE)
    report["layers"]["dense"][0]["onnx_node"] = HOSTILE
    report["latency_loop"][0]["note"] = HOSTILE
    report["latency_result"]["sentence"] = HOSTILE
    html = render_html(report, latency_run)
    assert "<script" not in html
    assert html.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 6
    page = Page(html)
    assert not page.all("script") and not any("onerror" in attrs for _, attrs in page.tags)
    assert len(page.all("img")) == 5  # the injected <img> stayed text; every plot (with a $ label) drew
    assert all(a["src"].startswith("data:image/png;base64,") for a in page.all("img"))
    assert "could not be drawn" not in html


def test_absent_or_broken_parts_render_as_notes():
    page = Page(render_html({}))
    assert page.section_ids() == list(SECTIONS) and not page.all("img")
    assert "has no dense and pruned results" in page.section_text()
    broken = Page(render_html({"groups": [{"id": 1}], "rounds": "nonsense", "layers": {"dense": [{"medianMs": "?"}]}}))
    assert broken.section_ids() == list(SECTIONS)
    assert "could not be drawn" in broken.section_text()


def test_report_command_rebuilds_the_page(run_dir, capsys):
    first = (run_dir / "report.html").read_text()
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "report.html" in capsys.readouterr().out
    again = (run_dir / "report.html").read_text()
    assert Page(again).section_ids() == list(SECTIONS)
    assert len(Page(again).all("img")) == len(Page(first).all("img")) == 3
    (run_dir / "report.html").unlink()  # naming the report.json rebuilds the same page (was: not found)
    assert main(["report", str(run_dir / "report.json")]) == 0 and (run_dir / "report.html").is_file()


def test_report_command_on_a_folder_without_report_json(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "report.json" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch, caplog):
    """Without the plots extra the page is still written; each plot says which extra draws it."""
    import builtins
    import logging

    from deploypipe.report import _guarded

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")
        return real_import(name, *args, **kwargs)

    def plot():
        import matplotlib.figure  # noqa: F401
        raise AssertionError("unreachable")

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with caplog.at_level(logging.INFO, logger="deploypipe"):
        section = _guarded("widths", "Widths per group", plot)
    assert "pip install &#x27;deploypipe[plots]&#x27;" in section.body  # escaped HTML
    assert "deploypipe[plots]" in caplog.text
