"""Drawing a pedestrian with Pillow, back to front, one body part at a time, in one of four views."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import ImageDraw

from svllreid.data.synthesis.attributes import BACK, FRONT, LEFT, RIGHT, Color, Identity, Point, pick

__all__ = ["Painter", "clip8", "draw_person", "sample_pose", "shaded"]

# ----------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------


def shaded(c: Color, f: float) -> Color:
    return (clip8(c[0] * f), clip8(c[1] * f), clip8(c[2] * f))


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


class Painter:
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

    def limb(self, p0: Point, p1: Point, w0: float, w1: float, *, fill: Color, caps: bool = True) -> None:
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


def sample_pose(rng: np.random.Generator, view: int) -> _Pose:
    walking = rng.random() < 0.7
    stride = float(rng.uniform(0.18, 0.36)) if walking else float(rng.uniform(0.0, 0.05))
    return _Pose(
        view=view,
        stride=stride,
        phase=int(pick(rng, (-1, 1))),
        arm_swing=stride * float(rng.uniform(0.8, 1.3)) if walking else float(rng.uniform(0.0, 0.08)),
        arm_out=float(rng.uniform(0.04, 0.16)),
        elbow=float(rng.uniform(0.0, 0.25)),
    )


def _torso_front(ident: Identity) -> list[Point]:
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


def _torso_side(ident: Identity, d: int) -> list[Point]:
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


def _draw_pattern(p: Painter, ident: Identity, torso: list[Point], view: int, d: int) -> None:
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
            p.poly([(-0.028, 0.152), (0.0, 0.2), (0.028, 0.152)], shaded(ident.skin, 0.95))
        elif view in (LEFT, RIGHT):
            edge = [q for q in torso if q[0] * d > 0]
            front_x = max(q[0] * d for q in edge) * d
            p.poly([(front_x, 0.16), (front_x - d * 0.022, 0.16), (front_x - d * 0.026, 0.5), (front_x, 0.5)], c2)
        # The back of a jacket is plain.
    elif ident.upper_pattern == "logo" and view == FRONT:
        p.rect((-0.034, 0.22), (0.034, 0.29), c2, radius=0.006)


def _draw_arm(
    p: Painter,
    ident: Identity,
    shoulder: Point,
    elbow: Point,
    wrist: Point,
    shade: float = 1.0,
    sleeve_shade: float = 0.92,
) -> None:
    """An arm with its sleeve and hand; sleeves are a little darker than the torso so they stand out."""
    skin = shaded(ident.skin, shade)
    sleeve = shaded(ident.upper_color, shade * sleeve_shade)
    w0, w1, w2 = 0.054 * ident.width, 0.044 * ident.width, 0.036 * ident.width
    p.limb(shoulder, elbow, w0, w1, fill=sleeve if ident.long_sleeves else skin)
    p.limb(elbow, wrist, w1, w2, fill=sleeve if ident.long_sleeves else skin)
    if not ident.long_sleeves:  # short sleeve over the upper part of the upper arm
        mid = (shoulder[0] + (elbow[0] - shoulder[0]) * 0.55, shoulder[1] + (elbow[1] - shoulder[1]) * 0.55)
        p.limb(shoulder, mid, w0 * 1.12, w0 * 1.08, fill=sleeve)
    elif ident.upper_pattern == "hstripes" and ident.upper_color2 != ident.upper_color:
        cuff = (elbow[0] + (wrist[0] - elbow[0]) * 0.8, elbow[1] + (wrist[1] - elbow[1]) * 0.8)
        p.limb(cuff, wrist, w2 * 1.05, w2 * 1.05, fill=shaded(ident.upper_color2, shade), caps=False)
    hand = (wrist[0] + (wrist[0] - elbow[0]) * 0.22, wrist[1] + (wrist[1] - elbow[1]) * 0.22)
    p.ellipse(hand, 0.022, 0.026, skin)


def _draw_leg(p: Painter, ident: Identity, hip: Point, knee: Point, ankle: Point, side_view: int, shade: float) -> None:
    """One leg with its shoe; ``side_view`` is the facing direction in side views and 0 otherwise."""
    lower = shaded(ident.lower_color, shade)
    skin = shaded(ident.skin, shade)
    w0, w1, w2 = 0.082 * ident.width, 0.058 * ident.width, 0.044 * ident.width
    bare = ident.lower_type != "trousers"
    p.limb(hip, knee, w0, w1, fill=skin if bare else lower)
    p.limb(knee, ankle, w1, w2, fill=skin if bare else lower)
    if ident.lower_type == "shorts":
        end = (hip[0] + (knee[0] - hip[0]) * 0.78, hip[1] + (knee[1] - hip[1]) * 0.78)
        p.limb(hip, end, w0 * 1.15, w0 * 1.05, fill=lower)
    elif ident.lower_type == "trousers":  # a slightly darker hem
        p.limb(ankle, ankle, w2 * 1.1, w2 * 1.1, fill=shaded(lower, 0.85))
    shoe = shaded(ident.shoe_color, shade)
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


def _draw_head(p: Painter, ident: Identity, view: int, d: int) -> None:
    skin, hair = ident.skin, ident.hair_color
    hc = (0.0 if view in (FRONT, BACK) else d * 0.006, 0.068)
    p.rect((-0.018, 0.11), (0.018, 0.165), shaded(skin, 0.9))  # neck
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
        p.rect((-0.012, 0.106), (0.012, 0.110), shaded(skin, 0.75))
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
        brim = shaded(ident.hat_color, 0.8)
        if view == FRONT:
            p.ellipse((0.0, 0.052), 0.058, 0.011, brim)
        elif view in (LEFT, RIGHT):
            p.poly([(d * 0.02, 0.046), (d * 0.098, 0.052), (d * 0.096, 0.06), (d * 0.02, 0.058)], brim)
    elif ident.hat == "beanie":
        p.half_ellipse((hc[0], 0.058), 0.056, 0.062, ident.hat_color)
        p.rect((hc[0] - 0.056, 0.046), (hc[0] + 0.056, 0.062), shaded(ident.hat_color, 0.82), radius=0.006)


def draw_person(p: Painter, ident: Identity, pose: _Pose) -> None:
    """Draws a pedestrian (head at y = 0, ground at y = 1) in the pose's viewpoint, back to front:
    what is farther from the viewer first."""
    if pose.view in (FRONT, BACK):
        _draw_facing(p, ident, pose)
    else:
        _draw_profile(p, ident, pose)


# Front and back views -------------------------------------------------------------------------------


def _facing_legs(p: Painter, ident: Identity, pose: _Pose) -> None:
    """Walking towards / away from the camera shows as a foreshortened, slightly lifted leg."""
    hp = 0.106 * ident.width
    leg_off = hp - 0.042 * ident.width
    spread = 0.012 + pose.stride * 0.03
    for s in (-1, 1):
        lift = 0.025 * pose.stride / 0.36 if s == pose.phase else 0.0
        hip = (s * leg_off, 0.52)
        ankle = (s * (leg_off + spread), 0.955 - lift)
        knee = ((hip[0] + ankle[0]) / 2, (hip[1] + ankle[1]) / 2)
        _draw_leg(p, ident, hip, knee, ankle, 0, 1.0)


def _facing_lower(p: Painter, ident: Identity) -> None:
    """Skirt, or the hips of trousers and shorts."""
    hp = 0.106 * ident.width
    if ident.lower_type == "skirt":
        p.poly([(-hp, 0.46), (hp, 0.46), (hp * 1.55, 0.71), (-hp * 1.55, 0.71)], ident.lower_color)
    else:
        p.poly([(-hp, 0.46), (hp, 0.46), (hp * 1.02, 0.585), (0.0, 0.565), (-hp * 1.02, 0.585)], ident.lower_color)


def _facing_torso(p: Painter, ident: Identity, view: int) -> None:
    torso = _torso_front(ident)
    p.poly(torso, ident.upper_color)
    _draw_pattern(p, ident, torso, view, 0)


def _facing_bag(p: Painter, ident: Identity, view: int, bag_x: int) -> None:
    """A backpack (its body from the back, its straps from the front) or a shoulder bag on its strap."""
    bag, hp, sh = ident.bag_color, 0.106 * ident.width, 0.125 * ident.width
    if ident.bag == "backpack":
        if view == BACK:
            p.rect((-sh * 0.74, 0.19), (sh * 0.74, 0.44), bag, radius=0.03)
            p.rect((-sh * 0.5, 0.34), (sh * 0.5, 0.425), shaded(bag, 0.8), radius=0.015)
        else:
            for s in (-1, 1):
                p.limb((s * sh * 0.55, 0.158), (s * sh * 0.6, 0.36), 0.018, 0.018, fill=shaded(bag, 0.9))
    elif ident.bag == "shoulder":
        p.limb((-bag_x * sh * 0.6, 0.158), (bag_x * hp * 0.9, 0.43), 0.014, 0.014, fill=shaded(bag, 0.9))
        p.rect((bag_x * hp * 0.55, 0.41), (bag_x * (hp + 0.07), 0.53), bag, radius=0.01)


def _facing_arms(p: Painter, ident: Identity, pose: _Pose, bag_x: int) -> None:
    """Both arms, the handbag in the hand on the bag's side."""
    sh = 0.125 * ident.width
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
            _draw_handbag(p, ident.bag_color, wrist)


