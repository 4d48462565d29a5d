"""Planning the images of a synthetic dataset, drawing them in worker processes and writing them in the
Market-1501 layout with their captions and metadata: the public entry points."""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svllreid.data.synthesis.attributes import (
    TAG_CAPTION,
    TAG_DISTRACTOR,
    TAG_IMAGE,
    TAG_OCCLUDED_GALLERY,
    TAG_OCCLUDER,
    VIEW_NAMES,
    Identity,
    identity_attributes,
    identity_of,
    sample_identity,
    seeded_rng,
)
from svllreid.data.synthesis.captions import describe
from svllreid.data.synthesis.occluders import OCCLUDER_VERSION, gallery_share, occlusion_range
from svllreid.data.synthesis.scene import Camera, camera_of, cameras_of, render
from svllreid.fileio import atomic_write_text

__all__ = [
    "CAPTIONS_FILE",
    "DISTRACTOR_FRACTION",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_CAMERAS",
    "META_FILE",
    "PARTIAL_FILE",
    "PRETRAIN_WORLD",
    "SPLIT_DIRS",
    "SynthSummary",
    "default_train_ids",
    "generate_pretraining_world",
    "generate_synthetic",
    "synthetic_matches",
]

#: Version of the generator's output; bump it whenever the drawings or the layout change, so that
#: :func:`synthetic_matches` stops accepting folders written by an older generator.
FORMAT_VERSION = 2
FORMAT_NAME = "svllreid-synthetic-market1501"
META_FILE = "synthetic.json"
#: One JSON object per image: ``{"path", "pid", "camid", "view", "split", "caption"}`` (path relative).
CAPTIONS_FILE = "captions.jsonl"
PARTIAL_FILE = "synthetic.partial.json"
SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
MAX_CAMERAS = 9
#: The pretraining world: many captioned identities under a seed that no ReID set of the project uses
#: (the ReID sets use small seeds), so language-image pretraining never sees an evaluation identity.
#: Identities past ``train_ids`` are held out as its test split (zero-shot text-to-image evaluation).
PRETRAIN_WORLD: dict[str, int] = {
    "ids": 2400,
    "train_ids": 2000,
    "cameras": 6,
    "images_per_camera": 2,
    "seed": 7_000_001,
}
#: Distractors (pid 0000) added to the gallery, as a fraction of the gallery's identity images.
DISTRACTOR_FRACTION = 0.05

_MIN_SIZE = (32, 16)

# ----------------------------------------------------------------------------------------------------
# Planning and writing
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    split: str  # "train", "query" or "gallery"
    pid: int  # 0 for distractors
    cam: int  # 1-based
    index: int  # image index within (pid, cam); for distractors, within the camera
    frame: int
    #: Under an occlusion option: True puts a natural occluder in front of the person, False draws the image
    #: without any occluder; None (no option) leaves the camera's own occasional occluders.
    occlude: bool | None = None

    @property
    def name(self) -> str:
        return f"{self.pid:04d}_c{self.cam}s1_{self.frame:06d}_00.jpg"


def _plan(
    num_ids: int,
    num_cameras: int,
    images_per_camera: int,
    seed: int,
    num_train: int,
    occluded_gallery: float | None = None,
) -> list[_Job]:
    """Every image to write, with its split and Market-1501 name; with ``occluded_gallery`` (occluded
    queries asked for), every query and that share of the gallery marked to be occluded."""
    jobs: list[_Job] = []
    for pid in range(1, num_ids + 1):
        cams = cameras_of(seed, pid, num_cameras)
        for cam in cams:
            for i in range(images_per_camera):
                if pid <= num_train:
                    split = "train"
                elif images_per_camera == 1:
                    # A single image per camera: the last camera's goes to the gallery so that every
                    # query still has a cross-camera true match.
                    split = "gallery" if cam == cams[-1] else "query"
                else:
                    split = "query" if i == 0 else "gallery"
                jobs.append(_Job(split, pid, cam, i, i + 1))
    gallery = sum(1 for j in jobs if j.split == "gallery")
    num_distractors = max(1, round(DISTRACTOR_FRACTION * gallery))
    rng = seeded_rng(seed, TAG_DISTRACTOR)
    per_cam = [0] * (num_cameras + 1)
    for cam in rng.integers(1, num_cameras + 1, size=num_distractors):
        c = int(cam)
        per_cam[c] += 1
        jobs.append(_Job("gallery", 0, c, per_cam[c], per_cam[c]))
    if occluded_gallery is None:
        return jobs
    # Exactly the stated share of the gallery (distractors included) is occluded, chosen at random; the
    # other test images are drawn without occluders, and training images as usual.
    gallery_at = [i for i, j in enumerate(jobs) if j.split == "gallery"]
    order = seeded_rng(seed, TAG_OCCLUDED_GALLERY).permutation(gallery_at)
    chosen = {int(i) for i in order[: round(occluded_gallery * len(gallery_at))]}
    return [
        j if j.split == "train" else dataclasses.replace(j, occlude=j.split == "query" or i in chosen)
        for i, j in enumerate(jobs)
    ]


