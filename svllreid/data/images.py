"""Lists of a user's own images: a folder (searched recursively) or a text file of paths."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svllreid.data.labels import identity_numbers, integer_names, regex_group
from svllreid.errors import DatasetError

__all__ = ["IMAGE_SUFFIXES", "FileLabels", "expand_image_arguments", "file_labels", "list_images"]

#: File name endings read as images (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _relative_parts(path: Path, base: Path) -> tuple[str, ...] | None:
    """The parts of ``path`` below ``base``: as written (made absolute), else with links resolved; None
    when it is below neither."""
    # Path.absolute() keeps links as they are (Path.resolve() follows them, which is the fallback).
    for resolve in (Path.absolute, Path.resolve):
        try:
            return resolve(path).relative_to(resolve(base)).parts
        except ValueError:
            continue
    return None


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


@dataclass(frozen=True)
class FileLabels:
    """Integer labels of image files and, where the files gave names, each id's name."""

    ids: np.ndarray
    names: dict[int, str] | None = None


def file_labels(
    paths: Sequence[str],
    *,
    what: str,
    pattern: str | None = None,
    root: str | Path | None = None,
    folders: bool = False,
) -> FileLabels | None:
    """Labels (``what``: "pid" or "camera") of image files, by the dataset layer's rules: from the name
    of each image's top folder under ``root`` (``folders``: the identity-folder layout), or from the file
    name by a regular expression (the group named ``pid`` / ``cam`` or ``id``, else the first group, else
    the whole match). Integer labels keep their value; names are numbered in sorted order
    (:func:`svllreid.data.labels.identity_numbers`) and kept, so that files extracted apart can be
    aligned by name (:func:`svllreid.metrics.feature_file.read_feature_pair`). None without a rule.

    Raises:
        ValueError: an invalid expression, a file name it does not match, or a file outside ``root``.
    """
    if folders:
        base = Path(root or ".").expanduser()
        texts = []
        for path in paths:
            # The path as listed first (a folder of symbolic links to photos kept elsewhere is read as it is
            # laid out), else with every link followed on both sides.
            parts = _relative_parts(Path(path).expanduser(), base)
            if parts is None:
                raise ValueError(f"{path} is not inside {base}; identity folders are read below --images")
            if len(parts) < 2:
                raise ValueError(
                    f"{path} lies directly in {base}: with --identity-folders every image sits in the folder of "
                    "its identity (--images DIR with DIR/<identity>/*.jpg)"
                )
            texts.append(parts[0])
    elif pattern:
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"--{what}-regex {pattern!r} is not a valid regular expression: {err}") from err
        texts = []
        group = "pid" if what == "pid" else "cam"
        for path in paths:
            match = regex.search(Path(path).name)
            if match is None:
                raise ValueError(f"--{what}-regex {pattern!r} does not match the file name {Path(path).name!r}")
            texts.append(regex_group(regex, match, group, "id"))
    else:
        return None
    numbers = identity_numbers(texts)
    ids = np.array([numbers[text] for text in texts], dtype=np.int64)
    names = None if integer_names(numbers) else {number: text for text, number in numbers.items()}
    return FileLabels(ids, names)
