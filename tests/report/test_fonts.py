"""Text in any script the machine has a font for: the main font, and another installed font for what it lacks."""

from __future__ import annotations

from PIL import Image, ImageDraw

from svllreid.report.fonts import PRIMARY_FONT, Typeface, font_file_for

#: A private-use code point no font has: drawn as the missing-glyph box.
NO_GLYPH = "\U000f0000"


def test_a_character_the_main_font_lacks_comes_from_another_installed_font() -> None:
    fraktur = "\U0001d504"  # MATHEMATICAL FRAKTUR CAPITAL A: not in DejaVu Sans, in matplotlib's STIX fonts
    assert font_file_for(fraktur) != PRIMARY_FONT
    face = Typeface(14)
    assert [run for run, _ in face.runs(f"ab{fraktur}c")] == ["ab", fraktur, "c"]

    def ink(text: str) -> bytes:
        canvas = Image.new("RGB", (60, 24), (0, 0, 0))
        face.draw(ImageDraw.Draw(canvas), (2, 2), text, (255, 255, 255))
        return canvas.tobytes()

    assert ink(fraktur) != ink(NO_GLYPH) and face.length(f"ab{fraktur}") > face.length("ab")


def test_latin_greek_and_cyrillic_names_use_the_main_font() -> None:
    for name in ("Ölöwe", "Ñandú", "Жираф", "Λέων"):
        assert {font_file_for(char) for char in name} == {PRIMARY_FONT}
