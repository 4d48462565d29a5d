"""Who a synthetic person is: the shared palettes and garment types, and the seeded sampling of an
identity's attributes (and their words, for the captions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BACKGROUND_STYLES",
    "BAGS",
    "BAG_COLORS",
    "BAG_COLOR_NAMES",
    "HAIR_COLORS",
    "HAIR_COLOR_NAMES",
    "HAIR_STYLES",
    "HATS",
    "HAT_COLORS",
    "HAT_COLOR_NAMES",
    "LOWER_COLORS",
    "LOWER_COLOR_NAMES",
    "LOWER_TYPES",
    "SHOE_COLORS",
    "SHOE_COLOR_NAMES",
    "SKIN_TONES",
    "UPPER_COLORS",
    "UPPER_COLOR_NAMES",
    "UPPER_PATTERNS",
    "VIEW_NAMES",
    "Color",
    "Identity",
    "Point",
    "identity_attributes",
    "identity_of",
    "pick",
    "sample_identity",
    "seeded_rng",
]

# Tags that keep the random streams of the different uses of the seed apart.
TAG_IDENTITY, TAG_CAMSET, TAG_CAMERA, TAG_IMAGE, TAG_DISTRACTOR, TAG_BACKGROUND, TAG_CAPTION = range(1, 8)
TAG_OCCLUDER, TAG_OCCLUDED_GALLERY = 8, 9

Color = tuple[int, int, int]
Point = tuple[float, float]

# ----------------------------------------------------------------------------------------------------
# Palettes: deliberately small so that attributes are shared between identities.
# ----------------------------------------------------------------------------------------------------

UPPER_COLORS: tuple[Color, ...] = (
    (178, 36, 40),  # red
    (34, 46, 96),  # navy
    (226, 226, 220),  # white
    (32, 32, 35),  # black
    (52, 122, 64),  # green
    (218, 178, 46),  # yellow
    (128, 128, 132),  # grey
    (112, 162, 212),  # light blue
)
LOWER_COLORS: tuple[Color, ...] = (
    (44, 62, 100),  # denim
    (30, 30, 33),  # black
    (172, 152, 112),  # khaki
    (112, 112, 116),  # grey
    (104, 136, 176),  # light denim
    (96, 68, 48),  # brown
)
SKIN_TONES: tuple[Color, ...] = (
    (242, 208, 182),
    (226, 184, 150),
    (196, 150, 112),
    (150, 104, 74),
    (102, 70, 50),
)
HAIR_COLORS: tuple[Color, ...] = ((24, 21, 20), (62, 40, 28), (116, 78, 46), (206, 174, 112), (158, 156, 152))
SHOE_COLORS: tuple[Color, ...] = (
    (26, 26, 28),
    (232, 232, 228),
    (104, 70, 44),
    (120, 120, 126),
    (170, 40, 40),
)
BAG_COLORS: tuple[Color, ...] = ((28, 28, 30), (38, 52, 96), (112, 74, 46), (168, 40, 44), (96, 98, 104))
HAT_COLORS: tuple[Color, ...] = ((28, 28, 30), (176, 36, 40), (36, 48, 98), (226, 226, 220), (196, 170, 70))

# Words for the palettes' colours (the captions' vocabulary), in palette order.
UPPER_COLOR_NAMES = ("red", "navy", "white", "black", "green", "yellow", "grey", "light blue")
LOWER_COLOR_NAMES = ("dark blue", "black", "khaki", "grey", "light blue", "brown")
HAIR_COLOR_NAMES = ("black", "dark brown", "brown", "blond", "grey")
SHOE_COLOR_NAMES = ("black", "white", "brown", "grey", "red")
BAG_COLOR_NAMES = ("black", "navy", "brown", "red", "grey")
HAT_COLOR_NAMES = ("black", "red", "navy", "white", "mustard")

UPPER_PATTERNS = ("plain", "hstripes", "vstripes", "jacket", "logo")
LOWER_TYPES = ("trousers", "shorts", "skirt")
HAIR_STYLES = ("short", "long", "bald")
HATS = ("none", "cap", "beanie")
BAGS = ("none", "backpack", "shoulder", "handbag")

FRONT, BACK, LEFT, RIGHT = range(4)
VIEW_NAMES = ("front", "back", "left", "right")
BACKGROUND_STYLES = ("pavement", "grass", "indoor", "street", "plain")


def pick(rng: np.random.Generator, items: Sequence[Any], p: Sequence[float] | None = None) -> Any:
    return items[int(rng.choice(len(items), p=p))]


# ----------------------------------------------------------------------------------------------------
# Identities and cameras
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """The appearance of one person; every field comes from a small shared palette or choice list."""

    height: float  # short 0.94 / tall 1.0 (crops are normalised to the person's height by a detector)
    width: float  # slim / average / broad body width multiplier
    skin: Color
    hair_color: Color
    hair_style: str
    hat: str
    hat_color: Color
    upper_color: Color
    upper_color2: Color  # stripes, open jacket's shirt, logo
    upper_pattern: str
    long_sleeves: bool
    lower_color: Color
    lower_type: str
    shoe_color: Color
    bag: str
    bag_color: Color
    bag_side: int  # +1 the person's right, -1 the person's left


def sample_identity(rng: np.random.Generator) -> Identity:
    """Samples a person's attributes; many people share each attribute, only combinations are unique."""
    upper = int(rng.integers(len(UPPER_COLORS)))
    upper2 = (upper + 1 + int(rng.integers(len(UPPER_COLORS) - 1))) % len(UPPER_COLORS)
    lower_type = pick(rng, LOWER_TYPES, p=(0.6, 0.2, 0.2))
    hair_style = pick(rng, HAIR_STYLES, p=(0.5, 0.32, 0.18) if lower_type != "skirt" else (0.25, 0.7, 0.05))
    return Identity(
        height=pick(rng, (0.94, 1.0)),
        width=pick(rng, (0.82, 1.0, 1.18)),
        skin=pick(rng, SKIN_TONES),
        hair_color=pick(rng, HAIR_COLORS),
        hair_style=hair_style,
        hat=pick(rng, HATS, p=(0.72, 0.16, 0.12)),
        hat_color=pick(rng, HAT_COLORS),
        upper_color=UPPER_COLORS[upper],
        upper_color2=UPPER_COLORS[upper2],
        upper_pattern=pick(rng, UPPER_PATTERNS, p=(0.36, 0.16, 0.12, 0.2, 0.16)),
        long_sleeves=bool(rng.random() < 0.55),
        lower_color=pick(rng, LOWER_COLORS),
        lower_type=lower_type,
        shoe_color=pick(rng, SHOE_COLORS),
        bag=pick(rng, BAGS, p=(0.34, 0.3, 0.2, 0.16)),
        bag_color=pick(rng, BAG_COLORS),
        bag_side=pick(rng, (-1, 1)),
    )


