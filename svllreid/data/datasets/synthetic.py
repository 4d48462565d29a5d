"""The ``synthetic`` dataset: procedurally drawn people, generated on first use and cached.

It is written in the Market-1501 layout and read back with the Market-1501 parser, so the code
path is the one real data takes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from svllreid.data.datasets.common import occlusion_option
from svllreid.data.datasets.market1501 import MARKET_PATTERN, parse_three_folder
from svllreid.data.datasets.registry import register
from svllreid.data.synthesis import (
    CAPTIONS_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    generate_synthetic,
    synthetic_matches,
)
from svllreid.data.synthesis.occluders import OCCLUDER_VERSION, gallery_share
from svllreid.data.types import ReIDDataset
from svllreid.errors import DatasetError
from svllreid.fileio import cache_dir

__all__ = ["ensure_synthetic", "synthetic"]

log = logging.getLogger(__name__)


def ensure_synthetic(
    root: str | Path,
    *,
    ids: int,
    cameras: int,
    images_per_camera: int,
    seed: int,
    train_ids: int | None = None,
    occluded_queries: tuple[float, float] | None = None,
    occluded_gallery: float = 0.1,
) -> Path:
    """Return a folder holding the synthetic dataset of these parameters, generating it if needed.

    Generation goes to a temporary sibling folder that is renamed into place, so concurrent
    callers (several training processes) and interrupted runs never leave a partial dataset.
    """
    params: dict[str, Any] = {  # keyword arguments of synthetic_matches and generate_synthetic
        "num_ids": ids,
        "num_cameras": cameras,
        "images_per_camera": images_per_camera,
        "seed": seed,
        "train_ids": train_ids,
    }
    occluded = ""
    if occluded_queries is not None:
        params |= {"occluded_queries": occluded_queries, "occluded_gallery": occluded_gallery}
        low, high = (round(100 * v, 2) for v in occluded_queries)
        occluded = f"-occ{low:g}-{high:g}g{round(100 * occluded_gallery, 2):g}"
    held_out = f"-t{train_ids}" if train_ids is not None else ""
    name = f"synthetic-{ids}x{cameras}x{images_per_camera}-s{seed}{held_out}{occluded}"
    target = Path(root).expanduser() if root else cache_dir() / name
    if synthetic_matches(target, **params):
        return target
    outdated = _written_by_older_generator(target, params)
    if outdated:
        log.info("synthetic: %s was written by an older generator or older occluders; drawing it again", target)
    elif target.exists() and any(target.iterdir()):
        raise DatasetError(
            f"synthetic: {target} already holds other data (no synthetic.json with ids={ids}, "
            f"cameras={cameras}, images_per_camera={images_per_camera}, seed={seed}); "
            "choose an empty or new folder, or leave the root empty to use the cache"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        generate_synthetic(staging, **params)
        if target.exists():
            if outdated:
                shutil.rmtree(target)
            else:
                target.rmdir()  # empty (checked above)
        staging.rename(target)
    except OSError:
        if not synthetic_matches(target, **params):  # another process did not win the race either
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _written_by_older_generator(target: Path, params: dict) -> bool:
    """Whether ``target`` holds this generator's output for the same parameters, from an older version or
    with older occluders (safe to replace: it can be drawn again at any time)."""
    try:
        meta = json.loads((target / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        return False
    same = all(meta.get(k) == params[k] for k in ("num_ids", "num_cameras", "images_per_camera", "seed"))
    older_occluders = "occluded_queries" in meta and meta.get("occluder_version") != OCCLUDER_VERSION
    return same and (int(meta.get("version", 0)) < FORMAT_VERSION or older_occluders)


@register("synthetic", kind="person", description="drawn people in the Market-1501 layout, generated on demand")
def synthetic(
    root: str | Path = "",
    *,
    ids: int = 100,
    cameras: int = 6,
    images_per_camera: int = 4,
    seed: int = 0,
    occluded_queries: Any = None,
    occluded_gallery: float = 0.1,
) -> ReIDDataset:
    """Args:
    ids, cameras, images_per_camera, seed: generator parameters (see ``svllreid data synth``).
    root: folder to generate into / read from; empty uses the cache folder.
    occluded_queries: Occluded-Duke style test images, e.g. ``[0.2, 0.5]`` or ``"20-50%"``: every query has
        a natural occluder (another person, a car, a pole, a bag, a bush) over that fraction of the person,
        and ``occluded_gallery`` of the gallery too; the training images stay as without it.
    occluded_gallery: the share of gallery images occluded with ``occluded_queries`` (default 0.1).
    """
    cover = occlusion_option("synthetic", occluded_queries)
    try:
        share = gallery_share(occluded_gallery)
    except ValueError as err:
        raise DatasetError(f"synthetic: {err}") from None
    folder = ensure_synthetic(
        root,
        ids=int(ids),
        cameras=int(cameras),
        images_per_camera=int(images_per_camera),
        seed=int(seed),
        occluded_queries=cover,
        occluded_gallery=share,
    )
    dataset = parse_three_folder(folder, name="synthetic", pattern=MARKET_PATTERN, num_cameras=int(cameras), aliases=())
    if cover is None:
        return dataset
    occluded = frozenset(
        str(Path(dataset.root) / record["path"])  # the resolved root the sample paths are under
        for record in (json.loads(line) for line in (folder / CAPTIONS_FILE).read_text().splitlines() if line)
        if "occluder" in record
    )
    note = (
        f"occluded queries: every query has an occluder over {cover[0]:.0%}-{cover[1]:.0%} of the person, and "
        f"{sum(1 for s in dataset.gallery if str(s.path) in occluded)} of {len(dataset.gallery)} gallery images"
    )
    return dataclasses.replace(
        dataset, occluded=occluded, occlusion=(cover[0], cover[1], int(seed)), notes=[*dataset.notes, note]
    )
