"""Procedural synthetic person re-identification data, written in the Market-1501 layout.

:func:`generate_synthetic` draws little pedestrian crops (head, hair, torso with patterned clothing,
arms, legs, shoes, bags) from per-identity attributes that are sampled from small shared palettes, so
that many people share a colour and only the combination of attributes identifies a person. Every
camera has its own viewpoint mix, background, lighting, blur, noise and occlusions. The result is
written as::

    OUT/bounding_box_train/0001_c1s1_000001_00.jpg
    OUT/query/...
    OUT/bounding_box_test/...      (gallery, including pid 0000 distractors)
    OUT/synthetic.json             (generation parameters and per-split counts)

so that a Market-1501 parser reads it unchanged. Only the standard library, numpy and Pillow are used.
Output is deterministic: every image has its own random generator seeded from
``(seed, pid, camera, image)``, so the same arguments give byte-identical files whatever the number of
worker processes.
"""

from __future__ import annotations

import json
import math
import operator
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from svllreid.data.synthetic_captions import describe
from svllreid.fileio import atomic_write_text

__all__ = [
    "CAPTIONS_FILE",
    "FORMAT_VERSION",
    "PRETRAIN_WORLD",
    "SynthSummary",
    "generate_pretraining_world",
    "generate_synthetic",
    "identity_attributes",
    "synthetic_matches",
]

#: Version of the generator's output; bump it whenever the drawings or the layout change, so that
#: :func:`synthetic_matches` stops accepting folders written by an older generator.
FORMAT_VERSION = 2
FORMAT_NAME = "svllreid-synthetic-market1501"
META_FILE = "synthetic.json"
#: One JSON object per image: ``{"path", "pid", "camid", "view", "split", "caption"}`` (path relative).
CAPTIONS_FILE = "captions.jsonl"
PARTIAL_FILE = "synthetic.partial.json"
SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
MAX_CAMERAS = 9
#: The pretraining world: many captioned identities under a seed that no ReID set of the project uses
#: (the ReID sets use small seeds), so language-image pretraining never sees an evaluation identity.
#: Identities past ``train_ids`` are held out as its test split (zero-shot text-to-image evaluation).
PRETRAIN_WORLD: dict[str, int] = {
    "ids": 2400,
    "train_ids": 2000,
    "cameras": 6,
    "images_per_camera": 2,
    "seed": 7_000_001,
}
#: Distractors (pid 0000) added to the gallery, as a fraction of the gallery's identity images.
DISTRACTOR_FRACTION = 0.05

_SUPERSAMPLE = 3
_MIN_SIZE = (32, 16)

# Tags that keep the random streams of the different uses of the seed apart.
_TAG_IDENTITY, _TAG_CAMSET, _TAG_CAMERA, _TAG_IMAGE, _TAG_DISTRACTOR, _TAG_BACKGROUND, _TAG_CAPTION = range(1, 8)

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
#: Per background style: (wall or sky, secondary scene colour, floor) variants.
_SCENE_COLORS: dict[str, tuple[tuple[Color, Color, Color], ...]] = {
    "pavement": (
        ((150, 146, 138), (92, 110, 82), (168, 164, 156)),
        ((188, 198, 210), (70, 98, 72), (146, 136, 128)),
        ((176, 166, 152), (128, 116, 100), (192, 182, 162)),
    ),
    "grass": (
        ((168, 196, 220), (54, 88, 52), (86, 134, 62)),
        ((206, 210, 214), (76, 100, 60), (112, 140, 70)),
    ),
    "indoor": (
        ((214, 204, 184), (122, 92, 66), (150, 136, 120)),
        ((190, 208, 214), (96, 100, 110), (176, 170, 160)),
        ((206, 218, 192), (140, 70, 56), (120, 112, 104)),
    ),
    "street": (
        ((176, 112, 92), (70, 84, 100), (96, 96, 100)),
        ((204, 190, 160), (60, 70, 80), (120, 118, 114)),
        ((140, 140, 146), (88, 110, 128), (84, 82, 80)),
    ),
    "plain": (
        ((196, 200, 206), (150, 156, 166), (128, 126, 122)),
        ((220, 212, 196), (170, 160, 140), (150, 120, 96)),
    ),
}


def _pick(rng: np.random.Generator, items: Sequence[Any], p: Sequence[float] | None = None) -> Any:
    return items[int(rng.choice(len(items), p=p))]


# ----------------------------------------------------------------------------------------------------
# Identities and cameras
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
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


def _sample_identity(rng: np.random.Generator) -> _Identity:
    """Samples a person's attributes; many people share each attribute, only combinations are unique."""
    upper = int(rng.integers(len(UPPER_COLORS)))
    upper2 = (upper + 1 + int(rng.integers(len(UPPER_COLORS) - 1))) % len(UPPER_COLORS)
    lower_type = _pick(rng, LOWER_TYPES, p=(0.6, 0.2, 0.2))
    hair_style = _pick(rng, HAIR_STYLES, p=(0.5, 0.32, 0.18) if lower_type != "skirt" else (0.25, 0.7, 0.05))
    return _Identity(
        height=_pick(rng, (0.94, 1.0)),
        width=_pick(rng, (0.82, 1.0, 1.18)),
        skin=_pick(rng, SKIN_TONES),
        hair_color=_pick(rng, HAIR_COLORS),
        hair_style=hair_style,
        hat=_pick(rng, HATS, p=(0.72, 0.16, 0.12)),
        hat_color=_pick(rng, HAT_COLORS),
        upper_color=UPPER_COLORS[upper],
        upper_color2=UPPER_COLORS[upper2],
        upper_pattern=_pick(rng, UPPER_PATTERNS, p=(0.36, 0.16, 0.12, 0.2, 0.16)),
        long_sleeves=bool(rng.random() < 0.55),
        lower_color=_pick(rng, LOWER_COLORS),
        lower_type=lower_type,
        shoe_color=_pick(rng, SHOE_COLORS),
        bag=_pick(rng, BAGS, p=(0.34, 0.3, 0.2, 0.16)),
        bag_color=_pick(rng, BAG_COLORS),
        bag_side=_pick(rng, (-1, 1)),
    )