def seeded_rng(seed: int, tag: int, *, pid: int = 0, cam: int = 0, index: int = 0) -> np.random.Generator:
    # Fixed-length entropy so that different uses can never collide.
    return np.random.default_rng([seed, tag, pid, cam, index])


def identity_of(seed: int, pid: int) -> Identity:
    return sample_identity(seeded_rng(seed, TAG_IDENTITY, pid=pid))


def _color_name(color: Color, palette: Sequence[Color], names: Sequence[str]) -> str:
    return names[list(palette).index(color)]


def identity_attributes(ident: Identity) -> dict[str, Any]:
    """The attributes a caption may mention, with colours as words (see :mod:`.synthetic_captions`)."""
    return {
        "hair_color": _color_name(ident.hair_color, HAIR_COLORS, HAIR_COLOR_NAMES),
        "hair_style": ident.hair_style,
        "hat": ident.hat,
        "hat_color": _color_name(ident.hat_color, HAT_COLORS, HAT_COLOR_NAMES),
        "upper_color": _color_name(ident.upper_color, UPPER_COLORS, UPPER_COLOR_NAMES),
        "upper_color2": _color_name(ident.upper_color2, UPPER_COLORS, UPPER_COLOR_NAMES),
        "upper_pattern": ident.upper_pattern,
        "long_sleeves": ident.long_sleeves,
        "lower_color": _color_name(ident.lower_color, LOWER_COLORS, LOWER_COLOR_NAMES),
        "lower_type": ident.lower_type,
        "shoe_color": _color_name(ident.shoe_color, SHOE_COLORS, SHOE_COLOR_NAMES),
        "bag": ident.bag,
        "bag_color": _color_name(ident.bag_color, BAG_COLORS, BAG_COLOR_NAMES),
        "bag_side": "right" if ident.bag_side > 0 else "left",
    }
