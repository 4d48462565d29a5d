"""Lists of a user's own images: a folder (searched recursively) or a text file of paths."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from svllreid.errors import DatasetError

#: File name endings read as images (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(source: str | Path) -> list[str]:
    """The image files of a folder (recursively, sorted) or of a list file (one path per line).

    In a list file, blank lines and lines starting with ``#`` are skipped and relative paths are
    relative to the list file's folder; every listed file must exist.

    Raises:
        DatasetError: the source does not exist, holds no images, or lists missing files.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"{path} does not exist; pass a folder of images or a text file with one image path a line")
    if path.is_dir():
        images = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise DatasetError(
                f"no images in {path} (searched recursively for {', '.join(IMAGE_SUFFIXES)}); "
                "point to the folder that holds them"
            )
        return images
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{path} is not a text list of image paths (it is a binary file; pass its folder instead)"
        ) from err
    images = []
    missing: list[str] = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        image = Path(line).expanduser()
        image = image if image.is_absolute() else path.parent / image
        (images if image.is_file() else missing).append(str(image))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DatasetError(f"{path} lists {len(missing)} missing file(s): {', '.join(missing[:3])}{more}")
    if not images:
        raise DatasetError(f"{path} lists no images (one path a line; '#' starts a comment)")
    return images


def expand_image_arguments(sources: Sequence[str | Path]) -> list[str]:
    """Image paths from command-line arguments: each an image file, a folder of images (searched
    recursively, sorted) or a text file listing one image path a line (as :func:`list_images`)."""
    images: list[str] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir() or (path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES):
            images.extend(list_images(path))
        else:
            images.append(str(path))  # an image (a missing or unreadable one is reported when it is read)
    return images


def labels_from_file_names(paths: Sequence[str], pattern: str | None, what: str) -> np.ndarray | None:
    """Integer labels (``what``: "pid" or "camera") from the file names by a regular expression: its
    group named ``id``, else its first group, else the whole match. None without a pattern.

    Raises:
        ValueError: an invalid expression, or a file name in which it finds no integer (named).
    """
    if not pattern:
        return None
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"--{what}-regex {pattern!r} is not a valid regular expression: {err}") from err
    values = []
    for path in paths:
        match = regex.search(Path(path).name)
        group = None
        if match:
            which = "id" if "id" in regex.groupindex else (1 if regex.groups else 0)
            group = match.group(which)
        if group is None or not group.lstrip("-").isdigit():
            raise ValueError(f"--{what}-regex {pattern!r} finds no integer in the file name {Path(path).name!r}")
        values.append(int(group))
    return np.array(values, dtype=np.int64)
