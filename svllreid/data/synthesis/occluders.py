"""Natural occluders (another person, a car, a pole, a bag, a bush) drawn in front of a person so that they
cover a chosen fraction of that person, for occluded re-identification queries in the Occluded-Duke manner.

:func:`occlude` takes the person's mask (drawn people) or box (photos: the whole crop) and a range of
coverage, and returns an RGBA layer to paste over the image with what it covers. Each kind of occluder
has its shape drawn once from the random generator and one size parameter in [0, 1] that grows it; a
bisection on that parameter finds the size whose coverage hits a target drawn from the range, and the
coverage is then measured on the layer itself, so what is reported is what the image shows. Only numpy
and Pillow; deterministic for a generator state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from svllreid.data.synthesis.attributes import BAG_COLORS, Color, pick, sample_identity
from svllreid.data.synthesis.painter import Painter, clip8, draw_person, sample_pose, shaded

__all__ = [
    "MIN_RANGE",
    "OCCLUDER_KINDS",
    "OCCLUDER_VERSION",
    "Box",
    "Occlusion",
    "coverage",
    "gallery_share",
    "mask_box",
    "occlude",
    "occlusion_range",
]

#: Bump when the occluders drawn for the same seed change: occluded synthetic sets are then drawn again
#: (holistic ones, which never call this module, stay valid).
OCCLUDER_VERSION = 2
#: The kinds of occluder, in the order a generator picks among them.
OCCLUDER_KINDS: tuple[str, ...] = ("person", "car", "pole", "bag", "bush")
_CAR_COLORS: tuple[Color, ...] = ((180, 30, 36), (230, 230, 226), (30, 32, 36), (70, 96, 140), (150, 152, 156))
_POLE_COLORS: tuple[Color, ...] = ((90, 92, 96), (50, 70, 60), (150, 150, 150), (170, 140, 40))
_BUSH_COLORS: tuple[Color, ...] = ((46, 92, 44), (62, 110, 52), (38, 74, 40), (84, 120, 60))
#: The narrowest range of coverage accepted.
MIN_RANGE = 0.05
#: Bisection steps on an occluder's size; 2**-16 of its range is far below a pixel of coverage.
_STEPS = 16
#: Draws of a new shape (each of a random kind) before giving up on hitting the range.
_TRIES = 12

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 of the person, in pixels of the layer


@dataclass(frozen=True)
class Occlusion:
    """One occluder placed in front of a person."""

    kind: str
    #: Fraction of the person's mask (or box) the occluder covers, measured on the drawn layer.
    coverage: float
    #: For a ``person`` cut from a photo: the index of that photo in ``occlude``'s ``photos``.
    photo: int | None = None


def _jitter(rng: np.random.Generator, c: Color, amount: float) -> Color:
    r, g, b = (float(v) + float(rng.normal(0.0, amount)) for v in c)
    return (clip8(r), clip8(g), clip8(b))


# Each shape: ``params(rng, box, photos) -> dict`` drawn once, then ``draw(layer, params, box, amount)``.


def _pole_params(rng: np.random.Generator, box: Box, photos: Sequence[Image.Image]) -> dict[str, Any]:
    return {"offset": float(rng.uniform(-0.3, 0.3)), "color": _jitter(rng, pick(rng, _POLE_COLORS), 8)}


def _pole(layer: Image.Image, p: dict[str, Any], box: Box, amount: float) -> None:
    x0, _, x1, _ = box
    width = (x1 - x0) * 1.6 * amount
    centre = (x0 + x1) / 2 + p["offset"] * (x1 - x0)
    draw = ImageDraw.Draw(layer)
    draw.rectangle((centre - width / 2, 0, centre + width / 2, layer.height), fill=p["color"])
    draw.rectangle((centre - width * 0.3, 0, centre - width * 0.15, layer.height), fill=shaded(p["color"], 1.25))


def _car_params(rng: np.random.Generator, box: Box, photos: Sequence[Image.Image]) -> dict[str, Any]:
    return {
        "side": pick(rng, (-1, 1)),
        "length": float(rng.uniform(1.6, 2.6)),
        "color": _jitter(rng, pick(rng, _CAR_COLORS), 10),
    }


def _car(layer: Image.Image, p: dict[str, Any], box: Box, amount: float) -> None:
    """A parked car's body across the legs and up the body; the size is how high its roof reaches."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    top = y1 - amount * bh * 1.02
    height = y1 - top
    # The car runs off the crop on one side and ends past the person's far edge on the other.
    if p["side"] < 0:
        left, right = x0 - bw * p["length"], x1 + bw * 0.25
    else:
        left, right = x0 - bw * 0.25, x1 + bw * p["length"]
    draw = ImageDraw.Draw(layer)
    draw.rounded_rectangle((left, top, right, layer.height + 4), radius=max(1.0, height * 0.18), fill=p["color"])
    if height > 6:  # windows along the roof line, a lighter crease below them, wheels at the ground
        draw.rectangle((left + bw * 0.2, top + height * 0.1, right - bw * 0.2, top + height * 0.3), fill=(60, 74, 90))
        draw.rectangle((left, top + height * 0.5, right, top + height * 0.54), fill=shaded(p["color"], 1.2))
        for wx in (left + bw * 0.4, right - bw * 0.4):
            r = min(height * 0.22, bw * 0.3)
            draw.ellipse((wx - r, layer.height - r * 1.2, wx + r, layer.height + r * 0.8), fill=(24, 24, 26))


