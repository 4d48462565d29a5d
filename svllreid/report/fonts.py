"""Text in PIL pictures in any script the machine has a font for.

PIL's default font has glyphs for ASCII only: "Ölöwe" comes out as "□l□we". :class:`Typeface` draws
with DejaVu Sans, which matplotlib ships (Latin, Greek, Cyrillic, Hebrew, Arabic and more), and takes
each character DejaVu Sans lacks (Chinese, Japanese, ...) from the first installed font that has it,
as matplotlib's font manager lists them. A character no font has is drawn by DejaVu Sans (as a box).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import matplotlib
from matplotlib import font_manager, ft2font
from PIL import ImageDraw, ImageFont

__all__ = ["PRIMARY_FONT", "Typeface", "font_file_for"]

#: The font that draws every character it has.
PRIMARY_FONT = str(Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"))
#: Fonts that only draw placeholders (matplotlib's Last Resort font shows a missing glyph's Unicode block).
_PLACEHOLDER_FONTS = ("LastResort",)


@cache
def _glyphs(path: str) -> ft2font.FT2Font | None:
    try:
        return ft2font.FT2Font(path)
    except Exception:  # a font file matplotlib lists but FreeType cannot open: not a candidate
        return None


def _has(path: str, char: str) -> bool:
    font = _glyphs(path)
    return font is not None and font.get_char_index(ord(char)) != 0


@cache
def _fallbacks() -> tuple[str, ...]:
    """Installed fonts other than the primary one, in a fixed order (regular styles first)."""
    paths = {entry.fname for entry in font_manager.fontManager.ttflist}
    paths = {p for p in paths if Path(p).suffix.lower() in (".ttf", ".otf", ".ttc")}
    paths = {p for p in paths if not any(name in Path(p).name for name in _PLACEHOLDER_FONTS)}
    paths.discard(PRIMARY_FONT)
    return tuple(sorted(paths, key=lambda p: (any(s in Path(p).stem for s in ("Bold", "Oblique", "Italic")), p)))


@cache
def font_file_for(char: str) -> str:
    """The font file that draws ``char``: DejaVu Sans where it has the glyph, else the first installed font
    that has it, else DejaVu Sans (whose missing-glyph box is then drawn)."""
    if char.isspace() or _has(PRIMARY_FONT, char):
        return PRIMARY_FONT
    return next((path for path in _fallbacks() if _has(path, char)), PRIMARY_FONT)


@cache
def _pil_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


class Typeface:
    """One text size, measured and drawn run by run: each run of characters in the font that has them."""

    def __init__(self, size: int):
        self.size = size

    def runs(self, text: str) -> list[tuple[str, ImageFont.FreeTypeFont]]:
        """``text`` cut into runs of characters that one font draws, with that font."""
        runs: list[tuple[str, ImageFont.FreeTypeFont]] = []
        for char in text:
            font = _pil_font(font_file_for(char), self.size)
            if runs and runs[-1][1] is font:
                runs[-1] = (runs[-1][0] + char, font)
            else:
                runs.append((char, font))
        return runs

    def length(self, text: str) -> float:
        """Width of ``text`` in pixels."""
        return sum(font.getlength(run) for run, font in self.runs(text))

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: tuple[int, int, int]) -> None:
        """Draw ``text`` with its top-left corner at ``xy``."""
        x, y = xy
        for run, font in self.runs(text):
            draw.text((x, y), run, fill=fill, font=font)
            x += font.getlength(run)
