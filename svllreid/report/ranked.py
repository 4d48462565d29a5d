"""Ranked-list pictures: a query and its top-k gallery images per row, borders coloured by match."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from svllreid.report._io import atomic_write_bytes
from svllreid.report.fonts import Typeface

__all__ = ["RankedList", "draw_ranked_lists"]

RGB = tuple[int, int, int]

#: Border colours: query, true match, wrong match, unknown (e.g. a user's own unlabelled gallery).
QUERY_COLOUR: RGB = (31, 119, 180)
MATCH_COLOUR: RGB = (34, 160, 64)
MISMATCH_COLOUR: RGB = (214, 39, 40)
UNKNOWN_COLOUR: RGB = (150, 150, 150)
#: Fill of a thumbnail whose image cannot be read.
PLACEHOLDER_COLOUR: RGB = (205, 205, 205)

#: Layout in pixels: border width, outer margin, title column, gap between cells, extra gap after the
#: query, gap between rows, smallest cell width (so captions have room next to narrow thumbnails).
BORDER = 4
MARGIN = 12
TITLE_W = 150
CELL_GAP = 8
QUERY_GAP = 20
ROW_GAP = 16
MIN_CELL_W = 96
#: Font sizes (pixels) and lines of caption under each thumbnail.
TITLE_FONT, LABEL_FONT, CAPTION_FONT = 13, 12, 11
CAPTION_LINES = 2
TEXT_GAP = 4


@dataclass
class RankedList:
    """One row of a ranked-list picture.

    Attributes:
        title: row title, e.g. ``"best query · AP 100.0%"``.
        query_path: the query image.
        query_caption: text under the query, e.g. ``"id 12 · cam 1"``.
        gallery_paths: the top-k gallery images, best first.
        gallery_captions: text under each gallery image.
        matches: per gallery image: True (same identity, green border), False (red) or None (unknown, grey).
        query_text: a description searched for instead of a query image: drawn in the query's box
            (``query_path`` is then not read).
    """

    title: str
    query_path: str
    query_caption: str
    gallery_paths: list[str]
    gallery_captions: list[str]
    matches: list[bool | None]
    query_text: str | None = None


@cache
def _font(size: int) -> Typeface:
    return Typeface(size)


def _line_height(size: int) -> int:
    return round(size * 1.3)


@dataclass(frozen=True)
class _Layout:
    """Pixel positions of the picture's parts for a thumbnail size ``(H, W)``."""

    thumb_h: int
    thumb_w: int

    @property
    def box_w(self) -> int:
        """Width of a thumbnail with its border."""
        return self.thumb_w + 2 * BORDER

    @property
    def box_h(self) -> int:
        """Height of a thumbnail with its border."""
        return self.thumb_h + 2 * BORDER

    @property
    def cell_w(self) -> int:
        return max(self.box_w, MIN_CELL_W)

    @property
    def row_h(self) -> int:
        text_h = TEXT_GAP + _line_height(LABEL_FONT) + CAPTION_LINES * _line_height(CAPTION_FONT)
        return self.box_h + text_h + ROW_GAP

    def cell_x(self, column: int) -> int:
        """Left edge of a cell: column 0 is the query, column k the k-th gallery image."""
        x = MARGIN + TITLE_W
        if column > 0:
            x += self.cell_w + QUERY_GAP + (column - 1) * (self.cell_w + CELL_GAP)
        return x

    def box_origin(self, row: int, column: int) -> tuple[int, int]:
        """Top-left corner of the bordered thumbnail in ``row`` and ``column``."""
        return self.cell_x(column) + (self.cell_w - self.box_w) // 2, MARGIN + row * self.row_h

    def size(self, num_rows: int, max_gallery: int) -> tuple[int, int]:
        """Picture width and height."""
        width = self.cell_x(max_gallery) + self.cell_w + MARGIN
        return width, MARGIN + num_rows * self.row_h - ROW_GAP + MARGIN


