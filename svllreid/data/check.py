"""Dataset validation before anyone trains on it (``svllreid data check``).

A check parses the dataset (layout, list files, file names, camera ranges: the parser's own
errors), then looks at what it found: empty splits, query identities without gallery images,
missing files, and (in ``full`` mode) every image decoded. Training runs the ``quick`` mode.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from svllreid.data.datasets import get_dataset_entry, load_caption_dataset, load_dataset
from svllreid.data.shapes import is_huge, too_many_pixels
from svllreid.data.types import CaptionDataset, ReIDDataset, Sample, caption_summary
from svllreid.errors import DatasetError

__all__ = [
    "QUICK_HEADER_SAMPLE",
    "TINY_SIDE",
    "CheckReport",
    "Mode",
    "check_dataset",
    "check_loaded_caption_dataset",
    "check_loaded_dataset",
    "inspect_image",
    "structure_findings",
]

Mode = Literal["quick", "full"]

#: Images whose header is read in ``quick`` mode (a sample, so the check stays cheap).
QUICK_HEADER_SAMPLE = 200


@dataclass
class CheckReport:
    """What a dataset check found. ``errors`` make the dataset unusable; ``warnings`` do not."""

    dataset: str
    root: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked_images: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        lines = [f"dataset {self.dataset} at {self.root}"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  error: {e}" for e in self.errors]
        verdict = "OK" if self.ok else f"FAILED with {len(self.errors)} error(s)"
        lines.append(f"{verdict} ({self.checked_images} images opened, {len(self.warnings)} warning(s))")
        return "\n".join(lines)


def _ids_text(ids: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def _lines(items: list[str], limit: int = 10) -> str:
    """The first ``limit`` items, one an indented line, and how many more there are."""
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return "\n    ".join(items[:limit]) + more


#: Images smaller than this on a side hold almost nothing to re-identify; a check warns about them.
TINY_SIDE = 16


def inspect_image(path: str, decode: bool) -> tuple[str | None, tuple[int, int] | None]:
    """Open ``path`` once (with ``decode``, decode it fully): ``(None, (width, height))`` for an image,
    else ``(the reason, None)``."""
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
            elif image.size[0] <= 0 or image.size[1] <= 0:
                return "empty image", None
            return None, image.size
    except FileNotFoundError:
        return "file not found", None
    except Image.DecompressionBombError as err:
        return too_many_pixels(err), None
    except Exception as err:  # PIL raises many types for corrupt data; every one is a finding
        return f"cannot be read as an image ({type(err).__name__}: {err})", None


def structure_findings(dataset: ReIDDataset, report: CheckReport) -> None:
    """Add what is wrong with the dataset's splits to ``report`` (no image is opened)."""
    if not dataset.train:
        report.errors.append("the training split is empty")
    for split in dataset.splits:
        where = f"split {split.name!r}: " if len(dataset.splits) > 1 else ""
        for part, samples in (("query", split.query), ("gallery", split.gallery)):
            if not samples:
                report.errors.append(f"{where}the {part} set is empty")
        gallery_ids = {s.pid for s in split.gallery}
        absent = sorted({s.pid for s in split.query} - gallery_ids)
        if absent and split.gallery:
            report.errors.append(
                f"{where}{len(absent)} query identities have no image in the gallery: {_ids_text(absent)}"
            )
        if dataset.has_cameras and split.gallery:
            cams_of: dict[int, set[int]] = {}
            for s in split.gallery:
                cams_of.setdefault(s.pid, set()).add(s.camid)
            no_cross = sorted({q.pid for q in split.query if q.pid in cams_of and cams_of[q.pid] <= {q.camid}})
            if no_cross:
                report.warnings.append(
                    f"{where}{len(no_cross)} query identities are only in the gallery under the query's own camera "
                    f"(those queries will be skipped): {_ids_text(no_cross)}"
                )
    counts = Counter(s.pid for s in dataset.train)
    singles = sum(1 for n in counts.values() if n == 1)
    if singles:
        report.warnings.append(f"{singles} training identities have a single image (the P×K sampler repeats them)")


def _unique_samples(dataset: ReIDDataset) -> list[Sample]:
    seen: dict[str, Sample] = {}
    for s in dataset.train:
        seen.setdefault(s.path, s)
    for split in dataset.splits:
        for s in split.query + split.gallery:
            seen.setdefault(s.path, s)
    return list(seen.values())