def _bag_params(rng: np.random.Generator, box: Box, photos: Sequence[Image.Image]) -> dict[str, Any]:
    return {
        "dx": float(rng.uniform(-0.25, 0.25)),
        "dy": float(rng.uniform(0.45, 0.7)),
        "aspect": float(rng.uniform(0.7, 1.3)),
        "color": _jitter(rng, pick(rng, BAG_COLORS), 8),
    }


def _bag(layer: Image.Image, p: dict[str, Any], box: Box, amount: float) -> None:
    """A big bag or suitcase carried in front of the body, centred on it."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + p["dx"] * bw, y0 + p["dy"] * bh
    half_w = amount * bw * 0.75 * p["aspect"]
    half_h = amount * bh * 0.6 / p["aspect"]
    draw = ImageDraw.Draw(layer)
    draw.rounded_rectangle(
        (cx - half_w, cy - half_h, cx + half_w, cy + half_h), radius=max(0.5, half_w * 0.2), fill=p["color"]
    )
    if half_h > 4:
        draw.rectangle((cx - half_w, cy - half_h * 0.2, cx + half_w, cy - half_h * 0.1), fill=shaded(p["color"], 0.7))


def _bush_params(rng: np.random.Generator, box: Box, photos: Sequence[Image.Image]) -> dict[str, Any]:
    blobs = [
        (float(rng.uniform(-0.9, 0.9)), float(rng.uniform(0.0, 0.5)), float(rng.uniform(0.45, 0.8)))
        for _ in range(int(rng.integers(4, 8)))
    ]
    return {
        "dx": float(rng.uniform(-0.4, 0.4)),
        "blobs": blobs,
        "colors": [_jitter(rng, pick(rng, _BUSH_COLORS), 10) for _ in blobs],
    }


def _bush(layer: Image.Image, p: dict[str, Any], box: Box, amount: float) -> None:
    """A hedge or bush growing from the ground: overlapping round clumps that all scale with the size."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2 + p["dx"] * bw
    scale = amount * bh * 1.1
    draw = ImageDraw.Draw(layer)
    for (dx, dy, r), color in zip(p["blobs"], p["colors"], strict=True):
        x, y, radius = cx + dx * scale, y1 - dy * scale, r * scale
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)


def _person_params(rng: np.random.Generator, box: Box, photos: Sequence[Image.Image]) -> dict[str, Any]:
    side = pick(rng, (-1, 1))
    if photos:  # a strip of another identity's photo, standing in front
        index = int(rng.integers(len(photos)))
        return {"side": side, "photo": photos[index], "index": index, "width": float(rng.uniform(0.45, 0.7))}
    return {
        "side": side,
        "ident": sample_identity(rng),
        "pose": sample_pose(rng, int(rng.integers(4))),
        "scale": float(rng.uniform(0.95, 1.1)),
    }


def _person(layer: Image.Image, p: dict[str, Any], box: Box, amount: float) -> None:
    """Another pedestrian stepping in from one side; the size is how far in."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if "photo" in p:
        photo: Image.Image = p["photo"]
        height = layer.height
        strip_w = max(1, round(bw * p["width"] * 1.6))
        scaled = photo.convert("RGB").resize((max(1, round(photo.width * height / photo.height)), height))
        left_src = max(0, (scaled.width - strip_w) // 2)
        strip = scaled.crop((left_src, 0, left_src + strip_w, height)).convert("RGBA")
        # From just outside the box to its far side as the size grows.
        travel = bw + strip_w
        x = x0 - strip_w + amount * travel if p["side"] < 0 else x1 - amount * travel
        _paste_at(layer, strip, round(x))
        return
    unit = bh * p["scale"]
    half = bw * 0.6
    # The other person's centre slides from well outside the box to the person's own centre.
    start = x0 - half * 1.6 if p["side"] < 0 else x1 + half * 1.6
    centre = (x0 + x1) / 2
    cx = start + amount * (centre - start)
    draw_person(Painter(ImageDraw.Draw(layer), cx, y1 - unit, unit), p["ident"], p["pose"])


def _paste_at(layer: Image.Image, strip: Image.Image, x: int) -> None:
    """Composites ``strip`` at column ``x`` of ``layer``, keeping only the part inside it (``alpha_composite``
    refuses offsets outside the image)."""
    left, right = max(0, x), min(layer.width, x + strip.width)
    if right > left:
        layer.alpha_composite(strip.crop((left - x, 0, right - x, min(strip.height, layer.height))), (left, 0))


def occlusion_range(value: Any, name: str = "occluded_queries") -> tuple[float, float] | None:
    """``occluded_queries`` as (low, high) fractions of the person covered: None/false/"" for none, a pair
    ``[0.2, 0.5]``, or a string ``"0.2-0.5"`` / ``"20-50%"``."""
    if value is None or value is False or value == "":
        return None
    pair: Any = value
    if isinstance(value, str):
        text = value.strip().rstrip("%")
        percent = value.strip().endswith("%")
        parts = text.replace("..", "-").split("-")
        try:
            pair = [float(p.strip().rstrip("%")) / (100 if percent else 1) for p in parts]
        except ValueError:
            pair = None
    try:
        low, high = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a range of the person's area to cover, like [0.2, 0.5] or '20-50%', got {value!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low <= high < 1.0):
        raise ValueError(f"{name} must satisfy 0 < low <= high < 1 (fractions of the person covered), got {value!r}")
    if high - low < MIN_RANGE:
        raise ValueError(
            f"{name} must span at least {MIN_RANGE:g} (an occluder grows in steps of a pixel row or column), "
            f"got {value!r}; try [{max(0.01, low - MIN_RANGE / 2):g}, {min(0.99, high + MIN_RANGE / 2):g}]"
        )
    return (low, high)


def gallery_share(value: Any, name: str = "occluded_gallery") -> float:
    """The share of gallery images to occlude, checked to be in 0..1."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = math.nan
    if isinstance(value, bool) or not 0.0 <= share <= 1.0:
        raise ValueError(f"{name} must be the share of gallery images to occlude, in 0..1, got {value!r}")
    return share