def _thumbnail(path: str | Path, height: int, width: int) -> Image.Image:
    """The image scaled to fit ``height × width`` (aspect kept) on white; a grey placeholder if unreadable."""
    canvas = Image.new("RGB", (width, height), "white")
    try:
        with Image.open(path) as source:
            source.draft("RGB", (width, height))  # JPEG: decode at a reduced scale, much faster for big images
            image = ImageOps.contain(source.convert("RGB"), (width, height))
    except Exception:  # any unreadable file (missing, truncated, not an image) must not stop the report
        canvas.paste(PLACEHOLDER_COLOUR, (0, 0, width, height))
        draw = ImageDraw.Draw(canvas)
        text, size = "unreadable", CAPTION_FONT
        while size > 6 and _font(size).length(text) > width - 6:  # fit narrow thumbnails
            size -= 1
        text_w = _font(size).length(text)
        _font(size).draw(draw, ((width - text_w) / 2, (height - size) / 2), text, (70, 70, 70))
        return canvas
    canvas.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return canvas


def _text_tile(text: str, height: int, width: int) -> Image.Image:
    """A description in a ``height × width`` box, word-wrapped in the largest font that fits it whole
    without breaking a word (down to 7 px; then it may break words or end in "…")."""
    canvas = Image.new("RGB", (width, height), (245, 247, 252))
    draw = ImageDraw.Draw(canvas)
    size = CAPTION_FONT + 2
    while True:
        font = _font(size)
        max_lines = max(1, (height - 6) // _line_height(size))
        lines = _wrap(text, font, width - 8, max_lines)
        if size <= 7 or " ".join(lines).split() == text.split():  # all there, no word broken
            break
        size -= 1
    y = (height - len(lines) * _line_height(size)) / 2
    for line in lines:
        font.draw(draw, (4, y), line, (20, 20, 20))
        y += _line_height(size)
    return canvas


def _wrap(text: str, font: Typeface, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; over-long words are broken; overflow ends in "…"."""

    def fits(s: str) -> bool:
        return font.length(s) <= width

    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and fits(candidate):
            lines[-1] = candidate
            continue
        while not fits(word):  # a file name wider than the cell: break it between characters
            cut = 1
            while cut < len(word) - 1 and fits(word[: cut + 1]):
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and not fits(last + "…"):
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + "…"]
    return lines


def _draw_centred(draw: ImageDraw.ImageDraw, centre_x: float, y: float, text: str, font: Typeface, fill: RGB) -> None:
    font.draw(draw, (centre_x - font.length(text) / 2, y), text, fill)


def _draw_cell(
    canvas: Image.Image,
    layout: _Layout,
    row: int,
    column: int,
    path: str,
    label: str,
    caption: str,
    colour: RGB,
    text: str | None = None,
) -> None:
    """A bordered thumbnail (or ``text``, a description) with a label line ("query" or the rank) and
    the caption under it."""
    draw = ImageDraw.Draw(canvas)
    x, y = layout.box_origin(row, column)
    draw.rectangle((x, y, x + layout.box_w - 1, y + layout.box_h - 1), fill=colour)
    h, w = layout.thumb_h, layout.thumb_w
    tile = _text_tile(text, h, w) if text is not None else _thumbnail(path, h, w)
    canvas.paste(tile, (x + BORDER, y + BORDER))
    centre = layout.cell_x(column) + layout.cell_w / 2
    text_y = y + layout.box_h + TEXT_GAP
    _draw_centred(draw, centre, text_y, label, _font(LABEL_FONT), (0, 0, 0))
    text_y += _line_height(LABEL_FONT)
    for line in _wrap(caption, _font(CAPTION_FONT), layout.cell_w - 4, CAPTION_LINES):
        _draw_centred(draw, centre, text_y, line, _font(CAPTION_FONT), (60, 60, 60))
        text_y += _line_height(CAPTION_FONT)


def _validate(lists: Sequence[RankedList], thumb_size: tuple[int, int]) -> None:
    if not lists:
        raise ValueError("draw_ranked_lists: no ranked lists to draw")
    if len(thumb_size) != 2 or any(int(v) < 1 for v in thumb_size):
        raise ValueError(f"draw_ranked_lists: thumb_size must be two positive integers (H, W); got {thumb_size}")
    for item in lists:
        lengths = (len(item.gallery_paths), len(item.gallery_captions), len(item.matches))
        if len(set(lengths)) != 1:
            raise ValueError(
                f"draw_ranked_lists: list {item.title!r} has {lengths[0]} gallery paths, {lengths[1]} captions "
                f"and {lengths[2]} match flags; they must be equal"
            )


#: Thumbnail height, and the narrowest and widest thumbnail, when the box follows the images' shape.
THUMB_H = 128
THUMB_W_RANGE = (48, 256)


def thumbnail_box(paths: Sequence[str | Path], height: int = THUMB_H) -> tuple[int, int]:
    """A thumbnail box ``(height, width)`` of the images' median aspect ratio (read from their headers),
    so that person crops get tall boxes (128×64) and wide animal or vehicle photos wide ones, instead of
    shrinking into a box of another shape; the width is clipped to :data:`THUMB_W_RANGE`. 128×64 when no
    image can be read."""
    ratios = []
    for path in paths:
        try:
            with Image.open(path) as image:  # the header only
                ratios.append(image.width / image.height)
        except Exception:  # an unreadable image is drawn as a placeholder anyway
            continue
    if not ratios:
        return height, height // 2
    ratios.sort()
    width = round(height * ratios[len(ratios) // 2])
    return height, min(max(width, THUMB_W_RANGE[0]), THUMB_W_RANGE[1])


def draw_ranked_lists(lists: Sequence[RankedList], path: str | Path, thumb_size: tuple[int, int] | None = None) -> Path:
    """Draw ranked lists as one PNG, one row per list.

    Each row shows, left to right: the title, the query (blue border, caption under it), then the gallery
    images in rank order with 4-px borders (green: same identity, red: another, grey: unknown), the rank
    number and caption under each. Thumbnails keep their aspect ratio inside ``thumb_size`` on white; an
    unreadable image becomes a grey "unreadable" placeholder. The picture is as wide as the longest row.
    Without ``thumb_size`` the box takes the images' median shape (:func:`thumbnail_box`).

    Args:
        lists: the rows.
        path: where to write the PNG (parent folders created; written atomically).
        thumb_size: thumbnail box ``(height, width)`` in pixels, without the border (default: from the images).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no lists, a bad ``thumb_size``, or a list whose paths, captions and matches differ in length.
    """
    if thumb_size is None:
        _validate(lists, (1, 1))
        thumb_size = thumbnail_box([p for item in lists for p in (item.query_path, *item.gallery_paths) if p])
    _validate(lists, thumb_size)
    layout = _Layout(int(thumb_size[0]), int(thumb_size[1]))
    canvas = Image.new("RGB", layout.size(len(lists), max(len(item.gallery_paths) for item in lists)), "white")
    draw = ImageDraw.Draw(canvas)
    colours = {True: MATCH_COLOUR, False: MISMATCH_COLOUR, None: UNKNOWN_COLOUR}
    title_font = _font(TITLE_FONT)
    for row, item in enumerate(lists):
        top = MARGIN + row * layout.row_h
        if row > 0:  # a hairline between rows
            line_y = top - ROW_GAP // 2
            draw.line((MARGIN, line_y, canvas.width - MARGIN, line_y), fill=(225, 225, 225))
        max_title_lines = max(1, layout.box_h // _line_height(TITLE_FONT))
        title_lines = _wrap(item.title, title_font, TITLE_W - 10, max_title_lines)
        title_y = top + (layout.box_h - len(title_lines) * _line_height(TITLE_FONT)) / 2
        for i, line in enumerate(title_lines):
            title_font.draw(draw, (MARGIN, title_y + i * _line_height(TITLE_FONT)), line, (0, 0, 0))
        _draw_cell(canvas, layout, row, 0, item.query_path, "query", item.query_caption, QUERY_COLOUR, item.query_text)
        for rank, (gallery_path, caption, match) in enumerate(
            zip(item.gallery_paths, item.gallery_captions, item.matches, strict=True), start=1
        ):
            _draw_cell(canvas, layout, row, rank, gallery_path, str(rank), caption, colours[match])
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return atomic_write_bytes(path, buffer.getvalue())
