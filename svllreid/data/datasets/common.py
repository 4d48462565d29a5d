"""Helpers shared by the dataset parsers: locating roots, listing images, parsing names."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from svllreid.data.images import IMAGE_SUFFIXES
from svllreid.data.synthesis.occluders import occlusion_range
from svllreid.data.types import Sample
from svllreid.errors import DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "drop_ids",
    "int_option",
    "list_images",
    "occlusion_option",
    "parse_camera_folder",
    "raise_if_problems",
    "resolve_root",
]

#: File name endings read as images by every parser, as by ``svllreid extract`` (case-insensitive).
IMAGE_EXTENSIONS = IMAGE_SUFFIXES


def resolve_root(root: str | Path, required: Sequence[str], dataset: str, aliases: Sequence[str] = ()) -> Path:
    """Find the folder that holds ``required`` entries: ``root`` itself or ``root/<alias>``.

    Raises:
        DatasetError: naming every expected entry that is missing and where it was looked for.
    """
    root = Path(root).expanduser()
    if not str(root) or not root.exists():
        raise DatasetError(
            f"{dataset}: dataset root {str(root)!r} does not exist; pass the folder that holds "
            f"{', '.join(required)} (e.g. --root /data/{dataset})"
        )
    if not root.is_dir():
        raise DatasetError(f"{dataset}: dataset root {root} is not a folder")
    candidates = [root, *(root / alias for alias in aliases)]
    for candidate in candidates:
        if all((candidate / entry).exists() for entry in required):
            return candidate.resolve()
    missing = [str(root / entry) for entry in required if not (root / entry).exists()]
    where = f" (also looked in {', '.join(str(root / a) for a in aliases)})" if aliases else ""
    raise DatasetError(f"{dataset}: expected layout not found under {root}{where}; missing:", missing)


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files directly inside ``folder`` (or, ``recursive``, anywhere below it), sorted by path."""
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def parse_camera_folder(
    folder: Path,
    pattern: re.Pattern[str],
    *,
    num_cameras: int,
    problems: list[str],
    views: Callable[[Path], int] | None = None,
) -> list[Sample]:
    """Parse every image of ``folder`` whose name gives ``(pid, camera)`` through ``pattern``.

    Camera numbers are 1-based in the names and become 0-based; a camera outside
    1..num_cameras and a name that does not match are recorded in ``problems``.
    """
    samples = []
    for path in list_images(folder):
        match = pattern.match(path.name)
        if match is None:
            problems.append(f"{path}: file name does not match the pattern {pattern.pattern!r}")
            continue
        pid, cam = int(match.group(1)), int(match.group(2))
        if not 1 <= cam <= num_cameras:
            problems.append(f"{path}: camera {cam} is outside 1..{num_cameras}")
            continue
        viewid = views(path) if views is not None else -1
        samples.append(Sample(str(path), pid, cam - 1, viewid))
    return samples


def drop_ids(samples: Iterable[Sample], ids: set[int]) -> list[Sample]:
    """Samples whose identity is not in ``ids`` (used for junk and distractor rules)."""
    return [s for s in samples if s.pid not in ids]


def raise_if_problems(dataset: str, root: Path, problems: list[str]) -> None:
    if problems:
        raise DatasetError(f"{dataset}: {len(problems)} problem(s) under {root}:", problems, counted=True)


def occlusion_option(dataset: str, value: Any) -> tuple[float, float] | None:
    """A dataset's ``occluded_queries`` option as (low, high), or None; a bad value is a DatasetError."""
    try:
        return occlusion_range(value)
    except ValueError as err:
        raise DatasetError(f"{dataset}: {err}") from None


def int_option(dataset: str, name: str, value: Any) -> int:
    """A dataset's integer option; anything else is a DatasetError that names it."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DatasetError(f"{dataset}: option {name} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise DatasetError(f"{dataset}: option {name} must be an integer, got {value!r}") from None
