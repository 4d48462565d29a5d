"""Occluded queries made from photos: natural occluders pasted onto copies of the query images of a split,
Occluded-Duke style, while the gallery keeps the untouched originals.

:func:`occlude_queries` is what the ``occluded_queries`` option of a dataset (``pku``) and the validation
split of such a dataset use. The person is taken to fill the crop (a photo has no mask), so the covered
fraction is that of the crop. The occluders are the shapes of :mod:`svllreid.data.synthesis.occluders`
and strips of photos of *other* identities (the caller's ``photos``, which never hold a query's own
identity). The copies are written once, as PNG, to a cache folder named by everything they depend on;
the folder appears whole (written aside and renamed) or not at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from svllreid.data.synthesis.occluders import occlude
from svllreid.data.types import EvalSplit, Sample
from svllreid.fileio import atomic_write_text, cache_dir

__all__ = ["OCCLUSION_FILE", "occlude_queries"]

#: Bump when the pasted occluders change, so cached copies are made again.
VERSION = 3
#: Per copied query: its source, the occluder kind and the covered fraction of the crop.
OCCLUSION_FILE = "occlusion.json"
#: At most this many photos of other identities are opened to cut occluding people from.
MAX_PHOTOS = 48


def _fingerprint(paths: Sequence[str]) -> list[tuple[str, int, int]]:
    out = []
    for path in paths:
        stat = Path(path).stat()
        out.append((path, stat.st_size, stat.st_mtime_ns))
    return out


def _image_rng(seed: int, relative: str) -> np.random.Generator:
    # Named by the file's path inside the dataset, not its position or where the dataset lives, so one
    # query's occluder depends neither on the others nor on the machine.
    return np.random.default_rng([seed, zlib.crc32(relative.encode())])


def occlude_queries(
    queries: Sequence[Sample],
    cover: tuple[float, float],
    seed: int,
    photos: Sequence[str],
    *,
    label: str,
    root: str,
) -> tuple[list[Sample], dict[str, dict[str, object]]]:
    """Occluded copies of ``queries``: the same samples with paths to copies that carry an occluder.

    Args:
        queries: the query samples; duplicates (one image in several splits) are copied once.
        cover: (low, high) fraction of the crop each occluder covers.
        seed: the seed of every random choice (which occluder, where, how big).
        photos: images of other identities to cut occluding people from (none of the queries' identities).
        label: a readable prefix of the cache folder's name.
        root: the dataset's folder: each occluder is drawn from the seed and the image's path inside it.

    Returns:
        The copied samples, in order, and per copy path its ``{"source", "occluder", "coverage"}`` (and
        ``"photo"``, the photo an occluding person was cut from).
    """
    sources = sorted({s.path for s in queries})
    chosen = sorted(photos)
    if len(chosen) > MAX_PHOTOS:
        picks = np.random.default_rng([seed, len(chosen)]).choice(len(chosen), size=MAX_PHOTOS, replace=False)
        chosen = [chosen[int(i)] for i in sorted(picks)]
    key = json.dumps(
        [VERSION, list(cover), seed, _fingerprint(sources), _fingerprint(chosen)], separators=(",", ":")
    ).encode()
    folder = cache_dir() / "occluded" / f"{label}-{hashlib.sha256(key).hexdigest()[:16]}"
    names = _copy_names(sources)
    records = _read_records(folder, names)
    if records is None:
        records = _write(folder, sources, names, cover, seed, chosen, root)
    renamed = {src: str(folder / names[src]) for src in sources}
    return [s._replace(path=renamed[s.path]) for s in queries], {str(folder / n): r for n, r in records.items()}


def _copy_names(sources: Sequence[str]) -> dict[str, str]:
    """A file name per source: its own stem when unique, else prefixed with its position."""
    stems = [Path(p).stem for p in sources]
    unique = len(set(stems)) == len(stems)
    return {
        p: (f"{stem}.png" if unique else f"{i:06d}_{stem}.png")
        for i, (p, stem) in enumerate(zip(sources, stems, strict=True))
    }


def _read_records(folder: Path, names: dict[str, str]) -> dict[str, dict[str, object]] | None:
    try:
        records = json.loads((folder / OCCLUSION_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(records, dict) or set(records) != set(names.values()):
        return None
    if not all((folder / name).is_file() for name in records):
        return None
    return records


def _open(path: str) -> Image.Image:
    # As the loaders read it (no EXIF rotation), so a copy lines up with its original in the gallery.
    with Image.open(path) as img:
        return img.convert("RGB")


def _write(
    folder: Path,
    sources: Sequence[str],
    names: dict[str, str],
    cover: tuple[float, float],
    seed: int,
    photos: Sequence[str],
    root: str,
) -> dict[str, dict[str, object]]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    occluders = [_open(p) for p in photos]
    records: dict[str, dict[str, object]] = {}
    try:
        for source in sources:
            image = _open(source).convert("RGBA")
            crop = np.ones((image.height, image.width), dtype=bool)
            rng = _image_rng(seed, Path(os.path.relpath(source, root)).as_posix())
            layer, occlusion = occlude(crop, cover, rng, photos=occluders)
            image.alpha_composite(layer)
            image.convert("RGB").save(staging / names[source], format="PNG")
            records[names[source]] = {
                "source": source,
                "occluder": occlusion.kind,
                "coverage": round(occlusion.coverage, 4),
            }
            if occlusion.photo is not None:
                records[names[source]]["photo"] = photos[occlusion.photo]
        atomic_write_text(staging / OCCLUSION_FILE, json.dumps(records, indent=1, sort_keys=True) + "\n")
        finished = _read_records(folder, names)
        if finished is not None:  # another process (a DDP rank) published it meanwhile
            return finished
        if folder.exists():  # an incomplete earlier copy (its records did not match); made again
            shutil.rmtree(folder)
        staging.rename(folder)
    except OSError:
        finished = _read_records(folder, names)
        if finished is None:  # another process did not finish it either
            raise
        return finished
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return records


def occluded_split(split: EvalSplit, queries: list[Sample]) -> EvalSplit:
    """``split`` with its queries replaced by their occluded copies, named so."""
    return dataclasses.replace(split, name=f"{split.name} (occluded queries)", query=queries)