@dataclass(frozen=True)
class _Camera:
    """One camera's fixed characteristics."""

    index: int  # 1-based
    view_p: tuple[float, float, float, float]  # probabilities of front, back, left, right
    style: str
    wall: Color
    wall2: Color
    floor: Color
    horizon: float  # fraction of the crop height where the floor begins
    brightness: float
    cast: tuple[float, float, float]
    contrast: float
    gradient: float  # vertical lighting gradient (top brighter when > 0)
    blur: str  # "none", "gauss" or "lowres"
    blur_amount: float
    noise: float
    occlusion: float  # probability that an image is occluded
    jpeg_quality: int


def _jitter(rng: np.random.Generator, c: Sequence[float], amount: float) -> Color:
    r, g, b = (float(v) + float(rng.normal(0.0, amount)) for v in c)
    return (_clip8(r), _clip8(g), _clip8(b))


def _clip8(v: float) -> int:
    return int(min(255, max(0, round(v))))


def _sample_camera(rng: np.random.Generator, index: int, style: str) -> _Camera:
    """Samples camera ``index`` (1-based): camera 1 sees mostly fronts, 2 mostly backs, 3 and 4 sides."""
    dominant = (index - 1) % 4
    rest = rng.dirichlet(np.ones(3)) * 0.45
    view_p = [0.0] * 4
    others = [v for v in range(4) if v != dominant]
    view_p[dominant] = 0.55
    for v, p in zip(others, rest, strict=True):
        view_p[v] = float(p)
    total = sum(view_p)
    view_p = [p / total for p in view_p]
    wall, wall2, floor = _pick(rng, _SCENE_COLORS[style])
    has_occlusion = rng.random() < 0.6
    return _Camera(
        index=index,
        view_p=(view_p[0], view_p[1], view_p[2], view_p[3]),
        style=style,
        wall=_jitter(rng, wall, 14),
        wall2=_jitter(rng, wall2, 12),
        floor=_jitter(rng, floor, 12),
        horizon=float(rng.uniform(0.42, 0.68)),
        brightness=float(rng.uniform(0.78, 1.15)),
        cast=(float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.94, 1.06)), float(rng.uniform(0.88, 1.12))),
        contrast=float(rng.uniform(0.78, 1.12)),
        gradient=float(rng.uniform(-0.12, 0.18)),
        blur=_pick(rng, ("none", "gauss", "lowres"), p=(0.35, 0.35, 0.3)),
        blur_amount=float(rng.uniform(0.0, 1.0)),
        noise=float(rng.uniform(1.0, 6.0)),
        occlusion=float(rng.uniform(0.1, 0.15)) if has_occlusion else 0.0,
        jpeg_quality=int(rng.integers(80, 94)),
    )


def _rng(seed: int, tag: int, pid: int = 0, cam: int = 0, index: int = 0) -> np.random.Generator:
    # Fixed-length entropy so that different uses can never collide.
    return np.random.default_rng([seed, tag, pid, cam, index])


def _identity(seed: int, pid: int) -> _Identity:
    return _sample_identity(_rng(seed, _TAG_IDENTITY, pid))


def _camera(seed: int, cam: int) -> _Camera:
    # Background styles are dealt out per seed so that the first five cameras all differ.
    order = _rng(seed, _TAG_CAMERA).permutation(len(BACKGROUND_STYLES))
    style = BACKGROUND_STYLES[int(order[(cam - 1) % len(order)])]
    return _sample_camera(_rng(seed, _TAG_CAMERA, 0, cam), cam, style)


def _cameras_of(seed: int, pid: int, num_cameras: int) -> list[int]:
    """The (sorted, 1-based) cameras that see identity ``pid``: a random subset of size 2..C."""
    rng = _rng(seed, _TAG_CAMSET, pid)
    k = int(rng.integers(2, num_cameras + 1))
    return sorted(int(c) + 1 for c in rng.choice(num_cameras, size=k, replace=False))


# ----------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------


def _shade(c: Color, f: float) -> Color:
    return (_clip8(c[0] * f), _clip8(c[1] * f), _clip8(c[2] * f))


