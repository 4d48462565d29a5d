"""VeRi-776: three folders, names like ``0001_c001_00016450_0.jpg`` (cameras 1-20).

Viewpoint labels are optional: ``keypoint_train.txt`` (training images) and
``keypoint_test.txt`` (query and test images), one line per image whose first field is the
image path and last field the viewpoint 0-7. Without them the dataset is camera-only. Unlike
the reference code, an image without a viewpoint label is kept (view unknown, -1) unless
``drop_unlabelled_views`` asks for the reference behaviour.
"""

from __future__ import annotations

import re
from pathlib import Path

from svllreid.data.datasets.common import parse_camera_folder, raise_if_problems, resolve_root
from svllreid.data.datasets.registry import register
from svllreid.data.types import EvalSplit, ReIDDataset, Sample, relabel, relabelled_names
from svllreid.errors import DatasetError

__all__ = ["FOLDERS", "NUM_CAMERAS", "NUM_VIEWS", "PATTERN", "VIEW_FILES", "read_view_file", "veri776"]

FOLDERS = ("image_train", "image_query", "image_test")
PATTERN = re.compile(r"^(-?\d+)_c(\d+)_")
NUM_CAMERAS = 20
NUM_VIEWS = 8
VIEW_FILES = ("keypoint_train.txt", "keypoint_test.txt")


def read_view_file(path: Path, problems: list[str]) -> dict[str, int]:
    """Map image file name -> viewpoint id from one keypoint/viewpoint label file."""
    views: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[-1].isdigit() or not 0 <= int(fields[-1]) < NUM_VIEWS:
            problems.append(f"{path}:{number}: expected '<image path> ... <view 0-{NUM_VIEWS - 1}>'")
            continue
        views[Path(fields[0]).name] = int(fields[-1])
    return views


@register("veri776", kind="vehicle", description="VeRi-776 (20 cameras, optional viewpoint label files)")
def veri776(root: str | Path, view_dir: str = "", drop_unlabelled_views: bool = False) -> ReIDDataset:
    """Args:
    view_dir: folder holding keypoint_train.txt / keypoint_test.txt (default: the dataset root).
    drop_unlabelled_views: drop images without a viewpoint label, as the reference code does.
    """
    base = resolve_root(root, FOLDERS, "veri776", ("VeRi", "VeRi-776"))
    label_dir = Path(view_dir).expanduser() if view_dir else base
    present = [(label_dir / name).is_file() for name in VIEW_FILES]
    if view_dir and not all(present):
        missing = [str(label_dir / n) for n, ok in zip(VIEW_FILES, present, strict=True) if not ok]
        raise DatasetError("veri776: viewpoint label files not found:", missing)
    if any(present) and not all(present):
        missing = [str(label_dir / n) for n, ok in zip(VIEW_FILES, present, strict=True) if not ok]
        raise DatasetError("veri776: only some viewpoint label files are present; missing:", missing)
    problems: list[str] = []
    has_views = all(present)
    view_maps = [read_view_file(label_dir / name, problems) for name in VIEW_FILES] if has_views else [{}, {}]
    splits: list[list[Sample]] = []
    for folder, views in zip(FOLDERS, (view_maps[0], view_maps[1], view_maps[1]), strict=True):
        lookup = (lambda p, v=views: v.get(p.name, -1)) if has_views else None
        splits.append(
            parse_camera_folder(base / folder, PATTERN, num_cameras=NUM_CAMERAS, problems=problems, views=lookup)
        )
    raise_if_problems("veri776", base, problems)
    notes = []
    if has_views:
        unlabelled = sum(s.viewid < 0 for split in splits for s in split)
        if unlabelled and drop_unlabelled_views:
            splits = [[s for s in split if s.viewid >= 0] for split in splits]
            notes.append(f"{unlabelled} images without a viewpoint label dropped (drop_unlabelled_views)")
        elif unlabelled:
            notes.append(f"{unlabelled} images have no viewpoint label; kept with view unknown (-1)")
    else:
        notes.append("no viewpoint label files found; camera-only side information")
    train, query, gallery = splits
    return ReIDDataset(
        name="veri776",
        root=str(base),
        kind="vehicle",
        train=relabel(train),
        train_names=relabelled_names(train),
        splits=[EvalSplit("default", query, gallery)],
        protocol="camera",
        num_cameras=NUM_CAMERAS,
        num_views=NUM_VIEWS if has_views else 0,
        notes=notes,
    )
