"""Market-1501, DukeMTMC-reID and Occluded-Duke: three folders, names carry id and camera.

Market-1501 names look like ``0002_c1s1_000451_03.jpg`` (id, camera 1-6, sequence, frame,
box); Duke names like ``0001_c2_f0046182.jpg`` (camera 1-8). Identity -1 is junk and dropped;
identity 0 (distractors) stays in the gallery only.
"""

from __future__ import annotations

import re
from pathlib import Path

from svllreid.data.datasets.common import drop_ids, parse_camera_folder, raise_if_problems, resolve_root
from svllreid.data.datasets.registry import register
from svllreid.data.types import EvalSplit, ReIDDataset, relabel, relabelled_names

__all__ = ["DUKE_PATTERN", "FOLDERS", "MARKET_PATTERN", "dukemtmc", "market1501", "occluded_duke", "parse_three_folder"]

FOLDERS = ("bounding_box_train", "query", "bounding_box_test")
MARKET_PATTERN = re.compile(r"^(-?\d+)_c(\d)s\d+_\d+_\d+")
DUKE_PATTERN = re.compile(r"^(-?\d+)_c(\d)_f\d+")
JUNK, DISTRACTOR = -1, 0


def parse_three_folder(
    root: str | Path, *, name: str, pattern: re.Pattern[str], num_cameras: int, aliases: tuple[str, ...]
) -> ReIDDataset:
    """Read a dataset in the Market-1501 folder layout."""
    base = resolve_root(root, FOLDERS, name, aliases)
    problems: list[str] = []
    train, query, gallery = (
        parse_camera_folder(base / folder, pattern, num_cameras=num_cameras, problems=problems) for folder in FOLDERS
    )
    raise_if_problems(name, base, problems)
    notes = []
    dropped = sum(s.pid in (JUNK, DISTRACTOR) for s in train + query) + sum(s.pid == JUNK for s in gallery)
    if dropped:
        notes.append(f"{dropped} junk (-1) or distractor (0) images dropped from train/query/gallery")
    return ReIDDataset(
        name=name,
        root=str(base),
        kind="person",
        train=relabel(drop_ids(train, {JUNK, DISTRACTOR})),
        train_names=relabelled_names(drop_ids(train, {JUNK, DISTRACTOR})),
        splits=[EvalSplit("default", drop_ids(query, {JUNK, DISTRACTOR}), drop_ids(gallery, {JUNK}))],
        protocol="camera",
        num_cameras=num_cameras,
        notes=notes,
    )


@register("market1501", kind="person", description="Market-1501 (6 cameras)")
def market1501(root: str | Path) -> ReIDDataset:
    return parse_three_folder(
        root, name="market1501", pattern=MARKET_PATTERN, num_cameras=6, aliases=("Market-1501-v15.09.15", "Market-1501")
    )


@register("dukemtmc", kind="person", description="DukeMTMC-reID (8 cameras)")
def dukemtmc(root: str | Path) -> ReIDDataset:
    return parse_three_folder(root, name="dukemtmc", pattern=DUKE_PATTERN, num_cameras=8, aliases=("DukeMTMC-reID",))


@register("occluded_duke", kind="person", description="Occluded-Duke (Duke layout, occluded queries)")
def occluded_duke(root: str | Path) -> ReIDDataset:
    return parse_three_folder(
        root, name="occluded_duke", pattern=DUKE_PATTERN, num_cameras=8, aliases=("Occluded_Duke", "Occluded-Duke")
    )