_SHAPES: dict[str, tuple[Callable[..., dict[str, Any]], Callable[..., None]]] = {
    "person": (_person_params, _person),
    "car": (_car_params, _car),
    "pole": (_pole_params, _pole),
    "bag": (_bag_params, _bag),
    "bush": (_bush_params, _bush),
}


def mask_box(mask: np.ndarray) -> Box:
    """The bounding box (x0, y0, x1, y1) of a boolean mask; the whole array if it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0.0, 0.0, float(mask.shape[1]), float(mask.shape[0]))
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def coverage(person: np.ndarray, occluder: np.ndarray) -> float:
    """Fraction of the ``person`` mask under the ``occluder`` mask (both boolean, same shape)."""
    total = int(person.sum())
    return float((person & occluder).sum()) / total if total else 0.0


def _layer(
    size: tuple[int, int], draw: Callable[..., None], params: dict[str, Any], box: Box, amount: float
) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw(layer, params, box, amount)
    return layer


def occlude(
    person: np.ndarray,
    cover: tuple[float, float],
    rng: np.random.Generator,
    *,
    kinds: Sequence[str] = OCCLUDER_KINDS,
    photos: Sequence[Image.Image] = (),
) -> tuple[Image.Image, Occlusion]:
    """An occluder layer covering a fraction of ``person`` within ``cover`` = (low, high).

    Args:
        person: boolean mask (height, width) of the person to occlude; for a photo, the person's box.
        cover: the range the covered fraction must fall in, 0 < low <= high < 1.
        rng: the generator every random choice comes from.
        kinds: the occluder kinds to choose among (:data:`OCCLUDER_KINDS`).
        photos: crops of *other* identities for the ``person`` kind; empty draws a synthetic pedestrian.

    Returns:
        The RGBA layer (transparent where nothing covers) and what it is and covers.

    Raises:
        ValueError: ``cover`` or ``kinds`` are not valid, or the mask is empty.
    """
    low, high = cover
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"occlusion coverage must be a range 0 < low <= high < 1, got {cover!r}")
    unknown = [k for k in kinds if k not in _SHAPES]
    if unknown or not kinds:
        raise ValueError(f"unknown occluder kinds {unknown}; choose among {', '.join(OCCLUDER_KINDS)}")
    if not person.any():
        raise ValueError("occlude: the person's mask is empty")
    size = (person.shape[1], person.shape[0])
    box = mask_box(person)
    # Aim inside the range, off its ends, so a step of coverage past the target stays within it.
    margin = min(0.02, (high - low) / 4)
    target = float(rng.uniform(low + margin, high - margin))
    for attempt in range(_TRIES):
        # After half the tries, fall back to the pole, whose coverage grows smoothly with its width.
        kind = pick(rng, list(kinds)) if attempt < _TRIES // 2 else "pole"
        make_params, draw = _SHAPES[kind]
        params = make_params(rng, box, photos)
        lo, hi = 0.0, 1.0
        for _ in range(_STEPS):
            mid = (lo + hi) / 2
            reached = coverage(person, np.asarray(_layer(size, draw, params, box, mid))[..., 3] > 0)
            lo, hi = (mid, hi) if reached < target else (lo, mid)
        # The coverage grows in steps of a pixel column or row: of the two ends of the last interval, keep
        # one inside the range, the nearer to the target.
        ends = []
        for amount in (lo, hi):
            layer = _layer(size, draw, params, box, amount)
            ends.append((coverage(person, np.asarray(layer)[..., 3] > 0), layer))
        for covered, layer in sorted(ends, key=lambda end: abs(end[0] - target)):
            if low <= covered <= high:
                return layer, Occlusion(kind, covered, params.get("index"))
    raise ValueError(
        f"occlude: no occluder covered {low:.0%}-{high:.0%} of this person in {_TRIES} tries; widen the range"
    )