def _image_findings(paths: list[str], mode: Mode, report: CheckReport, workers: int | None) -> None:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        report.errors.append(f"{len(missing)} image files are missing:\n    " + "\n    ".join(missing))
    present = [p for p in paths if Path(p).is_file()]
    if mode == "quick" and len(present) > QUICK_HEADER_SAMPLE:
        present = random.Random(0).sample(present, QUICK_HEADER_SAMPLE)
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(pool.map(lambda p: inspect_image(p, decode=mode == "full"), present, chunksize=64))
    report.checked_images = len(present)
    bad = [f"{p}: {reason}" for p, (reason, _) in zip(present, found, strict=True) if reason is not None]
    if bad:
        report.errors.append(f"{len(bad)} images are unreadable or corrupt:\n    " + "\n    ".join(bad))
    small = [(size, p) for p, (_, size) in zip(present, found, strict=True) if size and min(size) < TINY_SIDE]
    tiny = [f"{p} ({size[0]}×{size[1]})" for size, p in sorted(small, key=lambda item: (min(item[0]), item[1]))]
    large = [
        f"{p} ({size[0]}×{size[1]})" for p, (_, size) in zip(present, found, strict=True) if size and is_huge(size)
    ]
    if large:
        shown = _lines(large)
        report.warnings.append(
            f"{len(large)} images have more than {(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels; they are "
            f"read (JPEGs at a reduced scale), but a smaller copy of each would read faster:\n    {shown}"
        )
    if tiny:
        shown = _lines(tiny)
        report.warnings.append(
            f"{len(tiny)} images are smaller than {TINY_SIDE} pixels on a side, with almost nothing to "
            f"re-identify (a crop gone wrong?):\n    {shown}"
        )


def check_loaded_dataset(dataset: ReIDDataset, mode: Mode = "full", workers: int | None = None) -> CheckReport:
    """Check an already parsed dataset (training calls this in ``quick`` mode)."""
    report = CheckReport(dataset.name, dataset.root, notes=list(dataset.notes))
    structure_findings(dataset, report)
    _image_findings([s.path for s in _unique_samples(dataset)], mode, report, workers)
    return report


def check_loaded_caption_dataset(
    dataset: CaptionDataset, mode: Mode = "full", workers: int | None = None
) -> CheckReport:
    """Check a parsed caption dataset: its splits, its captions and its images."""
    report = CheckReport(dataset.name, dataset.root, notes=list(dataset.notes))
    for split in dataset.splits:
        summary = caption_summary(dataset.split(split))
        report.notes.append(
            f"{split}: {summary['captions']} captions of {summary['images']} images, {summary['ids']} identities"
        )
    if "train" not in dataset.splits:
        report.warnings.append("no train split: the dataset can be evaluated (eval-text) but not pretrained on")
    if "test" not in dataset.splits:
        report.warnings.append("no test split: eval-text needs --split train or val")
    long = [c for c in dataset.captions if len(c.caption.split()) > 60]
    if long:
        report.warnings.append(
            f"{len(long)} captions have more than 60 words; CLIP's tokenizer keeps 77 tokens and cuts the rest"
        )
    _image_findings(sorted({c.path for c in dataset.captions}), mode, report, workers)
    return report


def check_dataset(name: str, root: str, mode: Mode = "full", workers: int | None = None, **options: Any) -> CheckReport:
    """Parse and check dataset ``name`` under ``root``; parser errors become report errors.

    Args:
        mode: ``"full"`` decodes every image; ``"quick"`` checks that files exist and reads the
            headers of a sample of them.
        workers: threads used to open images (default: twice the CPU count, at most 16).
    """
    try:
        captions = get_dataset_entry(name).task == "captions"
        dataset = load_caption_dataset(name, root, **options) if captions else load_dataset(name, root, **options)
    except DatasetError as err:
        report = CheckReport(name, str(root))
        # A message that only counts the problems is not repeated; any other is the context the problems
        # need (e.g. "expected layout not found under ROOT; missing:"), so it is kept.
        if not err.problems:
            report.errors.append(err.message)
        elif err.counted:
            report.errors.extend(err.problems)
        elif len(err.problems) == 1:
            report.errors.append(f"{err.message} {err.problems[0]}")
        else:
            report.errors.extend([err.message, *err.problems])
        return report
    if isinstance(dataset, CaptionDataset):
        return check_loaded_caption_dataset(dataset, mode, workers)
    return check_loaded_dataset(dataset, mode, workers)