def _job_identity(seed: int, job: _Job) -> Identity:
    if job.pid == 0:  # a random passer-by
        return sample_identity(seeded_rng(seed, TAG_DISTRACTOR, pid=0, cam=job.cam, index=job.index))
    return identity_of(seed, job.pid)


def _write_jobs(args: tuple[str, int, int, int, tuple[float, float] | None, list[_Job]]) -> list[dict[str, Any]]:
    """Renders and writes a batch of images (runs in a worker process); returns their caption records."""
    root, seed, height, width, cover, jobs = args
    cameras: dict[int, Camera] = {}
    identities: dict[tuple[int, int, int], Identity] = {}
    records = []
    for job in jobs:
        cam = cameras.get(job.cam) or cameras.setdefault(job.cam, camera_of(seed, job.cam))
        key = (job.pid, job.cam, job.index) if job.pid == 0 else (job.pid, 0, 0)
        ident = identities.get(key) or identities.setdefault(key, _job_identity(seed, job))
        rng = seeded_rng(seed, TAG_IMAGE, pid=job.pid, cam=job.cam, index=job.index)
        if job.occlude:
            occluder_rng = seeded_rng(seed, TAG_OCCLUDER, pid=job.pid, cam=job.cam, index=job.index)
            drawn = render(seed, ident, cam, rng=rng, size=(height, width), occlude=cover, occluder_rng=occluder_rng)
        else:
            plain = cam if job.occlude is None else dataclasses.replace(cam, occlusion=0.0)
            drawn = render(seed, ident, plain, rng=rng, size=(height, width))
        img, view = drawn.image, drawn.view
        relative = f"{SPLIT_DIRS[job.split]}/{job.name}"
        img.save(Path(root) / relative, format="JPEG", quality=cam.jpeg_quality, optimize=False)
        # The caption has its own stream, so captions never change the images.
        caption_rng = seeded_rng(seed, TAG_CAPTION, pid=job.pid, cam=job.cam, index=job.index)
        caption = describe(identity_attributes(ident), VIEW_NAMES[view], caption_rng)
        record: dict[str, Any] = {
            "path": relative,
            "pid": job.pid,
            "camid": job.cam,
            "view": VIEW_NAMES[view],
            "split": job.split,
            "caption": caption,
        }
        if drawn.occlusion is not None:
            record["occluder"] = drawn.occlusion.kind
            record["coverage"] = round(drawn.occlusion.coverage, 4)
        records.append(record)
    return records


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_synthetic` wrote.

    ``images`` counts the files per split (``"train"``, ``"query"``, ``"gallery"``; the gallery
    count includes the pid 0000 distractors).
    """

    root: Path
    num_ids: int
    num_cameras: int
    images: dict[str, int]
    seconds: float


def _integer(name: str, value: Any, low: int, high: int | None, why: str = "") -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an integer {bounds}{why}, got {value!r}")
    return number


def default_train_ids(num_ids: int) -> int:
    """Identities 1..this train; the others are the test identities (half, rounded up)."""
    return (num_ids + 1) // 2


def _validate(
    num_ids: Any, num_cameras: Any, images_per_camera: Any, seed: Any, image_size: Any
) -> tuple[int, int, int, int, tuple[int, int]]:
    ids = _integer("num_ids", num_ids, 2, 9999, " (one train and one test identity; 4-digit Market ids)")
    cams = _integer(
        "num_cameras",
        num_cameras,
        2,
        MAX_CAMERAS,
        " (every identity is seen by two cameras or more; Market-1501 names hold a single camera digit)",
    )
    per_camera = _integer("images_per_camera", images_per_camera, 1, 999_999)
    seed = _integer("seed", seed, 0, None)
    try:
        height, width = (operator.index(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a (height, width) pair of integers, got {image_size!r}") from None
    if height < _MIN_SIZE[0] or width < _MIN_SIZE[1]:
        raise ValueError(f"image_size (height, width) must be at least {_MIN_SIZE}, got {image_size!r}")
    return ids, cams, per_camera, seed, (height, width)


def _params(
    num_ids: int,
    num_cameras: int,
    images_per_camera: int,
    seed: int,
    size: tuple[int, int],
    train_ids: int,
    occluded_queries: tuple[float, float] | None = None,
    occluded_gallery: float = 0.0,
) -> dict:
    occlusion = (
        {}
        if occluded_queries is None
        else {
            "occluded_queries": list(occluded_queries),
            "occluded_gallery": occluded_gallery,
            "occluder_version": OCCLUDER_VERSION,
        }
    )
    return occlusion | {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "num_ids": num_ids,
        "train_ids": train_ids,
        "num_cameras": num_cameras,
        "images_per_camera": images_per_camera,
        "seed": seed,
        "image_size": [size[0], size[1]],
    }


def generate_synthetic(
    out: str | Path,
    *,
    num_ids: int = 100,
    num_cameras: int = 6,
    images_per_camera: int = 4,
    seed: int = 0,
    image_size: tuple[int, int] = (128, 64),
    workers: int | None = None,
    train_ids: int | None = None,
    occluded_queries: Any = None,
    occluded_gallery: Any = 0.1,
) -> SynthSummary:
    """Writes a synthetic person re-identification dataset in the Market-1501 layout.

    Identities ``1..ceil(N/2)`` (or ``1..train_ids``) are for training (``bounding_box_train``); the
    others are split into
    one query per camera they appear in (``query``) and the rest (``bounding_box_test``), plus about
    5% pid 0000 distractors in the gallery. Each identity is seen by 2..C random cameras with
    ``images_per_camera`` images in each.

    Args:
        out: Dataset root. Existing split folders are replaced if ``out`` holds an earlier synthetic
            dataset; a folder with other data in the split folders is refused.
        num_ids: Number of identities (>= 2).
        num_cameras: Number of cameras (2..9).
        images_per_camera: Images of an identity in each camera that sees it (>= 1).
        seed: Non-negative seed; the same arguments give byte-identical files.
        image_size: (height, width) of the crops.
        workers: Worker processes; ``None`` uses ``os.cpu_count()``, 1 runs serially.
        train_ids: Training identities (1..N-1); None = half of them, rounded up.
        occluded_queries: Occluded-Duke style test images: (low, high) or ``"20-50%"`` puts a natural
            occluder (another person, a car, a pole, a bag, a bush; :mod:`.occluders`) in front of every
            query, covering that fraction of the person's mask, and draws the rest of the test images
            without the cameras' own occluders. Training images are drawn as without it, byte for byte.
            Each occluded image's occluder and measured coverage go into ``captions.jsonl``.
        occluded_gallery: with ``occluded_queries``, the share of gallery images occluded the same way
            (exactly ``round(share * gallery)`` images, chosen at random).

    Every image also gets a caption of what its view shows (:mod:`svllreid.data.synthesis.captions`),
    written to ``OUT/captions.jsonl`` with its path, identity, camera, view and split.

    Returns:
        A :class:`SynthSummary` with the per-split image counts and the time taken.

    Raises:
        ValueError: An argument is out of range.
        FileExistsError: ``out`` already holds images that this generator did not write.
    """
    start = time.perf_counter()
    num_ids, num_cameras, images_per_camera, seed, (height, width) = _validate(
        num_ids, num_cameras, images_per_camera, seed, image_size
    )
    num_train = default_train_ids(num_ids) if train_ids is None else _integer("train_ids", train_ids, 1, num_ids - 1)
    cover = occlusion_range(occluded_queries)
    share = gallery_share(occluded_gallery) if cover is not None else None
    root = Path(out)
    meta_path, partial = root / META_FILE, root / PARTIAL_FILE
    dirs = [root / d for d in SPLIT_DIRS.values()]
    ours = meta_path.exists() or partial.exists()
    if not ours and any(d.is_dir() and any(d.iterdir()) for d in dirs):
        raise FileExistsError(
            f"{root} already holds Market-1501 style data that generate_synthetic did not write "
            f"(no {META_FILE}); refusing to overwrite it"
        )
    root.mkdir(parents=True, exist_ok=True)
    # Mark the folder as ours before touching it, so that an interrupted run can be redone but never
    # looks complete.
    params = _params(num_ids, num_cameras, images_per_camera, seed, (height, width), num_train, cover, share or 0.0)
    partial.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    meta_path.unlink(missing_ok=True)
    for d in dirs:
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()

    jobs = _plan(num_ids, num_cameras, images_per_camera, seed, num_train, share)
    # With workers=None, processes are only used for more than a few dozen images each.
    auto = min(os.cpu_count() or 1, max(1, len(jobs) // 32))
    n_workers = auto if workers is None else max(1, int(workers))
    chunks = min(len(jobs), n_workers * 8) if n_workers > 1 else 1
    tasks = [(str(root), seed, height, width, cover, jobs[i::chunks]) for i in range(chunks)]
    records: list[dict[str, Any]] = []
    if n_workers == 1:
        for task in tasks:
            records += _write_jobs(task)
    else:
        # Each image has its own seeded generator, so the output does not depend on the worker count.
        with ProcessPoolExecutor(max_workers=min(n_workers, len(tasks))) as pool:
            for chunk in pool.map(_write_jobs, tasks):
                records += chunk
    records.sort(key=lambda r: r["path"])
    atomic_write_text(root / CAPTIONS_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    counts = {split: sum(1 for j in jobs if j.split == split) for split in SPLIT_DIRS}
    meta = dict(params)
    meta["counts"] = {**counts, "distractors": sum(1 for j in jobs if j.pid == 0)}
    if cover is not None:
        meta["counts"]["occluded"] = {split: sum(1 for j in jobs if j.split == split and j.occlude) for split in counts}
    meta["test_ids"] = num_ids - num_train
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(meta_path)
    partial.unlink()
    return SynthSummary(
        root=root,
        num_ids=num_ids,
        num_cameras=num_cameras,
        images=counts,
        seconds=time.perf_counter() - start,
    )


def generate_pretraining_world(out: str | Path, workers: int | None = None) -> SynthSummary:
    """:func:`generate_synthetic` with the sizes and seed of :data:`PRETRAIN_WORLD`: the captioned world
    the shipped ``svll-synth`` weights were pretrained on."""
    world = PRETRAIN_WORLD
    return generate_synthetic(
        out,
        num_ids=world["ids"],
        num_cameras=world["cameras"],
        images_per_camera=world["images_per_camera"],
        seed=world["seed"],
        train_ids=world["train_ids"],
        workers=workers,
    )


def synthetic_matches(
    out: str | Path,
    *,
    num_ids: int,
    num_cameras: int,
    images_per_camera: int,
    seed: int,
    image_size: tuple[int, int] = (128, 64),
    train_ids: int | None = None,
    occluded_queries: Any = None,
    occluded_gallery: Any = 0.1,
) -> bool:
    """Whether ``out`` holds a complete synthetic dataset generated with exactly these parameters.

    Compares the parameters and generator version in ``out/synthetic.json`` and checks that every
    split folder holds the recorded number of images, each with a caption. Never raises for a
    missing or broken folder.
    """
    meta_path = Path(out) / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict):
        return False
    try:
        size = (int(image_size[0]), int(image_size[1]))
    except (TypeError, ValueError, IndexError):
        return False
    num_train = default_train_ids(num_ids) if train_ids is None else train_ids
    try:
        cover = occlusion_range(occluded_queries)
        share = gallery_share(occluded_gallery) if cover is not None else 0.0
    except ValueError:
        return False
    expected = _params(num_ids, num_cameras, images_per_camera, seed, size, num_train, cover, share)
    if any(meta.get(k) != v for k, v in expected.items()) or ("occluded_queries" in meta) != (cover is not None):
        return False
    counts = meta.get("counts")
    if not isinstance(counts, dict):
        return False
    for split, folder in SPLIT_DIRS.items():
        d = Path(out) / folder
        if not d.is_dir() or sum(1 for _ in d.glob("*.jpg")) != counts.get(split):
            return False
    try:
        with (Path(out) / CAPTIONS_FILE).open() as lines:
            captions = sum(1 for _ in lines)
    except OSError:
        return False
    return captions == sum(counts.get(split, 0) for split in SPLIT_DIRS)
