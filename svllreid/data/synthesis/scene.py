"""Cameras and scenes: each camera's viewpoint mix, background, lighting, blur, noise and occluders, and
the rendering of one person in one camera."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from svllreid.data.synthesis.attributes import (
    BACKGROUND_STYLES,
    TAG_BACKGROUND,
    TAG_CAMERA,
    TAG_CAMSET,
    UPPER_COLORS,
    Color,
    Identity,
    pick,
    sample_identity,
    seeded_rng,
)
from svllreid.data.synthesis.occluders import Occlusion
from svllreid.data.synthesis.occluders import occlude as occlude_person
from svllreid.data.synthesis.painter import Painter, clip8, draw_person, sample_pose, shaded

__all__ = ["SUPERSAMPLE", "Camera", "Rendering", "camera_of", "cameras_of", "render"]

#: Images are drawn this many times larger, then shrunk (antialiasing).
SUPERSAMPLE = 3


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


@dataclass(frozen=True)
class Camera:
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
    return (clip8(r), clip8(g), clip8(b))


def _sample_camera(rng: np.random.Generator, index: int, style: str) -> Camera:
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
    wall, wall2, floor = pick(rng, _SCENE_COLORS[style])
    has_occlusion = rng.random() < 0.6
    return Camera(
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
        blur=pick(rng, ("none", "gauss", "lowres"), p=(0.35, 0.35, 0.3)),
        blur_amount=float(rng.uniform(0.0, 1.0)),
        noise=float(rng.uniform(1.0, 6.0)),
        occlusion=float(rng.uniform(0.1, 0.15)) if has_occlusion else 0.0,
        jpeg_quality=int(rng.integers(80, 94)),
    )


def camera_of(seed: int, cam: int) -> Camera:
    # Background styles are dealt out per seed so that the first five cameras all differ.
    order = seeded_rng(seed, TAG_CAMERA).permutation(len(BACKGROUND_STYLES))
    style = BACKGROUND_STYLES[int(order[(cam - 1) % len(order)])]
    return _sample_camera(seeded_rng(seed, TAG_CAMERA, pid=0, cam=cam), cam, style)


def cameras_of(seed: int, pid: int, num_cameras: int) -> list[int]:
    """The (sorted, 1-based) cameras that see identity ``pid``: a random subset of size 2..C."""
    rng = seeded_rng(seed, TAG_CAMSET, pid=pid)
    k = int(rng.integers(2, num_cameras + 1))
    return sorted(int(c) + 1 for c in rng.choice(num_cameras, size=k, replace=False))


_BACKGROUNDS: dict[tuple[int, int, int, int], Image.Image] = {}


def _background(seed: int, cam: Camera, width: int, height: int) -> Image.Image:
    """A wide panorama of the camera's scene (cached per process); images are random crops of it."""
    key = (seed, cam.index, width, height)
    if key in _BACKGROUNDS:
        return _BACKGROUNDS[key]
    if len(_BACKGROUNDS) >= 64:
        _BACKGROUNDS.clear()
    rng = seeded_rng(seed, TAG_BACKGROUND, pid=0, cam=cam.index)
    pw = width * 3
    img = Image.new("RGB", (pw, height), cam.wall)
    draw = ImageDraw.Draw(img)
    hy = int(cam.horizon * height)
    wall, wall2, floor = cam.wall, cam.wall2, cam.floor
    if cam.style == "street":  # facade with windows
        for x in range(int(rng.integers(-width // 3, 0)), pw, width // 2 + 1):
            wx0, wy0 = x + width // 10, int(height * rng.uniform(0.04, 0.12))
            wy1 = max(wy0 + 2, min(hy - height // 14, int(height * rng.uniform(0.32, 0.42))))
            draw.rectangle((wx0 - 4, wy0 - 4, wx0 + width // 4 + 4, wy1 + 4), fill=shaded(wall, 0.8))
            draw.rectangle((wx0, wy0, wx0 + width // 4, wy1), fill=wall2)
            draw.line((wx0, (wy0 + wy1) // 2, wx0 + width // 4, (wy0 + wy1) // 2), fill=shaded(wall, 0.75), width=3)
        draw.rectangle((0, hy - height // 30, pw, hy), fill=shaded(wall, 0.7))  # kerb
    elif cam.style == "indoor":  # wall, a door, skirting board, tiles
        dx = int(rng.integers(0, pw - width // 2))
        draw.rectangle((dx, int(hy * 0.12), dx + width // 2, hy), fill=shaded(wall2, 0.8))
        draw.rectangle((dx + 5, int(hy * 0.12) + 5, dx + width // 2 - 5, hy), fill=wall2)
        draw.ellipse((dx + width // 2 - 18, hy // 2, dx + width // 2 - 10, hy // 2 + 8), fill=(190, 180, 120))
        wx = (dx + width + int(rng.integers(0, width))) % pw
        draw.rectangle((wx, int(hy * 0.15), wx + width // 3, int(hy * 0.55)), fill=(178, 204, 226))
        draw.rectangle((0, hy - height // 40, pw, hy), fill=shaded(wall, 0.6))
    elif cam.style == "grass":  # sky, distant trees, lawn
        tree_line = int(hy * rng.uniform(0.35, 0.7))
        xs = np.arange(pw)
        tops = tree_line - (np.abs(np.sin(xs / rng.uniform(18, 40) + rng.uniform(0, 6))) * height * 0.08)
        for x in range(0, pw, 3):
            draw.rectangle((x, int(tops[x]), x + 3, hy), fill=wall2)
    elif cam.style == "pavement":  # hedge / low wall behind a plaza
        hedge = int(hy * rng.uniform(0.3, 0.6))
        draw.rectangle((0, 0, pw, hedge), fill=shaded(wall, 1.12))
        draw.rectangle((0, hedge, pw, hy), fill=wall2)
        for x in range(int(rng.integers(0, width)), pw, width + int(rng.integers(0, width))):
            draw.rectangle((x, int(hedge * 0.2), x + width // 14, hy), fill=(70, 70, 74))  # lamp posts
    draw.rectangle((0, hy, pw, height), fill=floor)
    # Floor texture: perspective lines (pavement, indoor, street), none on grass / plain.
    if cam.style in ("pavement", "indoor", "street"):
        line = shaded(floor, 0.82)
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
    kind = pick(rng, ("pole", "block", "person"), p=(0.35, 0.35, 0.3))
    if kind == "pole":
        w = width * rng.uniform(0.08, 0.16)
        x = width * rng.uniform(0.1, 0.9) - w / 2
        c = _jitter(rng, pick(rng, ((90, 92, 96), (50, 70, 60), (150, 150, 150), (170, 140, 40))), 8)
        draw.rectangle((x, 0, x + w, height), fill=c)
        draw.rectangle((x + w * 0.2, 0, x + w * 0.35, height), fill=shaded(c, 1.25))
    elif kind == "block":  # car bonnet, bench or bin in front of the legs
        top = height * rng.uniform(0.62, 0.8)
        c = _jitter(rng, pick(rng, (*UPPER_COLORS, (120, 90, 60))), 10)
        x0 = width * rng.uniform(-0.4, 0.2)
        x1 = x0 + width * rng.uniform(0.7, 1.4)
        draw.rounded_rectangle((x0, top, x1, height + 20), radius=width * 0.08, fill=c)
        draw.rectangle((x0, top + (height - top) * 0.15, x1, top + (height - top) * 0.22), fill=shaded(c, 1.2))
    else:  # part of another pedestrian at the crop's edge
        other = sample_identity(rng)
        pose = sample_pose(rng, int(rng.integers(4)))
        side = pick(rng, (-1, 1))
        unit = person_height * rng.uniform(0.95, 1.08)
        cx = width / 2 + side * width * rng.uniform(0.55, 0.8)
        draw_person(Painter(draw, cx, height - unit * rng.uniform(0.98, 1.02), unit), other, pose)


@dataclass(frozen=True)
class Rendering:
    """One drawn crop, with what was drawn where."""

    image: Image.Image
    view: int
    #: The occluder placed in front of the person when one was asked for (``render(occlude=...)``), else None.
    occlusion: Occlusion | None = None
    #: At drawing resolution (``SUPERSAMPLE`` times the crop), when an occluder was asked for: the person's
    #: mask and the occluder's, from which :attr:`occlusion`'s coverage is measured.
    person_mask: np.ndarray | None = None
    occluder_mask: np.ndarray | None = None


def render(
    seed: int,
    ident: Identity,
    cam: Camera,
    *,
    rng: np.random.Generator,
    size: tuple[int, int],
    occlude: tuple[float, float] | None = None,
    occluder_rng: np.random.Generator | None = None,
) -> Rendering:
    """One crop of ``ident`` seen by ``cam``, at ``size`` = (height, width).

    ``occlude`` = (low, high) puts a natural occluder (:mod:`.occluders`) in front of the person, covering a
    fraction of the person's mask in that range, instead of the camera's own occasional occluder; its
    random choices come from ``occluder_rng`` (required then), so the background, the person and the pose
    are those drawn without it. (Where the camera's own occluder would have been drawn, its random draws are
    skipped, so that image's noise and colour jitter differ.)
    """
    if occlude is not None and occluder_rng is None:
        raise ValueError("render: occlude needs its own occluder_rng (a seeded generator)")
    h, w = size
    ss = SUPERSAMPLE
    wc, hc = w * ss, h * ss
    bg = _background(seed, cam, wc, hc)
    x0 = int(rng.integers(0, bg.width - wc + 1))
    img = bg.crop((x0, 0, x0 + wc, hc))
    draw = ImageDraw.Draw(img)
    view = int(rng.choice(4, p=cam.view_p))
    pose = sample_pose(rng, view)
    unit = hc * float(rng.uniform(0.83, 0.94)) * ident.height
    ground = hc * float(rng.uniform(0.955, 0.99))
    cx = wc / 2 + wc * float(rng.normal(0.0, 0.035))
    # Soft shadow under the feet.
    draw.ellipse(
        (cx - unit * 0.12, ground - unit * 0.018, cx + unit * 0.12, ground + unit * 0.012),
        fill=shaded(cam.floor, 0.7),
    )
    occlusion = person_mask = occluder_mask = None
    if occlude is None:
        draw_person(Painter(draw, cx, ground - unit, unit), ident, pose)
        if rng.random() < cam.occlusion:
            _draw_occluder(draw, rng, wc, hc, unit)
    else:
        # The person on a layer of its own, for its mask; every fill is opaque, so compositing it draws the
        # same pixels as drawing in place.
        person = Image.new("RGBA", img.size, (0, 0, 0, 0))
        draw_person(Painter(ImageDraw.Draw(person), cx, ground - unit, unit), ident, pose)
        img = img.convert("RGBA")
        img.alpha_composite(person)
        rng.random()  # the camera's own occluder is replaced; its draw is kept so the rest stays the same
        person_mask = np.asarray(person)[..., 3] > 0
        assert occluder_rng is not None  # checked above
        layer, occlusion = occlude_person(person_mask, occlude, occluder_rng)
        occluder_mask = np.asarray(layer)[..., 3] > 0
        img.alpha_composite(layer)
        img = img.convert("RGB")
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
    image = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    return Rendering(image, view, occlusion, person_mask, occluder_mask)
