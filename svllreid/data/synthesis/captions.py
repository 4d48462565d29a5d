"""Captions of synthetic pedestrians: what one view of a person shows, in varied words.

:func:`describe` turns the named attributes of a drawn person and the viewpoint of one image into
an English sentence or two. It says only what that view shows, as the drawing code draws it:

- a backpack is a bag on the back in back and side views, but only two straps from the front;
- a logo is on the chest, so only a front view shows it; an open jacket shows its inner shirt
  from the front and a strip of it from the side, and the back of a jacket is plain;
- in a side view a shoulder bag on the far side is hidden (its strap is not);
- long hair, hats, sleeves, trousers, shorts, skirts and shoes show in every view.

Phrasing varies over several templates, word orders and synonyms drawn from the given random
generator, so a caption is deterministic for a seed. Only the standard library and numpy are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["VIEWS", "describe", "visible_parts"]

VIEWS = ("front", "back", "left", "right")

_PERSON = ("person", "pedestrian", "walker", "man or woman")
_TOP_NOUN = {True: ("long-sleeved top", "long-sleeved shirt", "sweater"), False: ("t-shirt", "short-sleeved top")}
_BOTTOM_NOUN = {"trousers": ("trousers", "pants"), "shorts": ("shorts",), "skirt": ("skirt",)}


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def visible_parts(attrs: Mapping[str, Any], view: str) -> dict[str, Any]:
    """What ``view`` of a person with ``attrs`` shows, as plain facts (the caption's content).

    Keys: ``hair`` (None when bald), ``hair_length``, ``hat``, ``top``, ``pattern`` (the pattern
    this view shows: ``plain`` for a jacket's back or a logo out of sight), ``top_second`` (its
    second colour, or None), ``sleeves``, ``bottom``, ``bottom_type``, ``shoes``, ``bag`` (``None``,
    ``backpack``, ``backpack straps``, ``shoulder bag``, ``shoulder strap`` or ``handbag``),
    ``bag_color`` and ``bag_side`` (None where the side cannot be told).
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    side_view = view in ("left", "right")
    # In a side view the camera sees the person's right side when they face right on screen.
    near_side = ("right" if view == "right" else "left") if side_view else None
    pattern = attrs["upper_pattern"]
    if pattern == "logo" and view != "front":
        pattern = "plain"
    if pattern == "jacket" and view == "back":
        pattern = "plain"
    parts: dict[str, Any] = {
        "hair": None if attrs["hair_style"] == "bald" else attrs["hair_color"],
        "hair_length": attrs["hair_style"],
        "hat": None if attrs["hat"] == "none" else (attrs["hat_color"], attrs["hat"]),
        "top": attrs["upper_color"],
        "pattern": pattern,
        "top_second": attrs["upper_color2"] if pattern != "plain" else None,
        "sleeves": "long" if attrs["long_sleeves"] else "short",
        "bottom": attrs["lower_color"],
        "bottom_type": attrs["lower_type"],
        "shoes": attrs["shoe_color"],
        "bag": None,
        "bag_color": None,
        "bag_side": None,
    }
    bag, side = attrs["bag"], attrs["bag_side"]
    if bag == "backpack":
        parts["bag"] = "backpack straps" if view == "front" else "backpack"
        parts["bag_color"] = attrs["bag_color"]
    elif bag == "shoulder":
        if side_view and side != near_side:
            parts["bag"] = "shoulder strap"  # the bag hangs on the far side
        else:
            parts["bag"], parts["bag_side"] = "shoulder bag", side
        parts["bag_color"] = attrs["bag_color"]
    elif bag == "handbag":
        parts["bag"], parts["bag_color"], parts["bag_side"] = "handbag", attrs["bag_color"], side
    return parts


def _hair_phrase(parts: Mapping[str, Any], rng: np.random.Generator) -> str:
    if parts["hair"] is None:
        return _choice(rng, ("a bald head", "no hair"))
    length = parts["hair_length"]
    if rng.random() < 0.5:
        return f"{length} {parts['hair']} hair"
    return f"{parts['hair']} hair that is {length}"


def _top_phrase(parts: Mapping[str, Any], rng: np.random.Generator) -> str:
    noun = _choice(rng, _TOP_NOUN[parts["sleeves"] == "long"])
    colour, second, pattern = parts["top"], parts["top_second"], parts["pattern"]
    if pattern == "hstripes":
        return f"{_article(colour)} {noun} with horizontal {second} stripes"
    if pattern == "vstripes":
        return f"{_article(colour)} {noun} with vertical {second} stripes"
    if pattern == "jacket":
        return f"an open {colour} jacket over {_article(second)} shirt"
    if pattern == "logo":
        return f"{_article(colour)} {noun} with {_article(second)} logo on the chest"
    return f"{_article(colour)} {noun}"


def _bottom_phrase(parts: Mapping[str, Any], rng: np.random.Generator) -> str:
    noun = _choice(rng, _BOTTOM_NOUN[parts["bottom_type"]])
    colour = parts["bottom"]
    return f"{colour} {noun}" if noun.endswith("s") else f"{_article(colour)} {noun}"


def _shoes_phrase(parts: Mapping[str, Any], rng: np.random.Generator) -> str:
    return f"{parts['shoes']} {_choice(rng, ('shoes', 'sneakers'))}"


def _bag_phrase(parts: Mapping[str, Any], rng: np.random.Generator) -> str | None:
    bag, colour, side = parts["bag"], parts["bag_color"], parts["bag_side"]
    if bag is None:
        return None
    if bag == "backpack":
        return f"{_article(colour)} backpack"
    if bag == "backpack straps":
        return f"the {colour} straps of a backpack"
    if bag == "shoulder strap":
        return f"{_article(colour)} bag strap across the body"
    if bag == "shoulder bag":
        return f"{_article(colour)} bag on the {side} shoulder"
    return f"{_article(colour)} handbag in the {side} hand"


def describe(attrs: Mapping[str, Any], view: str, rng: np.random.Generator) -> str:
    """A caption of one image: ``view`` (``front``/``back``/``left``/``right``) of a person.

    Args:
        attrs: the person's attributes by name (colours as words), as the generator draws them:
            ``hair_color``, ``hair_style`` (short/long/bald), ``hat`` (none/cap/beanie),
            ``hat_color``, ``upper_color``, ``upper_color2``, ``upper_pattern``
            (plain/hstripes/vstripes/jacket/logo), ``long_sleeves``, ``lower_color``,
            ``lower_type`` (trousers/shorts/skirt), ``shoe_color``, ``bag``
            (none/backpack/shoulder/handbag), ``bag_color``, ``bag_side`` (left/right: the person's).
        view: the viewpoint of the image.
        rng: the image's own generator; the same state gives the same caption.
    """
    parts = visible_parts(attrs, view)
    person = _choice(rng, _PERSON)
    hair, top, bottom = _hair_phrase(parts, rng), _top_phrase(parts, rng), _bottom_phrase(parts, rng)
    shoes, bag = _shoes_phrase(parts, rng), _bag_phrase(parts, rng)
    hat = f"{_article(parts['hat'][0])} {parts['hat'][1]}" if parts["hat"] else None
    clothes = [top, bottom, shoes]
    if rng.random() < 0.5:
        clothes[0], clothes[1] = clothes[1], clothes[0]
    extras = [x for x in (hat, bag) if x]
    if len(extras) == 2 and rng.random() < 0.5:
        extras.reverse()
    template = int(rng.integers(4))
    if template == 0:
        text = f"{_article(person).capitalize()} with {hair}, wearing {_join(clothes)}."
        if extras:
            text += f" The {person} has {_join(extras)}."
    elif template == 1:
        text = f"The {person} wears {_join(clothes + ([hat] if hat else []))} and has {hair}."
        if bag:
            text += f" {_cap(_choice(rng, ('They carry', 'They have')))} {bag}."
    elif template == 2:
        text = f"{_article(person).capitalize()} in {_join(clothes)}"
        text += (
            f", with {_join([hair, *extras])}."
            if rng.random() < 0.5
            else f". {_cap(hair)}" + (f", {_join(extras)}." if extras else ".")
        )
    else:
        text = f"{_cap(hair)}; {_join(clothes)}" + (f"; {_join(extras)}." if extras else ".")
    return text


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]
