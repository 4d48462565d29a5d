"""The PKU-Reid subset: ``images/<pid>_<camera>_<orientation>.jpg`` and ``split.json``.

``split.json`` lists disjoint ``train_ids`` and ``test_ids``. Evaluation has two directions:
queries from camera 01 against a gallery from camera 02, then the swap; the reported figure is
their mean. The orientation (1-8) becomes the viewpoint id.

The subset (74 identities, CC BY-NC-SA 4.0) is part of the source repository, in
``data/pku-reid-subset``: an empty root reads that copy from a checkout. The wheel leaves it out (its
license is not the code's).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from svllreid.data.datasets.common import int_option, list_images, occlusion_option, raise_if_problems, resolve_root
from svllreid.data.datasets.registry import register
from svllreid.data.occlusion import occlude_queries, occluded_split
from svllreid.data.types import EvalSplit, ReIDDataset, Sample, relabel, relabelled_names
from svllreid.errors import DatasetError

__all__ = ["CHECKOUT_ROOT", "NUM_CAMERAS", "NUM_VIEWS", "PATTERN", "default_root", "pku"]

PATTERN = re.compile(r"^(\d+)_(\d+)_(\d+)\.")
NUM_CAMERAS = 2
NUM_VIEWS = 8
#: The copy in a checkout of the source repository (absent from an installed wheel).
CHECKOUT_ROOT = Path(__file__).resolve().parents[3] / "data" / "pku-reid-subset"


def default_root() -> Path:
    """The repository's copy of the subset, for an empty root.

    Raises:
        DatasetError: svllreid runs from an installed wheel, which does not ship the images.
    """
    if (CHECKOUT_ROOT / "split.json").is_file():
        return CHECKOUT_ROOT
    raise DatasetError(
        "pku: no dataset root given, and this installation has no copy of the PKU-Reid subset (the wheel "
        "leaves it out: its CC BY-NC-SA 4.0 license is not the code's). Run from a checkout of the svllreid "
        "source repository, whose data/pku-reid-subset holds it, or pass --root FOLDER (data.root=FOLDER) "
        "with images/ and split.json"
    )


def _read_split(path: Path) -> tuple[set[int], set[int]]:
    try:
        split = json.loads(path.read_text())
        train, test = {int(i) for i in split["train_ids"]}, {int(i) for i in split["test_ids"]}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"pku: {path} must be JSON with lists 'train_ids' and 'test_ids' ({err})") from err
    if train & test:
        raise DatasetError(f"pku: {path}: identities in both train_ids and test_ids: {sorted(train & test)}")
    return train, test


@register(
    "pku",
    kind="person",
    description="PKU-Reid subset (2 cameras, split.json, two query directions)",
    own_data=True,
    default_root=default_root,
)
def pku(root: str | Path = "", *, occluded_queries: Any = None, occlusion_seed: int = 0) -> ReIDDataset:
    """Args:
    root: the folder with ``images/`` and ``split.json``; empty: the repository's copy (:func:`default_root`).
    occluded_queries: Occluded-Duke style queries, e.g. ``[0.2, 0.5]`` or ``"20-50%"``: every query of both
        directions is a copy with a natural occluder (a car, a pole, a bag, a bush, or a strip of a
        *training* identity's photo) covering that fraction of the crop; the gallery keeps the originals.
        The copies are made once into the cache (:mod:`svllreid.data.occlusion`).
    occlusion_seed: seed of the occluders.
    """
    cover = occlusion_option("pku", occluded_queries)
    seed = int_option("pku", "occlusion_seed", occlusion_seed)
    base = resolve_root(root if str(root) else default_root(), ("images", "split.json"), "pku", ("pku-reid-subset",))
    train_ids, test_ids = _read_split(base / "split.json")
    problems: list[str] = []
    samples = []
    for path in list_images(base / "images"):
        match = PATTERN.match(path.name)
        if match is None:
            problems.append(f"{path}: file name is not <pid>_<camera>_<orientation>.jpg")
            continue
        pid, cam, orientation = (int(g) for g in match.groups())
        if not 1 <= cam <= NUM_CAMERAS or not 1 <= orientation <= NUM_VIEWS:
            problems.append(f"{path}: camera must be 1-{NUM_CAMERAS} and orientation 1-{NUM_VIEWS}")
            continue
        samples.append(Sample(str(path), pid, cam - 1, orientation - 1))
    seen = {s.pid for s in samples}
    missing = sorted((train_ids | test_ids) - seen)
    if missing:
        problems.append(f"split.json names identities without images: {missing}")
    raise_if_problems("pku", base, problems)
    test = [s for s in samples if s.pid in test_ids]
    cam1 = [s for s in test if s.camid == 0]
    cam2 = [s for s in test if s.camid == 1]
    unused = len(seen - train_ids - test_ids)
    splits = [EvalSplit("camera 01 -> 02", cam1, cam2), EvalSplit("camera 02 -> 01", cam2, cam1)]
    occluded: frozenset[str] = frozenset()
    if cover is not None:
        train_paths = [s.path for s in samples if s.pid in train_ids]
        copies, records = occlude_queries(test, cover, seed, train_paths, label="pku", root=str(base))
        by_source = {s.path: c for s, c in zip(test, copies, strict=True)}
        splits = [occluded_split(split, [by_source[s.path] for s in split.query]) for split in splits]
        occluded = frozenset(records)
    return ReIDDataset(
        name="pku",
        root=str(base),
        kind="person",
        train=relabel([s for s in samples if s.pid in train_ids]),
        train_names=relabelled_names([s for s in samples if s.pid in train_ids]),
        splits=splits,
        protocol="camera",
        num_cameras=NUM_CAMERAS,
        num_views=NUM_VIEWS,
        notes=([f"{unused} identities not in split.json are ignored"] if unused else [])
        + (
            [f"occluded queries: every query is a copy with an occluder over {cover[0]:.0%}-{cover[1]:.0%} of it"]
            if cover is not None
            else []
        ),
        occluded=occluded,
        occlusion=None if cover is None else (cover[0], cover[1], seed),
    )