def _draw_facing(p: Painter, ident: Identity, pose: _Pose) -> None:
    # The body's right side is on the viewer's left in a front view.
    bag_x = ident.bag_side * (-1 if pose.view == FRONT else 1)
    _facing_legs(p, ident, pose)
    _facing_lower(p, ident)
    _facing_torso(p, ident, pose.view)
    _facing_bag(p, ident, pose.view, bag_x)
    _facing_arms(p, ident, pose, bag_x)
    _draw_head(p, ident, pose.view, 0)


def _draw_handbag(p: Painter, bag: Color, wrist: Point) -> None:
    p.limb((wrist[0], wrist[1] + 0.02), (wrist[0], wrist[1] + 0.05), 0.008, 0.008, fill=bag)
    p.rect((wrist[0] - 0.035, wrist[1] + 0.045), (wrist[0] + 0.035, wrist[1] + 0.11), bag, 0.01)


# Side views: d is the facing direction on screen; the viewer sees the body's right side when d = +1 ----


def _profile_arm(p: Painter, ident: Identity, pose: _Pose, d: int, sign: int, shade: float) -> Point:
    """One arm (``sign``: which phase of the swing); returns its wrist."""
    swing = pose.arm_swing * sign
    shoulder = (d * 0.006, 0.195)
    elbow = (shoulder[0] + d * math.sin(swing) * 0.16, shoulder[1] + math.cos(swing) * 0.16)
    fore = swing + pose.elbow * (1.4 if swing > 0 else 0.4)
    wrist = (elbow[0] + d * math.sin(fore) * 0.15, elbow[1] + math.cos(fore) * 0.15)
    _draw_arm(p, ident, shoulder, elbow, wrist, shade, sleeve_shade=0.84)
    return wrist


