"""What an authors' checkpoint does not tell about itself, from a config.

``svllreid convert --config`` takes one of three things:

- the name of a released checkpoint's setting, METHOD/DATASET (``svllreid convert --list``; the table is
  ``svllreid/resources/released.yaml``);
- the authors' own YAML config (their ``configs/*.yml``: ``MODEL``, ``INPUT``, ``DATASETS``, ``TEST``
  sections), read as their code reads it, their defaults included;
- a YAML file of :class:`ConversionSettings` fields (``arch``, ``image_size``, ``stride``, ``sie``,
  ``sie_coef``, ``identities``, ``cameras``, ``views``, ``pixel_mean``, ``pixel_std``, ``dataset``, ``kind``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from svllreid.errors import ConversionError

__all__ = [
    "ConversionSettings",
    "authors_dataset_name",
    "authors_settings",
    "load_settings",
    "released",
    "released_names",
]

RELEASED = Path(__file__).resolve().parents[1] / "resources" / "released.yaml"
#: The authors' code's defaults where a config of theirs leaves a value out (config/defaults.py).
_AUTHORS_DEFAULTS: dict[str, Any] = {
    "STRIDE_SIZE": [16, 16],
    "SIE_COE": 3.0,
    "NECK_FEAT": "after",
    "SIZE_TEST": [256, 128],
}


@dataclass(frozen=True)
class ConversionSettings:
    """Facts of a checkpoint from a config; None where the config does not say. ``sie`` is a mode,
    ``"none"``, or ``"table"`` (the file's SIE table decides between camera, view and both, by its rows)."""

    origin: str
    arch: str | None = None
    image_size: tuple[int, int] | None = None
    stride: int | None = None
    sie: str | None = None
    sie_coef: float | None = None
    identities: int | None = None
    cameras: int | None = None
    views: int | None = None
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None
    dataset: str | None = None
    kind: str | None = None
    text: bool | None = None
    url: str | None = None
    notes: tuple[str, ...] = ()

    def given(self) -> dict[str, Any]:
        """The facts this config states (for the conversion's record)."""
        skip = {"origin", "notes", "url"}
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in skip and getattr(self, f.name) is not None
        }


@cache
def _table() -> dict[str, Any]:
    return yaml.safe_load(RELEASED.read_text(encoding="utf-8"))


def released_names() -> list[str]:
    """Every released checkpoint's setting name, METHOD/DATASET."""
    return list(_table()["releases"])


def _datasets() -> dict[str, dict[str, Any]]:
    """The authors' dataset names -> the facts of released.yaml (svllreid name, kind, size, ids, cameras, views)."""
    return dict(_table()["datasets"])


def authors_dataset_name(svllreid_name: str) -> str | None:
    """The authors' name of a dataset svllreid knows by ``svllreid_name`` (None: their code has no loader)."""
    return next((theirs for theirs, facts in _datasets().items() if facts["svllreid"] == svllreid_name), None)


def _dataset_facts(name: str) -> dict[str, Any] | None:
    lowered = {k.lower(): v for k, v in _datasets().items()}
    return lowered.get(name.strip().strip("()'\" ").lower())


def released(name: str) -> ConversionSettings:
    """The settings of the released checkpoint ``name`` (METHOD/DATASET).

    Raises:
        ConversionError: an unknown name (the message lists the known ones).
    """
    table = _table()
    if name not in table["releases"]:
        known = ", ".join(released_names())
        raise ConversionError(f"no released setting named {name!r}; the names are: {known}")
    method, dataset = name.rsplit("/", 1)
    spec: dict[str, Any] = table["methods"][method]
    facts: dict[str, Any] = table["datasets"][dataset]
    pixel: dict[str, Any] = table["pixel"][spec["pixel"]]
    return ConversionSettings(
        origin=f"released setting {name}",
        arch=spec["arch"],
        image_size=(int(facts["image_size"][0]), int(facts["image_size"][1])),
        stride=spec.get("stride"),
        sie=spec["sie"],
        sie_coef=spec.get("sie_coef"),
        identities=int(facts["identities"]),
        cameras=int(facts["cameras"]),
        views=int(facts["views"]),
        pixel_mean=tuple(pixel["mean"]),
        pixel_std=tuple(pixel["std"]),
        dataset=facts["svllreid"],
        kind=facts["kind"],
        text=spec.get("text", True),
        url=table["releases"][name],
    )