def _clip_polygon(poly: Sequence[Point], x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    """Sutherland-Hodgman clip of a polygon to the rectangle ``[x0, x1] x [y0, y1]``."""

    def clip(points: list[Point], inside: Any, cross: Any) -> list[Point]:
        out: list[Point] = []
        for i, cur in enumerate(points):
            prev = points[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cross(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross(prev, cur))
        return out

    def at_x(x: float) -> Any:
        return lambda p, q: (x, p[1] + (q[1] - p[1]) * (x - p[0]) / (q[0] - p[0]))

    def at_y(y: float) -> Any:
        return lambda p, q: (p[0] + (q[0] - p[0]) * (y - p[1]) / (q[1] - p[1]), y)

    pts = list(poly)
    for inside, cross in (
        (lambda p: p[0] >= x0, at_x(x0)),
        (lambda p: p[0] <= x1, at_x(x1)),
        (lambda p: p[1] >= y0, at_y(y0)),
        (lambda p: p[1] <= y1, at_y(y1)),
    ):
        if not pts:
            break
        pts = clip(pts, inside, cross)
    return pts


class _Painter:
    """Draws in body units: x = 0 is the body's centre line, y = 0 the top of the head, y = 1 the ground."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, top: float, unit: float):
        self.draw, self.cx, self.top, self.u = draw, cx, top, unit

    def pt(self, p: Point) -> Point:
        return (self.cx + p[0] * self.u, self.top + p[1] * self.u)

    def poly(self, points: Sequence[Point], fill: Color) -> None:
        if len(points) >= 3:
            self.draw.polygon([self.pt(p) for p in points], fill=fill)

    def ellipse(self, c: Point, rx: float, ry: float, fill: Color) -> None:
        x, y = self.pt(c)
        self.draw.ellipse((x - rx * self.u, y - ry * self.u, x + rx * self.u, y + ry * self.u), fill=fill)

    def half_ellipse(self, c: Point, rx: float, ry: float, fill: Color) -> None:
        """The top half of an ellipse (caps, hairlines)."""
        x, y = self.pt(c)
        box = (x - rx * self.u, y - ry * self.u, x + rx * self.u, y + ry * self.u)
        self.draw.chord(box, 180, 360, fill=fill)

    def rect(self, p0: Point, p1: Point, fill: Color, radius: float = 0.0) -> None:
        (ax, ay), (bx, by) = self.pt(p0), self.pt(p1)
        box = (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
        if radius > 0:
            self.draw.rounded_rectangle(box, radius=radius * self.u, fill=fill)
        else:
            self.draw.rectangle(box, fill=fill)

    def limb(self, p0: Point, p1: Point, w0: float, w1: float, fill: Color, caps: bool = True) -> None:
        """A tapered segment from ``p0`` (width ``w0``) to ``p1`` (width ``w1``) with round ends."""
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        n = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / n, dx / n
        self.poly(
            [
                (p0[0] + nx * w0 / 2, p0[1] + ny * w0 / 2),
                (p1[0] + nx * w1 / 2, p1[1] + ny * w1 / 2),
                (p1[0] - nx * w1 / 2, p1[1] - ny * w1 / 2),
                (p0[0] - nx * w0 / 2, p0[1] - ny * w0 / 2),
            ],
            fill,
        )
        if caps:
            self.ellipse(p0, w0 / 2, w0 / 2, fill)
            self.ellipse(p1, w1 / 2, w1 / 2, fill)


@dataclass(frozen=True)
class _Pose:
    view: int
    stride: float  # leg swing angle in radians (0 = standing)
    phase: int  # +1 / -1: which leg / arm is forward
    arm_swing: float  # arm swing angle in radians
    arm_out: float  # arms' outward angle in front / back views
    elbow: float  # extra forearm bend


def _sample_pose(rng: np.random.Generator, view: int) -> _Pose:
    walking = rng.random() < 0.7
    stride = float(rng.uniform(0.18, 0.36)) if walking else float(rng.uniform(0.0, 0.05))
    return _Pose(
        view=view,
        stride=stride,
        phase=int(_pick(rng, (-1, 1))),
        arm_swing=stride * float(rng.uniform(0.8, 1.3)) if walking else float(rng.uniform(0.0, 0.08)),
        arm_out=float(rng.uniform(0.04, 0.16)),
        elbow=float(rng.uniform(0.0, 0.25)),
    )


def _torso_front(ident: _Identity) -> list[Point]:
    sh, wa, hp = 0.125 * ident.width, 0.098 * ident.width, 0.106 * ident.width
    return [
        (-sh * 0.68, 0.152),
        (sh * 0.68, 0.152),
        (sh, 0.182),
        (sh * 0.97, 0.25),
        (wa, 0.40),
        (hp, 0.50),
        (-hp, 0.50),
        (-wa, 0.40),
        (-sh * 0.97, 0.25),
        (-sh, 0.182),
    ]


def _torso_side(ident: _Identity, d: int) -> list[Point]:
    cd, bd = 0.084 * ident.width, 0.072 * ident.width  # chest and back depth
    return [
        (-d * bd * 0.7, 0.152),
        (d * cd * 0.55, 0.152),
        (d * cd, 0.215),
        (d * cd * 0.96, 0.33),
        (d * cd * 0.86, 0.50),
        (-d * bd, 0.50),
        (-d * bd * 1.08, 0.30),
        (-d * bd, 0.19),
    ]


def _draw_pattern(p: _Painter, ident: _Identity, torso: list[Point], view: int, d: int) -> None:
    """Stripes, open jacket or logo on top of the plain torso."""
    c2 = ident.upper_color2
    xs = [q[0] for q in torso]
    left, right = min(xs), max(xs)
    if ident.upper_pattern == "hstripes":
        y = 0.19
        while y < 0.5:
            p.poly(_clip_polygon(torso, -1, y, 1, y + 0.024), c2)
            y += 0.05
    elif ident.upper_pattern == "vstripes":
        x = left + 0.012
        while x < right:
            p.poly(_clip_polygon(torso, x, 0.15, x + 0.022, 0.51), c2)
            x += 0.046
    elif ident.upper_pattern == "jacket":
        if view == FRONT:
            p.poly([(-0.028, 0.152), (0.028, 0.152), (0.034, 0.5), (-0.034, 0.5)], c2)
            p.poly([(-0.028, 0.152), (0.0, 0.2), (0.028, 0.152)], _shade(ident.skin, 0.95))
        elif view in (LEFT, RIGHT):
            edge = [q for q in torso if q[0] * d > 0]
            front_x = max(q[0] * d for q in edge) * d
            p.poly([(front_x, 0.16), (front_x - d * 0.022, 0.16), (front_x - d * 0.026, 0.5), (front_x, 0.5)], c2)
        # The back of a jacket is plain.
    elif ident.upper_pattern == "logo" and view == FRONT:
        p.rect((-0.034, 0.22), (0.034, 0.29), c2, radius=0.006)


def _draw_arm(
    p: _Painter,
    ident: _Identity,
    shoulder: Point,
    elbow: Point,
    wrist: Point,
    shade: float = 1.0,
    sleeve_shade: float = 0.92,
) -> None:
    """An arm with its sleeve and hand; sleeves are a little darker than the torso so they stand out."""
    skin = _shade(ident.skin, shade)
    sleeve = _shade(ident.upper_color, shade * sleeve_shade)
    w0, w1, w2 = 0.054 * ident.width, 0.044 * ident.width, 0.036 * ident.width
    p.limb(shoulder, elbow, w0, w1, sleeve if ident.long_sleeves else skin)
    p.limb(elbow, wrist, w1, w2, sleeve if ident.long_sleeves else skin)
    if not ident.long_sleeves:  # short sleeve over the upper part of the upper arm
        mid = (shoulder[0] + (elbow[0] - shoulder[0]) * 0.55, shoulder[1] + (elbow[1] - shoulder[1]) * 0.55)
        p.limb(shoulder, mid, w0 * 1.12, w0 * 1.08, sleeve)
    elif ident.upper_pattern == "hstripes" and ident.upper_color2 != ident.upper_color:
        cuff = (elbow[0] + (wrist[0] - elbow[0]) * 0.8, elbow[1] + (wrist[1] - elbow[1]) * 0.8)
        p.limb(cuff, wrist, w2 * 1.05, w2 * 1.05, _shade(ident.upper_color2, shade), caps=False)
    hand = (wrist[0] + (wrist[0] - elbow[0]) * 0.22, wrist[1] + (wrist[1] - elbow[1]) * 0.22)
    p.ellipse(hand, 0.022, 0.026, skin)


def _draw_leg(
    p: _Painter, ident: _Identity, hip: Point, knee: Point, ankle: Point, side_view: int, shade: float
) -> None:
    """One leg with its shoe; ``side_view`` is the facing direction in side views and 0 otherwise."""
    lower = _shade(ident.lower_color, shade)
    skin = _shade(ident.skin, shade)
    w0, w1, w2 = 0.082 * ident.width, 0.058 * ident.width, 0.044 * ident.width
    bare = ident.lower_type != "trousers"
    p.limb(hip, knee, w0, w1, skin if bare else lower)
    p.limb(knee, ankle, w1, w2, skin if bare else lower)
    if ident.lower_type == "shorts":
        end = (hip[0] + (knee[0] - hip[0]) * 0.78, hip[1] + (knee[1] - hip[1]) * 0.78)
        p.limb(hip, end, w0 * 1.15, w0 * 1.05, lower)
    elif ident.lower_type == "trousers":  # a slightly darker hem
        p.limb(ankle, ankle, w2 * 1.1, w2 * 1.1, _shade(lower, 0.85))
    shoe = _shade(ident.shoe_color, shade)
    if side_view:
        d = side_view
        p.poly(
            [
                (ankle[0] - d * 0.03, ankle[1] - 0.006),
                (ankle[0] + d * 0.03, ankle[1] - 0.004),
                (ankle[0] + d * 0.075, ankle[1] + 0.026),
                (ankle[0] + d * 0.07, ankle[1] + 0.042),
                (ankle[0] - d * 0.034, ankle[1] + 0.042),
            ],
            shoe,
        )
    else:
        p.ellipse((ankle[0], ankle[1] + 0.022), 0.032, 0.022, shoe)


def _draw_head(p: _Painter, ident: _Identity, view: int, d: int) -> None:
    skin, hair = ident.skin, ident.hair_color
    hc = (0.0 if view in (FRONT, BACK) else d * 0.006, 0.068)
    p.rect((-0.018, 0.11), (0.018, 0.165), _shade(skin, 0.9))  # neck
    if ident.hair_style == "long" and view == FRONT:
        p.rect((-0.06, 0.05), (0.06, 0.2), hair, radius=0.03)
    p.ellipse(hc, 0.05, 0.066, skin)
    style = ident.hair_style
    if view == FRONT:
        if style != "bald":
            p.ellipse((0.0, 0.061), 0.054, 0.064, hair)
            p.ellipse((0.0, 0.08), 0.043, 0.055, skin)
        p.ellipse((-0.018, 0.073), 0.007, 0.006, (40, 30, 28))
        p.ellipse((0.018, 0.073), 0.007, 0.006, (40, 30, 28))
        p.rect((-0.012, 0.106), (0.012, 0.110), _shade(skin, 0.75))
    elif view == BACK:
        if style != "bald":
            p.ellipse((0.0, 0.064), 0.053, 0.068, hair)
        if style == "long":
            p.rect((-0.055, 0.07), (0.055, 0.23), hair, radius=0.025)
    else:
        if style != "bald":
            p.ellipse((hc[0] - d * 0.008, 0.062), 0.052, 0.064, hair)
            p.ellipse((hc[0] + d * 0.016, 0.082), 0.037, 0.052, skin)
            if style == "long":
                p.rect((-d * 0.055, 0.06), (d * 0.002, 0.22), hair, radius=0.02)
        p.poly([(d * 0.05, 0.072), (d * 0.066, 0.092), (d * 0.048, 0.095)], skin)  # nose
        p.ellipse((d * 0.034, 0.072), 0.006, 0.006, (40, 30, 28))
    if ident.hat == "cap":
        p.half_ellipse((hc[0], 0.052), 0.056, 0.05, ident.hat_color)
        brim = _shade(ident.hat_color, 0.8)
        if view == FRONT:
            p.ellipse((0.0, 0.052), 0.058, 0.011, brim)
        elif view in (LEFT, RIGHT):
            p.poly([(d * 0.02, 0.046), (d * 0.098, 0.052), (d * 0.096, 0.06), (d * 0.02, 0.058)], brim)
    elif ident.hat == "beanie":
        p.half_ellipse((hc[0], 0.058), 0.056, 0.062, ident.hat_color)
        p.rect((hc[0] - 0.056, 0.046), (hc[0] + 0.056, 0.062), _shade(ident.hat_color, 0.82), radius=0.006)


def _draw_person(p: _Painter, ident: _Identity, pose: _Pose) -> None:
    """Draws a pedestrian (head at y = 0, ground at y = 1) in the pose's viewpoint."""
    view = pose.view
    lower = ident.lower_color
    bag = ident.bag_color
    hp = 0.106 * ident.width
    if view in (FRONT, BACK):
        # Body's right side is on the viewer's left in a front view.
        bag_x = ident.bag_side * (-1 if view == FRONT else 1)
        # Legs: walking towards / away from the camera shows as a foreshortened, slightly lifted leg.
        leg_off = hp - 0.042 * ident.width
        spread = 0.012 + pose.stride * 0.03
        for s in (-1, 1):
            lift = 0.025 * pose.stride / 0.36 if s == pose.phase else 0.0
            hip = (s * leg_off, 0.52)
            ankle = (s * (leg_off + spread), 0.955 - lift)
            knee = ((hip[0] + ankle[0]) / 2, (hip[1] + ankle[1]) / 2)
            _draw_leg(p, ident, hip, knee, ankle, 0, 1.0)
        if ident.lower_type == "skirt":
            p.poly([(-hp, 0.46), (hp, 0.46), (hp * 1.55, 0.71), (-hp * 1.55, 0.71)], lower)
        else:
            p.poly([(-hp, 0.46), (hp, 0.46), (hp * 1.02, 0.585), (0.0, 0.565), (-hp * 1.02, 0.585)], lower)
        torso = _torso_front(ident)
        sh = 0.125 * ident.width
        p.poly(torso, ident.upper_color)
        _draw_pattern(p, ident, torso, view, 0)
        if ident.bag == "backpack":
            if view == BACK:
                p.rect((-sh * 0.74, 0.19), (sh * 0.74, 0.44), bag, radius=0.03)
                p.rect((-sh * 0.5, 0.34), (sh * 0.5, 0.425), _shade(bag, 0.8), radius=0.015)
            else:
                for s in (-1, 1):
                    p.limb((s * sh * 0.55, 0.158), (s * sh * 0.6, 0.36), 0.018, 0.018, _shade(bag, 0.9))
        elif ident.bag == "shoulder":
            p.limb((-bag_x * sh * 0.6, 0.158), (bag_x * hp * 0.9, 0.43), 0.014, 0.014, _shade(bag, 0.9))
            p.rect((bag_x * hp * 0.55, 0.41), (bag_x * (hp + 0.07), 0.53), bag, radius=0.01)
        for s in (-1, 1):
            swing = pose.arm_swing * (1 if s == pose.phase else -1)
            shoulder = (s * (sh - 0.024), 0.19)
            out = pose.arm_out
            elbow = (
                shoulder[0] + s * math.sin(out) * 0.16,
                shoulder[1] + 0.16 * math.cos(swing) * math.cos(out),
            )
            wrist = (
                elbow[0] + s * math.sin(out * 0.4) * 0.15,
                elbow[1] + 0.15 * math.cos(swing + pose.elbow * (1 if swing > 0 else 0.3)),
            )
            _draw_arm(p, ident, shoulder, elbow, wrist)
            if ident.bag == "handbag" and s == bag_x:
                p.limb((wrist[0], wrist[1] + 0.02), (wrist[0], wrist[1] + 0.05), 0.008, 0.008, bag)
                p.rect((wrist[0] - 0.035, wrist[1] + 0.045), (wrist[0] + 0.035, wrist[1] + 0.11), bag, 0.01)
        _draw_head(p, ident, view, 0)
        return

    # Side views: d is the facing direction on screen; the viewer sees the body's right side when d = +1.
    d = 1 if view == RIGHT else -1
    near_bag = ident.bag_side == d

    def arm(sign: int, shade: float) -> tuple[Point, Point, Point]:
        swing = pose.arm_swing * sign
        shoulder = (d * 0.006, 0.195)
        elbow = (shoulder[0] + d * math.sin(swing) * 0.16, shoulder[1] + math.cos(swing) * 0.16)
        fore = swing + pose.elbow * (1.4 if swing > 0 else 0.4)
        wrist = (elbow[0] + d * math.sin(fore) * 0.15, elbow[1] + math.cos(fore) * 0.15)
        _draw_arm(p, ident, shoulder, elbow, wrist, shade, sleeve_shade=0.84)
        return shoulder, elbow, wrist

    def leg(sign: int, shade: float) -> None:
        a = pose.stride * sign
        hip = (0.0, 0.5)
        knee = (d * math.sin(a) * 0.235, 0.5 + math.cos(a) * 0.235)
        shin = a * (0.55 if a > 0 else 1.5)
        ankle = (knee[0] + d * math.sin(shin) * 0.22, knee[1] + math.cos(shin) * 0.22)
        # Keep the lower foot on the ground.
        drop = 0.955 - ankle[1]
        if sign > 0 or pose.stride < 0.1:
            knee, ankle = (knee[0], knee[1] + drop * 0.5), (ankle[0], ankle[1] + drop)
        else:  # the back leg pushes off: heel raised a bit
            knee, ankle = (knee[0], knee[1] + drop * 0.3), (ankle[0], ankle[1] + drop * 0.6)
        _draw_leg(p, ident, hip, knee, ankle, d, shade)

    far_shade = 0.72
    far = arm(-pose.phase, far_shade)
    if ident.bag == "handbag" and not near_bag:
        w = far[2]
        p.rect((w[0] - 0.03, w[1] + 0.04), (w[0] + 0.03, w[1] + 0.1), _shade(bag, far_shade), 0.01)
    leg(-pose.phase, 0.8)
    leg(pose.phase, 1.0)
    bd = 0.072 * ident.width
    if ident.lower_type == "skirt":
        p.poly([(-d * bd, 0.46), (d * 0.085, 0.46), (d * 0.13, 0.71), (-d * 0.12, 0.71)], lower)
    else:
        p.poly([(-d * bd, 0.46), (d * 0.08, 0.46), (d * 0.06, 0.575), (-d * 0.06, 0.575)], lower)
    if ident.bag == "backpack":
        p.rect((-d * bd * 0.8, 0.19), (-d * (bd + 0.085), 0.43), bag, radius=0.025)
    torso = _torso_side(ident, d)
    p.poly(torso, ident.upper_color)
    _draw_pattern(p, ident, torso, view, d)
    if ident.bag == "backpack":
        p.limb((d * 0.0, 0.158), (d * 0.045, 0.35), 0.016, 0.016, _shade(bag, 0.9))
    elif ident.bag == "shoulder":
        p.limb((-d * bd * 0.4, 0.158), (d * 0.06, 0.4), 0.013, 0.013, _shade(bag, 0.9))
        if near_bag:
            p.rect((-d * 0.05, 0.4), (d * 0.055, 0.52), bag, radius=0.01)
    near = arm(pose.phase, 1.0)
    if ident.bag == "handbag" and near_bag:
        w = near[2]
        p.limb((w[0], w[1] + 0.02), (w[0], w[1] + 0.05), 0.008, 0.008, bag)
        p.rect((w[0] - 0.035, w[1] + 0.045), (w[0] + 0.035, w[1] + 0.11), bag, 0.01)
    _draw_head(p, ident, view, d)


_BACKGROUNDS: dict[tuple[int, int, int, int], Image.Image] = {}


def _background(seed: int, cam: _Camera, width: int, height: int) -> Image.Image:
    """A wide panorama of the camera's scene (cached per process); images are random crops of it."""
    key = (seed, cam.index, width, height)
    if key in _BACKGROUNDS:
        return _BACKGROUNDS[key]
    if len(_BACKGROUNDS) >= 64:
        _BACKGROUNDS.clear()
    rng = _rng(seed, _TAG_BACKGROUND, 0, cam.index)
    pw = width * 3
    img = Image.new("RGB", (pw, height), cam.wall)
    draw = ImageDraw.Draw(img)
    hy = int(cam.horizon * height)
    wall, wall2, floor = cam.wall, cam.wall2, cam.floor
    if cam.style == "street":  # facade with windows
        for x in range(int(rng.integers(-width // 3, 0)), pw, width // 2 + 1):
            wx0, wy0 = x + width // 10, int(height * rng.uniform(0.04, 0.12))
            wy1 = max(wy0 + 2, min(hy - height // 14, int(height * rng.uniform(0.32, 0.42))))
            draw.rectangle((wx0 - 4, wy0 - 4, wx0 + width // 4 + 4, wy1 + 4), fill=_shade(wall, 0.8))
            draw.rectangle((wx0, wy0, wx0 + width // 4, wy1), fill=wall2)
            draw.line((wx0, (wy0 + wy1) // 2, wx0 + width // 4, (wy0 + wy1) // 2), fill=_shade(wall, 0.75), width=3)
        draw.rectangle((0, hy - height // 30, pw, hy), fill=_shade(wall, 0.7))  # kerb
    elif cam.style == "indoor":  # wall, a door, skirting board, tiles
        dx = int(rng.integers(0, pw - width // 2))
        draw.rectangle((dx, int(hy * 0.12), dx + width // 2, hy), fill=_shade(wall2, 0.8))
        draw.rectangle((dx + 5, int(hy * 0.12) + 5, dx + width // 2 - 5, hy), fill=wall2)
        draw.ellipse((dx + width // 2 - 18, hy // 2, dx + width // 2 - 10, hy // 2 + 8), fill=(190, 180, 120))
        wx = (dx + width + int(rng.integers(0, width))) % pw
        draw.rectangle((wx, int(hy * 0.15), wx + width // 3, int(hy * 0.55)), fill=(178, 204, 226))
        draw.rectangle((0, hy - height // 40, pw, hy), fill=_shade(wall, 0.6))
    elif cam.style == "grass":  # sky, distant trees, lawn
        tree_line = int(hy * rng.uniform(0.35, 0.7))
        xs = np.arange(pw)
        tops = tree_line - (np.abs(np.sin(xs / rng.uniform(18, 40) + rng.uniform(0, 6))) * height * 0.08)
        for x in range(0, pw, 3):
            draw.rectangle((x, int(tops[x]), x + 3, hy), fill=wall2)
    elif cam.style == "pavement":  # hedge / low wall behind a plaza
        hedge = int(hy * rng.uniform(0.3, 0.6))
        draw.rectangle((0, 0, pw, hedge), fill=_shade(wall, 1.12))
        draw.rectangle((0, hedge, pw, hy), fill=wall2)
        for x in range(int(rng.integers(0, width)), pw, width + int(rng.integers(0, width))):
            draw.rectangle((x, int(hedge * 0.2), x + width // 14, hy), fill=(70, 70, 74))  # lamp posts
    draw.rectangle((0, hy, pw, height), fill=floor)
    # Floor texture: perspective lines (pavement, indoor, street), none on grass / plain.
    if cam.style in ("pavement", "indoor", "street"):
        line = _shade(floor, 0.82)
        y, step = float(hy), height * 0.03
        while y < height:
            draw.line((0, int(y), pw, int(y)), fill=line, width=2)
            step *= 1.35
            y += step
        vx = pw / 2
        for k in range(-12, 13):
            draw.line((vx + k * width * 0.08, hy, vx + k * width * 0.5, height), fill=line, width=2)
    arr = np.asarray(img, dtype=np.float32)
    # Texture noise (grass, hedges) and a gentle vertical gradient.
    noise_amp = 16.0 if cam.style in ("grass", "pavement") else 5.0
    noise = rng.normal(0.0, noise_amp, size=(height // 3 + 1, pw // 3 + 1, 1)).astype(np.float32)
    noise = np.repeat(np.repeat(noise, 3, axis=0), 3, axis=1)[:height, :pw]
    grad = np.linspace(1.06, 0.92, height, dtype=np.float32)[:, None, None]
    arr = np.clip(arr * grad + noise, 0, 255).astype(np.uint8)
    bg = Image.fromarray(arr).filter(ImageFilter.GaussianBlur(1.2))
    _BACKGROUNDS[key] = bg
    return bg


def _draw_occluder(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, person_height: float
) -> None:
    kind = _pick(rng, ("pole", "block", "person"), p=(0.35, 0.35, 0.3))
    if kind == "pole":
        w = width * rng.uniform(0.08, 0.16)
        x = width * rng.uniform(0.1, 0.9) - w / 2
        c = _jitter(rng, _pick(rng, ((90, 92, 96), (50, 70, 60), (150, 150, 150), (170, 140, 40))), 8)
        draw.rectangle((x, 0, x + w, height), fill=c)
        draw.rectangle((x + w * 0.2, 0, x + w * 0.35, height), fill=_shade(c, 1.25))
    elif kind == "block":  # car bonnet, bench or bin in front of the legs
        top = height * rng.uniform(0.62, 0.8)
        c = _jitter(rng, _pick(rng, (*UPPER_COLORS, (120, 90, 60))), 10)
        x0 = width * rng.uniform(-0.4, 0.2)
        x1 = x0 + width * rng.uniform(0.7, 1.4)
        draw.rounded_rectangle((x0, top, x1, height + 20), radius=width * 0.08, fill=c)
        draw.rectangle((x0, top + (height - top) * 0.15, x1, top + (height - top) * 0.22), fill=_shade(c, 1.2))
    else:  # part of another pedestrian at the crop's edge
        other = _sample_identity(rng)
        pose = _sample_pose(rng, int(rng.integers(4)))
        side = _pick(rng, (-1, 1))
        unit = person_height * rng.uniform(0.95, 1.08)
        cx = width / 2 + side * width * rng.uniform(0.55, 0.8)
        _draw_person(_Painter(draw, cx, height - unit * rng.uniform(0.98, 1.02), unit), other, pose)


def _render(
    seed: int, ident: _Identity, cam: _Camera, rng: np.random.Generator, size: tuple[int, int]
) -> tuple[Image.Image, int]:
    """One crop of ``ident`` seen by ``cam``, at ``size`` = (height, width), and its viewpoint."""
    h, w = size
    ss = _SUPERSAMPLE
    wc, hc = w * ss, h * ss
    bg = _background(seed, cam, wc, hc)
    x0 = int(rng.integers(0, bg.width - wc + 1))
    img = bg.crop((x0, 0, x0 + wc, hc))
    draw = ImageDraw.Draw(img)
    view = int(rng.choice(4, p=cam.view_p))
    pose = _sample_pose(rng, view)
    unit = hc * float(rng.uniform(0.83, 0.94)) * ident.height
    ground = hc * float(rng.uniform(0.955, 0.99))
    cx = wc / 2 + wc * float(rng.normal(0.0, 0.035))
    # Soft shadow under the feet.
    draw.ellipse(
        (cx - unit * 0.12, ground - unit * 0.018, cx + unit * 0.12, ground + unit * 0.012),
        fill=_shade(cam.floor, 0.7),
    )
    _draw_person(_Painter(draw, cx, ground - unit, unit), ident, pose)
    if rng.random() < cam.occlusion:
        _draw_occluder(draw, rng, wc, hc, unit)
    img = img.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=1.5)
    if cam.blur == "gauss":
        img = img.filter(ImageFilter.GaussianBlur(0.35 + 0.65 * cam.blur_amount))
    elif cam.blur == "lowres":
        f = 1.6 + 1.2 * cam.blur_amount
        small = img.resize((max(4, round(w / f)), max(4, round(h / f))), Image.Resampling.BILINEAR)
        img = small.resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32)
    mean = arr.mean()
    arr = (arr - mean) * cam.contrast + mean
    gain = np.array(cam.cast, dtype=np.float32) * cam.brightness * float(rng.uniform(0.94, 1.06))
    gain = gain * rng.uniform(0.97, 1.03, size=3).astype(np.float32)  # per-image colour jitter
    grad = 1.0 + cam.gradient * np.linspace(0.5, -0.5, h, dtype=np.float32)[:, None, None]
    arr = arr * gain * grad + rng.standard_normal(size=arr.shape, dtype=np.float32) * cam.noise
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)), view


# ----------------------------------------------------------------------------------------------------
# Planning and writing
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    split: str  # "train", "query" or "gallery"
    pid: int  # 0 for distractors
    cam: int  # 1-based
    index: int  # image index within (pid, cam); for distractors, within the camera
    frame: int

    @property
    def name(self) -> str:
        return f"{self.pid:04d}_c{self.cam}s1_{self.frame:06d}_00.jpg"


def _plan(num_ids: int, num_cameras: int, images_per_camera: int, seed: int, num_train: int) -> list[_Job]:
    """Every image to write, with its split and Market-1501 name."""
    jobs: list[_Job] = []
    for pid in range(1, num_ids + 1):
        cams = _cameras_of(seed, pid, num_cameras)
        for cam in cams:
            for i in range(images_per_camera):
                if pid <= num_train:
                    split = "train"
                elif images_per_camera == 1:
                    # A single image per camera: the last camera's goes to the gallery so that every
                    # query still has a cross-camera true match.
                    split = "gallery" if cam == cams[-1] else "query"
                else:
                    split = "query" if i == 0 else "gallery"
                jobs.append(_Job(split, pid, cam, i, i + 1))
    gallery = sum(1 for j in jobs if j.split == "gallery")
    num_distractors = max(1, round(DISTRACTOR_FRACTION * gallery))
    rng = _rng(seed, _TAG_DISTRACTOR)
    per_cam = [0] * (num_cameras + 1)
    for cam in rng.integers(1, num_cameras + 1, size=num_distractors):
        c = int(cam)
        per_cam[c] += 1
        jobs.append(_Job("gallery", 0, c, per_cam[c], per_cam[c]))
    return jobs


def _color_name(color: Color, palette: Sequence[Color], names: Sequence[str]) -> str:
    return names[list(palette).index(color)]


def identity_attributes(ident: _Identity) -> dict[str, Any]:
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


def _job_identity(seed: int, job: _Job) -> _Identity:
    if job.pid == 0:  # a random passer-by
        return _sample_identity(_rng(seed, _TAG_DISTRACTOR, 0, job.cam, job.index))
    return _identity(seed, job.pid)


def _write_jobs(args: tuple[str, int, int, int, list[_Job]]) -> list[dict[str, Any]]:
    """Renders and writes a batch of images (runs in a worker process); returns their caption records."""
    root, seed, height, width, jobs = args
    cameras: dict[int, _Camera] = {}
    identities: dict[tuple[int, int, int], _Identity] = {}
    records = []
    for job in jobs:
        cam = cameras.get(job.cam) or cameras.setdefault(job.cam, _camera(seed, job.cam))
        key = (job.pid, job.cam, job.index) if job.pid == 0 else (job.pid, 0, 0)
        ident = identities.get(key) or identities.setdefault(key, _job_identity(seed, job))
        rng = _rng(seed, _TAG_IMAGE, job.pid, job.cam, job.index)
        img, view = _render(seed, ident, cam, rng, (height, width))
        relative = f"{SPLIT_DIRS[job.split]}/{job.name}"
        img.save(Path(root) / relative, format="JPEG", quality=cam.jpeg_quality, optimize=False)
        # The caption has its own stream, so captions never change the images.
        caption_rng = _rng(seed, _TAG_CAPTION, job.pid, job.cam, job.index)
        caption = describe(identity_attributes(ident), VIEW_NAMES[view], caption_rng)
        records.append(
            {
                "path": relative,
                "pid": job.pid,
                "camid": job.cam,
                "view": VIEW_NAMES[view],
                "split": job.split,
                "caption": caption,
            }
        )
    return records


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_synthetic` wrote.

    ``images`` counts the files per split (``"train"``, ``"query"``, ``"gallery"``; the gallery
    count includes the pid 0000 distractors).
    """

    root: Path
    num_ids: int
    num_cameras: int
    images: dict[str, int]
    seconds: float


def _integer(name: str, value: Any, low: int, high: int | None, why: str = "") -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an integer {bounds}{why}, got {value!r}")
    return number


def default_train_ids(num_ids: int) -> int:
    """Identities 1..this train; the others are the test identities (half, rounded up)."""
    return (num_ids + 1) // 2


def _validate(
    num_ids: Any, num_cameras: Any, images_per_camera: Any, seed: Any, image_size: Any
) -> tuple[int, int, int, int, tuple[int, int]]:
    ids = _integer("num_ids", num_ids, 2, 9999, " (one train and one test identity; 4-digit Market ids)")
    cams = _integer(
        "num_cameras",
        num_cameras,
        2,
        MAX_CAMERAS,
        " (every identity is seen by two cameras or more; Market-1501 names hold a single camera digit)",
    )
    per_camera = _integer("images_per_camera", images_per_camera, 1, 999_999)
    seed = _integer("seed", seed, 0, None)
    try:
        height, width = (operator.index(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a (height, width) pair of integers, got {image_size!r}") from None
    if height < _MIN_SIZE[0] or width < _MIN_SIZE[1]:
        raise ValueError(f"image_size (height, width) must be at least {_MIN_SIZE}, got {image_size!r}")
    return ids, cams, per_camera, seed, (height, width)


def _params(
    num_ids: int, num_cameras: int, images_per_camera: int, seed: int, size: tuple[int, int], train_ids: int
) -> dict:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "num_ids": num_ids,
        "train_ids": train_ids,
        "num_cameras": num_cameras,
        "images_per_camera": images_per_camera,
        "seed": seed,
        "image_size": [size[0], size[1]],
    }


def generate_synthetic(
    out: str | Path,
    *,
    num_ids: int = 100,
    num_cameras: int = 6,
    images_per_camera: int = 4,
    seed: int = 0,
    image_size: tuple[int, int] = (128, 64),
    workers: int | None = None,
    train_ids: int | None = None,
) -> SynthSummary:
    """Writes a synthetic person re-identification dataset in the Market-1501 layout.

    Identities ``1..ceil(N/2)`` (or ``1..train_ids``) are for training (``bounding_box_train``); the
    others are split into
    one query per camera they appear in (``query``) and the rest (``bounding_box_test``), plus about
    5% pid 0000 distractors in the gallery. Each identity is seen by 2..C random cameras with
    ``images_per_camera`` images in each.

    Args:
        out: Dataset root. Existing split folders are replaced if ``out`` holds an earlier synthetic
            dataset; a folder with other data in the split folders is refused.
        num_ids: Number of identities (>= 2).
        num_cameras: Number of cameras (2..9).
        images_per_camera: Images of an identity in each camera that sees it (>= 1).
        seed: Non-negative seed; the same arguments give byte-identical files.
        image_size: (height, width) of the crops.
        workers: Worker processes; ``None`` uses ``os.cpu_count()``, 1 runs serially.
        train_ids: Training identities (1..N-1); None = half of them, rounded up.

    Every image also gets a caption of what its view shows (:mod:`svllreid.data.synthetic_captions`),
    written to ``OUT/captions.jsonl`` with its path, identity, camera, view and split.

    Returns:
        A :class:`SynthSummary` with the per-split image counts and the time taken.

    Raises:
        ValueError: An argument is out of range.
        FileExistsError: ``out`` already holds images that this generator did not write.
    """
    start = time.perf_counter()
    num_ids, num_cameras, images_per_camera, seed, (height, width) = _validate(
        num_ids, num_cameras, images_per_camera, seed, image_size
    )
    num_train = default_train_ids(num_ids) if train_ids is None else _integer("train_ids", train_ids, 1, num_ids - 1)
    root = Path(out)
    meta_path, partial = root / META_FILE, root / PARTIAL_FILE
    dirs = [root / d for d in SPLIT_DIRS.values()]
    ours = meta_path.exists() or partial.exists()
    if not ours and any(d.is_dir() and any(d.iterdir()) for d in dirs):
        raise FileExistsError(
            f"{root} already holds Market-1501 style data that generate_synthetic did not write "
            f"(no {META_FILE}); refusing to overwrite it"
        )
    root.mkdir(parents=True, exist_ok=True)
    # Mark the folder as ours before touching it, so that an interrupted run can be redone but never
    # looks complete.
    params = _params(num_ids, num_cameras, images_per_camera, seed, (height, width), num_train)
    partial.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    meta_path.unlink(missing_ok=True)
    for d in dirs:
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()

    jobs = _plan(num_ids, num_cameras, images_per_camera, seed, num_train)
    # With workers=None, processes are only used for more than a few dozen images each.
    auto = min(os.cpu_count() or 1, max(1, len(jobs) // 32))
    n_workers = auto if workers is None else max(1, int(workers))
    chunks = min(len(jobs), n_workers * 8) if n_workers > 1 else 1
    tasks = [(str(root), seed, height, width, jobs[i::chunks]) for i in range(chunks)]
    records: list[dict[str, Any]] = []
    if n_workers == 1:
        for task in tasks:
            records += _write_jobs(task)
    else:
        # Each image has its own seeded generator, so the output does not depend on the worker count.
        with ProcessPoolExecutor(max_workers=min(n_workers, len(tasks))) as pool:
            for chunk in pool.map(_write_jobs, tasks):
                records += chunk
    records.sort(key=lambda r: r["path"])
    atomic_write_text(root / CAPTIONS_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    counts = {split: sum(1 for j in jobs if j.split == split) for split in SPLIT_DIRS}
    meta = dict(params)
    meta["counts"] = {**counts, "distractors": sum(1 for j in jobs if j.pid == 0)}
    meta["test_ids"] = num_ids - num_train
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(meta_path)
    partial.unlink()
    return SynthSummary(
        root=root,
        num_ids=num_ids,
        num_cameras=num_cameras,
        images=counts,
        seconds=time.perf_counter() - start,
    )


def generate_pretraining_world(out: str | Path, workers: int | None = None) -> SynthSummary:
    """:func:`generate_synthetic` with the sizes and seed of :data:`PRETRAIN_WORLD`: the captioned world
    the shipped ``svll-synth`` weights were pretrained on."""
    world = PRETRAIN_WORLD
    return generate_synthetic(
        out,
        num_ids=world["ids"],
        num_cameras=world["cameras"],
        images_per_camera=world["images_per_camera"],
        seed=world["seed"],
        train_ids=world["train_ids"],
        workers=workers,
    )


def synthetic_matches(
    out: str | Path,
    *,
    num_ids: int,
    num_cameras: int,
    images_per_camera: int,
    seed: int,
    image_size: tuple[int, int] = (128, 64),
    train_ids: int | None = None,
) -> bool:
    """Whether ``out`` holds a complete synthetic dataset generated with exactly these parameters.

    Compares the parameters and generator version in ``out/synthetic.json`` and checks that every
    split folder holds the recorded number of images, each with a caption. Never raises for a
    missing or broken folder.
    """
    meta_path = Path(out) / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict):
        return False
    try:
        size = (int(image_size[0]), int(image_size[1]))
    except (TypeError, ValueError, IndexError):
        return False
    num_train = default_train_ids(num_ids) if train_ids is None else train_ids
    expected = _params(num_ids, num_cameras, images_per_camera, seed, size, num_train)
    if any(meta.get(k) != v for k, v in expected.items()):
        return False
    counts = meta.get("counts")
    if not isinstance(counts, dict):
        return False
    for split, folder in SPLIT_DIRS.items():
        d = Path(out) / folder
        if not d.is_dir() or sum(1 for _ in d.glob("*.jpg")) != counts.get(split):
            return False
    try:
        with (Path(out) / CAPTIONS_FILE).open() as lines:
            captions = sum(1 for _ in lines)
    except OSError:
        return False
    return captions == sum(counts.get(split, 0) for split in SPLIT_DIRS)
