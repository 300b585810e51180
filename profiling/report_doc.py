"""The report's document: HTML and Markdown built side by side, with the HTML's style."""

from __future__ import annotations

import html
import math
from typing import Any

from easrec.profiling.plots import data_uri

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1050px;margin:24px auto;padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #4C72B0;padding-bottom:4px}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0 14px;font-size:.92em}th,td{border:1px solid #ccc;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f1f3f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.missing{background:#fff7e0;border-left:4px solid #e0a800;padding:6px 10px;margin:8px 0}
.note{color:#555;font-size:.9em}.est{color:#a05a00;font-weight:600}.meas{color:#2a7a2a;font-weight:600}
img{max-width:100%;height:auto;border:1px solid #eee}pre{background:#f6f8fa;padding:8px 10px;overflow-x:auto;font-size:.88em}
"""


def esc(x: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(x), quote=True)


def fmt(v: Any, digits: int = 4) -> str:
    """A value as a table cell: – for missing, yes/no, 4 significant digits, thousands separators."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def is_num(v: Any) -> bool:
    """Whether `v` is a number (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Document:
    """Builds the HTML and the Markdown side by side."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []

    def h(self, level: int, text: str) -> None:
        """A heading of `level`."""
        self.html.append(f"<h{level}>{esc(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def p(self, text: str, cls: str | None = None) -> None:
        """A paragraph (an optional CSS class)."""
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{esc(text)}</p>")
        self.md.append(f"{text}\n")

    def missing(self, text: str) -> None:
        """A "not available" box."""
        self.html.append(f'<div class="missing">{esc(text)}</div>')
        self.md.append(f"> **Not available:** {text}\n")

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        """A table with a header row."""
        th = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = []
        for r in rows:
            cells = "".join(
                f'<td class="num">{esc(fmt(c))}</td>' if is_num(c) else f"<td>{esc(fmt(c))}</td>" for c in r)
            body.append(f"<tr>{cells}</tr>")
        self.html.append(f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        md_cell = lambda c: fmt(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        self.md.append("| " + " | ".join(md_cell(h) for h in header) + " |")
        self.md.append("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            self.md.append("| " + " | ".join(md_cell(c) for c in r) + " |")
        self.md.append("")

    def image(self, png: bytes | None, alt: str, missing: str) -> None:
        """A PNG figure, or a "not available" box when there is none."""
        if png is None:
            self.missing(missing)
            return
        self.html.append(f'<figure><img src="{data_uri(png)}" alt="{esc(alt)}"><figcaption class="note">{esc(alt)}</figcaption></figure>')
        self.md.append(f"*Figure: {alt} (embedded in report.html).*\n")

    def pre(self, text: str) -> None:
        """Preformatted text."""
        self.html.append(f"<pre>{esc(text)}</pre>")
        self.md.append("```\n" + text + "\n```\n")