def authors_settings(values: dict[str, Any], origin: str) -> ConversionSettings:
    """Settings from one of the authors' yacs YAML configs (their defaults where it is silent)."""
    model: dict[str, Any] = values.get("MODEL") or {}
    inputs: dict[str, Any] = values.get("INPUT") or {}
    datasets: dict[str, Any] = values.get("DATASETS") or {}
    test: dict[str, Any] = values.get("TEST") or {}
    notes = []
    arch = model.get("NAME")
    size = inputs.get("SIZE_TEST") or inputs.get("SIZE_TRAIN") or _AUTHORS_DEFAULTS["SIZE_TEST"]
    stride = (model.get("STRIDE_SIZE") or _AUTHORS_DEFAULTS["STRIDE_SIZE"])[0]
    camera, view = bool(model.get("SIE_CAMERA", False)), bool(model.get("SIE_VIEW", False))
    sie = {(True, True): "camera_view", (True, False): "camera", (False, True): "view"}.get((camera, view), "none")
    coef = model.get("SIE_COE")
    if sie != "none" and coef is None:
        coef = _AUTHORS_DEFAULTS["SIE_COE"]
        notes.append(f"MODEL.SIE_COE is not in {origin}: the authors' default {coef} is used, as their code would")
    if str(test.get("NECK_FEAT", _AUTHORS_DEFAULTS["NECK_FEAT"])) != "before":
        notes.append(
            "TEST.NECK_FEAT is 'after' in this config; svllreid's features are taken before the BNNecks, as the "
            "authors' released configs test ('before')"
        )
    facts = _dataset_facts(str(datasets.get("NAMES", ""))) if datasets.get("NAMES") else None
    mean, std = inputs.get("PIXEL_MEAN"), inputs.get("PIXEL_STD")
    return ConversionSettings(
        origin=origin,
        arch=str(arch) if arch else None,
        image_size=(int(size[0]), int(size[1])),
        stride=int(stride) if arch != "RN50" else None,
        sie=sie,
        sie_coef=float(coef) if coef is not None else None,
        identities=facts["identities"] if facts else None,
        cameras=facts["cameras"] if facts else None,
        views=facts["views"] if facts else None,
        pixel_mean=tuple(float(v) for v in mean) if mean else None,
        pixel_std=tuple(float(v) for v in std) if std else None,
        dataset=facts["svllreid"] if facts else None,
        kind=facts["kind"] if facts else None,
        notes=tuple(notes),
    )


_OWN_FIELDS = {f.name for f in dataclasses.fields(ConversionSettings)} - {"origin", "notes", "url"}


def _own_settings(values: dict[str, Any], origin: str) -> ConversionSettings:
    unknown = sorted(set(values) - _OWN_FIELDS)
    if unknown:
        raise ConversionError(
            f"{origin}: unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(sorted(_OWN_FIELDS))} "
            "(or pass the authors' own config, or a released setting's name)"
        )
    fields = {key: _checked(key, value, origin) for key, value in values.items() if value is not None}
    return ConversionSettings(origin=origin, **fields)


#: Each setting's check and what it must be (for the message).
_SHAPES: dict[str, tuple[Any, str]] = {
    "arch": (lambda v: isinstance(v, str), "an open_clip architecture name, e.g. ViT-B-16"),
    "image_size": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v),
        "[height, width], e.g. [256, 128]",
    ),
    "stride": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "sie": (lambda v: v in ("none", "camera", "view", "camera_view", "table"), "none, camera, view or camera_view"),
    "sie_coef": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number, e.g. 1.0"),
    "identities": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "cameras": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "views": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "pixel_mean": (
        lambda v: isinstance(v, list) and len(v) == 3 and all(isinstance(x, int | float) for x in v),
        "three numbers, e.g. [0.5, 0.5, 0.5]",
    ),
    "pixel_std": (
        lambda v: isinstance(v, list) and len(v) == 3 and all(isinstance(x, int | float) and x > 0 for x in v),
        "three positive numbers, e.g. [0.5, 0.5, 0.5]",
    ),
    "dataset": (lambda v: isinstance(v, str), "svllreid's dataset name, e.g. market1501"),
    "kind": (lambda v: v in ("person", "vehicle"), "person or vehicle"),
    "text": (lambda v: isinstance(v, bool), "true or false"),
}


def _checked(key: str, value: Any, origin: str) -> Any:
    check, wanted = _SHAPES[key]
    if not check(value):
        raise ConversionError(f"{origin}: {key} is {value!r}; it must be {wanted}")
    return tuple(value) if isinstance(value, list) else value


def load_settings(config: str | None) -> ConversionSettings | None:
    """The settings ``--config`` names: a released setting's name, the authors' YAML config, or a file of
    :class:`ConversionSettings` fields. None without a config.

    Raises:
        ConversionError: neither a known name nor a readable YAML file of either kind.
    """
    if config is None:
        return None
    if config in _table()["releases"]:
        return released(config)
    path = Path(config).expanduser()
    if not path.is_file():
        raise ConversionError(
            f"--config {config}: neither a released setting (see 'svllreid convert --list') nor a file. Pass a "
            "name like clip-reid/vit-sie-olp/msmt17, the authors' config (configs/person/vit_clipreid.yml) or a "
            "YAML file of settings"
        )
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path} is not a YAML file: {err}") from None
    if not isinstance(values, dict):
        raise ConversionError(f"{path} does not hold settings (a YAML mapping)")
    if {"MODEL", "INPUT"} & set(values):
        return authors_settings(values, str(path))
    return _own_settings(values, str(path))
