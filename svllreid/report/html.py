"""A self-contained HTML report: one file with inline CSS and embedded figures, no scripts, no network."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from svllreid.report._io import atomic_write_bytes
from svllreid.version import __version__

__all__ = ["Section", "write_report"]

_MISSING = "–"

#: Image types recognised by their first bytes (the file suffix may lie), with their MIME type.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f4f5f7; color: #1d1f23;
  font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 40px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 12px; }
h2 { font-size: 20px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #dde1e6; }
nav ol { margin: 0 0 8px; padding-left: 22px; }
a { color: #1f5fa8; }
p { margin: 8px 0; }
.scroll { overflow-x: auto; margin: 10px 0; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #c9ced6; padding: 5px 10px; text-align: left; vertical-align: top; }
thead th { background: #e8eef6; }
tbody tr:nth-child(even) td { background: #f7f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { background: #f2f4f7; font-weight: 600; white-space: nowrap; }
table.facts td { word-break: break-all; }
figure { margin: 14px 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #e3e6ea; }
figcaption { font-size: 13px; color: #5a6069; }
.missing { color: #a1260d; background: #fdf0ed; border: 1px solid #f2c4b8; padding: 6px 10px; }
footer { margin-top: 36px; font-size: 13px; color: #6b7280; }
"""


@dataclass
class Section:
    """One section of a report, drawn in this order: facts, text, table, images.

    Attributes:
        heading: section heading.
        text: plain text; blank lines separate paragraphs.
        table: rows as mappings; the columns are the union of their keys, in first-seen order.
        images: figure files to embed (PNG, JPEG or GIF).
        facts: label → value pairs shown as a two-column table (e.g. dataset, checkpoint, device).
    """

    heading: str
    text: str = ""
    table: Sequence[Mapping[str, object]] | None = None
    images: Sequence[Path | str] = ()
    facts: Mapping[str, str] | None = None


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: object) -> tuple[str, bool]:
    """A table value as text (floats to 4 significant digits) and whether it is a number."""
    if value is None:
        return _MISSING, False
    if isinstance(value, float):
        return f"{value:.4g}", True
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), True
    return str(value), False


def _facts_html(facts: Mapping[str, str]) -> str:
    rows = "".join(f"<tr><th>{_esc(key)}</th><td>{_esc(value)}</td></tr>" for key, value in facts.items())
    return f'<div class="scroll"><table class="facts"><tbody>{rows}</tbody></table></div>'


def _text_html(text: str) -> str:
    paragraphs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join("<p>" + "<br>".join(_esc(line) for line in p.split("\n")) + "</p>" for p in paragraphs)


def _table_html(rows: Sequence[Mapping[str, object]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{_esc(column)}</th>" for column in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text, numeric = _cell(row.get(column))
            cells.append(f'<td class="num">{_esc(text)}</td>' if numeric else f"<td>{_esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _image_html(path: Path | str) -> str:
    """The figure as a data URI, or a visible note when the file is missing or not an image."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        return f'<p class="missing">figure missing: {_esc(path.name)}</p>'
    mime = next((mime for magic, mime in _SIGNATURES if data.startswith(magic)), None)
    if mime is None:
        return f'<p class="missing">figure not a PNG, JPEG or GIF image: {_esc(path.name)}</p>'
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return f'<figure><img src="{uri}" alt="{_esc(path.stem)}"></figure>'


def _section_html(index: int, section: Section) -> str:
    parts = [f'<section id="section-{index}"><h2>{_esc(section.heading)}</h2>']
    if section.facts:
        parts.append(_facts_html(section.facts))
    if section.text:
        parts.append(_text_html(section.text))
    if section.table:
        parts.append(_table_html(section.table))
    parts.extend(_image_html(image) for image in section.images)
    parts.append("</section>")
    return "\n".join(parts)


def write_report(path: str | Path, title: str, sections: Sequence[Section]) -> Path:
    """Write a self-contained HTML5 report.

    Everything is in the one file: inline CSS, figures embedded as base64 data URIs, no JavaScript and
    no external links, so it can be mailed or archived as is. Every string is HTML-escaped. A figure
    file that is missing gives a visible "figure missing: <name>" note instead of an error. With three
    sections or more, a table of contents links to them.

    Args:
        path: where to write the file (parent folders created; written atomically, UTF-8).
        title: page title and top heading.
        sections: the sections, in order.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    created = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    nav = ""
    if len(sections) >= 3:
        links = "".join(
            f'<li><a href="#section-{i}">{_esc(s.heading)}</a></li>' for i, s in enumerate(sections, start=1)
        )
        nav = f"<nav><ol>{links}</ol></nav>"
    body = "\n".join(_section_html(i, s) for i, s in enumerate(sections, start=1))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="svllreid {_esc(__version__)}">
<title>{_esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>{_esc(title)}</h1>
{nav}
{body}
<footer>written by svllreid {_esc(__version__)} on {_esc(created)}</footer>
</main>
</body>
</html>
"""
    # UTF-8 bytes, not the locale's encoding: the page declares charset=utf-8.
    return atomic_write_bytes(path, page.encode("utf-8"))
