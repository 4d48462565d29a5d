"""Ranked-list pictures: layout, border colours, placeholders and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops

from svllreid.report import ranked
from svllreid.report.ranked import RankedList, draw_ranked_lists


def _image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (32, 64)) -> str:
    Image.new("RGB", size, colour).save(path)
    return str(path)


def _border_pixel(picture: Image.Image, layout: ranked._Layout, row: int, column: int) -> tuple[int, ...]:
    """A pixel in the middle of the left border stripe of a thumbnail."""
    x, y = layout.box_origin(row, column)
    return picture.getpixel((x + ranked.BORDER // 2, y + layout.box_h // 2))


def _inner_pixel(picture: Image.Image, layout: ranked._Layout, row: int, column: int, dx: int, dy: int) -> tuple:
    """A pixel of a thumbnail's image area, offset from its top-left corner."""
    x, y = layout.box_origin(row, column)
    return picture.getpixel((x + ranked.BORDER + dx, y + ranked.BORDER + dy))


@pytest.fixture
def lists(tmp_path: Path) -> list[RankedList]:
    query = _image(tmp_path / "q.png", (0, 0, 200))
    gallery = [_image(tmp_path / f"g{i}.jpg", (200, 200, 0)) for i in range(3)]
    return [
        RankedList("best query · AP 100.0%", query, "id 12 · cam 1", gallery, ["a", "b", "c"], [True, False, None]),
        RankedList("mine", query, "query.jpg", gallery[:1], ["0012_c2s1_000151_00.jpg"], [None]),
    ]


def test_border_colours_follow_matches(tmp_path: Path, lists: list[RankedList]) -> None:
    out = draw_ranked_lists(lists, tmp_path / "out" / "ranked.png")
    layout = ranked._Layout(128, 64)
    with Image.open(out) as picture:
        picture = picture.convert("RGB")
    assert picture.size == layout.size(num_rows=2, max_gallery=3)
    assert _border_pixel(picture, layout, 0, 0) == ranked.QUERY_COLOUR
    assert _border_pixel(picture, layout, 0, 1) == ranked.MATCH_COLOUR
    assert _border_pixel(picture, layout, 0, 2) == ranked.MISMATCH_COLOUR
    assert _border_pixel(picture, layout, 0, 3) == ranked.UNKNOWN_COLOUR
    assert _border_pixel(picture, layout, 1, 0) == ranked.QUERY_COLOUR
    assert _border_pixel(picture, layout, 1, 1) == ranked.UNKNOWN_COLOUR
    # the second row is shorter: nothing is drawn where its second gallery image would be
    assert _border_pixel(picture, layout, 1, 2) == (255, 255, 255)
    assert not any(p.name.endswith(".tmp") for p in out.parent.iterdir())


def test_thumbnails_keep_aspect_ratio_on_white(tmp_path: Path) -> None:
    wide = _image(tmp_path / "wide.png", (0, 150, 0), size=(100, 20))  # 5:1 inside a 64x128 (W x H) box
    item = RankedList("t", wide, "q", [wide], ["g"], [True])
    out = draw_ranked_lists([item], tmp_path / "r.png", thumb_size=(128, 64))
    layout = ranked._Layout(128, 64)
    with Image.open(out) as picture:
        picture = picture.convert("RGB")
    assert _inner_pixel(picture, layout, 0, 1, 32, 64) == (0, 150, 0)  # the centre shows the image
    assert _inner_pixel(picture, layout, 0, 1, 32, 5) == (255, 255, 255)  # above it: white padding


