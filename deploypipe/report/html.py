"""The HTML of the report page: escaping, small building blocks, and the page itself
(inline CSS, a content-security policy that allows no external resource at all)."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2327;margin:0;background:#f4f5f7}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:32px 0 8px;border-bottom:1px solid #dde1e6;padding-bottom:4px}
.meta{color:#57606a;margin:0 0 16px;word-break:break-all}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde1e6;padding:4px 10px;text-align:right;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td:first-child,th:first-child{text-align:left}
td.text{text-align:left;word-break:break-word;max-width:560px}
.note{color:#57606a;font-style:italic;margin:6px 0}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
figure{margin:10px 0}figure img{max-width:100%;height:auto;border:1px solid #eef0f3}
figcaption{color:#57606a;font-size:12px}
nav a{margin-right:12px;color:#0969da;text-decoration:none}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f0f2f5;padding:1px 4px}
"""

# Nothing may load from outside the page: images are data: URLs, styles are inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: object) -> str:
    """``value`` as HTML text (quotes too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class Section:
    """One part of the page; ``body`` is HTML built only from escaped pieces."""

    id: str
    title: str
    body: str


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def figure(png_b64: str, alt: str, caption: str = "") -> str:
    """An embedded PNG (base64) with its alt text and caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{png_b64}">{cap}</figure>'


def table(header: Sequence[str], rows: Sequence[Sequence[object]], *, text_columns: Sequence[int] = ()) -> str:
    """A table of escaped cells; ``text_columns`` are left-aligned and wrap."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v, i in text_columns) for i, v in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object, text: bool) -> str:
    return f'<td class="text">{esc(value)}</td>' if text else f"<td>{esc(value)}</td>"


def verdict(passed: bool | None, yes: str = "passed", no: str = "failed") -> str:
    if passed is None:
        return '<span class="note">not checked</span>'
    return f'<span class="ok">{esc(yes)}</span>' if passed else f'<span class="bad">{esc(no)}</span>'


def page(title: str, meta: str, sections: Sequence[Section]) -> str:
    """The whole document; ``meta`` is trusted HTML (built with ``esc``)."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><main><h1>{esc(title)}</h1>{meta}<nav>{nav}</nav>{body}</main></body></html>\n")
