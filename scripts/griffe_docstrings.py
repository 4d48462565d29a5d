"""A griffe extension for the documentation site (mkdocs.yml): render svllreid's docstrings as Markdown.

The docstrings are Google style with two habits from Sphinx that Markdown does not know:

- roles such as :func:`~svllreid.metrics.ranking.evaluate` or :class:`GalleryIndex`, shown here as code
  (``evaluate()``, ``GalleryIndex``) the way Sphinx would show them;
- doctest examples (``>>>`` lines and their output) outside an ``Examples:`` section, which Markdown would
  read as text (``[True, False]`` even as a link): they become fenced ``pycon`` blocks;
- a paragraph ending in ``::`` before an indented block loses one of its colons (the block is code in
  Markdown already).

Only the rendered text changes; the code's docstrings stay as they are.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

_ROLE = re.compile(r":(?:py:)?(func|meth|class|attr|data|mod|obj|exc|const|ref|term):`([^`]+)`")
_DOCTEST = re.compile(r"^(\s*)>>> ")


def _role(match: re.Match[str]) -> str:
    kind, target = match.group(1), match.group(2).strip()
    explicit = re.fullmatch(r"(.+?)\s*<([^>]+)>", target)
    if explicit:
        shown = explicit.group(1)
    else:
        shown = target.lstrip("~").lstrip(".")
        if target.startswith("~"):
            shown = shown.rsplit(".", 1)[-1]
        if kind in ("func", "meth") and not shown.endswith(")"):
            shown += "()"
    return f"`{shown}`"


def _fence_doctests(lines: list[str]) -> list[str]:
    """Wrap each run of ``>>>`` lines (with their output, up to a blank line) in a ``pycon`` fence."""
    out: list[str] = []
    fenced = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        start = None if fenced else _DOCTEST.match(line)
        if start is None:
            out.append(line)
            i += 1
            continue
        indent = start.group(1)
        previous = out[-1] if out else ""
        # A paragraph just above needs a blank line before the fence; a section header ("Example:",
        # less indented) must not get one, or it is no longer read as the header of this block.
        if previous.strip() and len(previous) - len(previous.lstrip()) >= len(indent):
            out.append("")
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
    return out


def _literal_paragraphs(lines: list[str]) -> list[str]:
    """``text::`` before a blank line and an indented block: ``text:`` (reST's literal-block marker)."""
    out = list(lines)
    for i, line in enumerate(lines[:-2]):
        after = lines[i + 2]
        if line.rstrip().endswith("::") and not lines[i + 1].strip() and after.startswith(" ") and after.strip():
            out[i] = line.rstrip()[:-1]
    return out


def markdown_docstring(text: str) -> str:
    """The docstring ``text`` with the Sphinx habits above made Markdown."""
    lines = _literal_paragraphs(_fence_doctests(text.split("\n")))
    return _ROLE.sub(_role, "\n".join(lines))


class SphinxHabits(Extension):
    """Rewrite every loaded docstring with :func:`markdown_docstring` before it is parsed."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