def test_unreadable_images_become_placeholders(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    item = RankedList("t", str(tmp_path / "missing.png"), "q", [str(broken)], ["g"], [False])
    out = draw_ranked_lists([item], tmp_path / "r.png")
    layout = ranked._Layout(128, 64)
    with Image.open(out) as picture:
        picture = picture.convert("RGB")
    for column in (0, 1):
        assert _inner_pixel(picture, layout, 0, column, 2, 2) == ranked.PLACEHOLDER_COLOUR
        # the word "unreadable" is written across the middle: some pixels there are darker than the fill
        middle = [_inner_pixel(picture, layout, 0, column, dx, 64) for dx in range(64)]
        assert any(sum(p) < sum(ranked.PLACEHOLDER_COLOUR) - 150 for p in middle)
    assert _border_pixel(picture, layout, 0, 1) == ranked.MISMATCH_COLOUR


def test_wrap_breaks_long_words_and_ellipsises() -> None:
    font = ranked._font(ranked.CAPTION_FONT)
    lines = ranked._wrap("0012_c2s1_000151_00_and_a_very_long_file_name.jpg", font, 90, max_lines=2)
    assert len(lines) == 2 and lines[1].endswith("…")
    assert ranked._wrap("id 12 · cam 1", font, 90, max_lines=2) == ["id 12 · cam 1"]
    assert ranked._wrap("", font, 90, max_lines=2) == []


def test_validation(tmp_path: Path, lists: list[RankedList]) -> None:
    with pytest.raises(ValueError, match="no ranked lists"):
        draw_ranked_lists([], tmp_path / "r.png")
    bad = RankedList("bad row", lists[0].query_path, "q", lists[0].gallery_paths, ["a", "b"], [True, True, True])
    with pytest.raises(ValueError, match="'bad row' has 3 gallery paths, 2 captions and 3 match flags"):
        draw_ranked_lists([lists[0], bad], tmp_path / "r.png")
    with pytest.raises(ValueError, match="thumb_size"):
        draw_ranked_lists(lists, tmp_path / "r.png", thumb_size=(0, 64))
    assert not (tmp_path / "r.png").exists()


def test_the_thumbnail_box_follows_the_images_shape(tmp_path: Path) -> None:
    """Wide animal photos get wide tiles, person crops the tall 128×64 ones (the aspect kept either way)."""
    wide = [_image(tmp_path / f"w{i}.jpg", (90, 120, 60), size=(1525, 1247)) for i in range(4)]
    tall = [_image(tmp_path / f"t{i}.jpg", (90, 120, 60), size=(64, 128)) for i in range(4)]
    assert ranked.thumbnail_box(wide) == (128, round(128 * 1525 / 1247))
    assert ranked.thumbnail_box(tall) == (128, 64)
    assert ranked.thumbnail_box([_image(tmp_path / "pano.jpg", (1, 2, 3), size=(4000, 500))]) == (128, 256)
    assert ranked.thumbnail_box([str(tmp_path / "missing.jpg")]) == (128, 64)
    item = RankedList("wide", wide[0], "q", wide[1:], ["a", "b", "c"], [None] * 3)
    out = draw_ranked_lists([item], tmp_path / "wide.png")
    layout = ranked._Layout(*ranked.thumbnail_box(wide))
    picture = Image.open(out).convert("RGB")
    assert picture.size == layout.size(1, 3)
    # The photo fills its tile: no white band above or below it (it would have one in a tall tile).
    assert _inner_pixel(picture, layout, 0, 1, layout.thumb_w // 2, 2) == (90, 120, 60)
    assert _inner_pixel(picture, layout, 0, 1, layout.thumb_w // 2, layout.thumb_h - 3) == (90, 120, 60)


#: A private-use code point no font has: drawn as the missing-glyph box.
NO_GLYPH = "\U000f0000"


def _picture(tmp_path: Path, name: str, caption: str) -> Image.Image:
    photo = tmp_path / "lion.png"
    Image.new("RGB", (64, 48), (180, 140, 90)).save(photo)
    out = draw_ranked_lists(
        [RankedList(caption, str(photo), caption, [str(photo)], [caption], [True])], tmp_path / name
    )
    return Image.open(out).convert("RGB")


def test_a_non_ascii_name_is_drawn_in_letters_not_boxes(tmp_path: Path) -> None:
    # Before: PIL's default font had no glyph for Ö, so "Ölöwe" and "□l□we" gave the same picture.
    lettered = _picture(tmp_path, "letters.png", "Ölöwe")
    boxed = _picture(tmp_path, "boxes.png", f"{NO_GLYPH}l{NO_GLYPH}we")
    assert ImageChops.difference(lettered, boxed).getbbox() is not None