def _profile_leg(p: Painter, ident: Identity, pose: _Pose, d: int, sign: int, shade: float) -> None:
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


def _profile_lower(p: Painter, ident: Identity, d: int) -> None:
    bd = 0.072 * ident.width
    if ident.lower_type == "skirt":
        p.poly([(-d * bd, 0.46), (d * 0.085, 0.46), (d * 0.13, 0.71), (-d * 0.12, 0.71)], ident.lower_color)
    else:
        p.poly([(-d * bd, 0.46), (d * 0.08, 0.46), (d * 0.06, 0.575), (-d * 0.06, 0.575)], ident.lower_color)


def _profile_bag_straps(p: Painter, ident: Identity, d: int, near_bag: bool) -> None:
    """What of a bag shows in front of the torso: a backpack's strap, a shoulder bag's strap (and the bag
    itself on the near side)."""
    bag, bd = ident.bag_color, 0.072 * ident.width
    if ident.bag == "backpack":
        p.limb((d * 0.0, 0.158), (d * 0.045, 0.35), 0.016, 0.016, fill=shaded(bag, 0.9))
    elif ident.bag == "shoulder":
        p.limb((-d * bd * 0.4, 0.158), (d * 0.06, 0.4), 0.013, 0.013, fill=shaded(bag, 0.9))
        if near_bag:
            p.rect((-d * 0.05, 0.4), (d * 0.055, 0.52), bag, radius=0.01)


def _draw_profile(p: Painter, ident: Identity, pose: _Pose) -> None:
    view, bag = pose.view, ident.bag_color
    d = 1 if view == RIGHT else -1
    near_bag = ident.bag_side == d
    far_shade = 0.72
    far_wrist = _profile_arm(p, ident, pose, d, -pose.phase, far_shade)
    if ident.bag == "handbag" and not near_bag:
        w = far_wrist
        p.rect((w[0] - 0.03, w[1] + 0.04), (w[0] + 0.03, w[1] + 0.1), shaded(bag, far_shade), 0.01)
    _profile_leg(p, ident, pose, d, -pose.phase, 0.8)
    _profile_leg(p, ident, pose, d, pose.phase, 1.0)
    _profile_lower(p, ident, d)
    if ident.bag == "backpack":  # its body, behind the torso
        bd = 0.072 * ident.width
        p.rect((-d * bd * 0.8, 0.19), (-d * (bd + 0.085), 0.43), bag, radius=0.025)
    torso = _torso_side(ident, d)
    p.poly(torso, ident.upper_color)
    _draw_pattern(p, ident, torso, view, d)
    _profile_bag_straps(p, ident, d, near_bag)
    near_wrist = _profile_arm(p, ident, pose, d, pose.phase, 1.0)
    if ident.bag == "handbag" and near_bag:
        _draw_handbag(p, bag, near_wrist)
    _draw_head(p, ident, view, d)


def clip8(v: float) -> int:
    return int(min(255, max(0, round(v))))
