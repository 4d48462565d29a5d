"""Per-split counts of a dataset (``svllreid data stats``)."""

from __future__ import annotations

from typing import Any

from svllreid.data.check import CheckReport, structure_findings
from svllreid.data.datasets import get_dataset_entry, load_caption_dataset, load_dataset
from svllreid.data.datasets.common import resolve_root
from svllreid.data.datasets.vehicleid import ALIASES, SPLIT_DIR, TEST_SIZES, test_list_name
from svllreid.data.types import ReIDDataset, caption_summary, split_summary
from svllreid.errors import DatasetError

__all__ = ["dataset_stats", "format_stats", "stats_and_findings", "summarize"]


def summarize(dataset: ReIDDataset) -> dict[str, dict[str, int]]:
    """``{"train": {...}, "query": {...}, "gallery": {...}}`` with ids, images and cameras each, and the
    number of occluded images where an occlusion option put occluders on some (``occluded_queries``)."""
    splits = {"train": dataset.train, "query": dataset.query, "gallery": dataset.gallery}
    stats = {name: split_summary(samples) for name, samples in splits.items()}
    if dataset.occlusion is not None:
        for name, samples in splits.items():
            stats[name]["occluded"] = sum(1 for s in samples if s.path in dataset.occluded)
    return stats


def dataset_stats(name: str, root: str, **options: Any) -> dict[str, dict[str, int]]:
    """Counts per split. VehicleID reports train and every test size whose list file exists
    (``test_800``, ``test_1600``, ``test_2400``: identities and images of the whole test list).
    Caption datasets report identities, images and captions per split."""
    return stats_and_findings(name, root, **options)[0]


def stats_and_findings(name: str, root: str, **options: Any) -> tuple[dict[str, dict[str, int]], CheckReport | None]:
    """:func:`dataset_stats`, and what ``svllreid data check`` says of the splits it counts (no image is
    opened), so that counts of a dataset the check refuses come with its reasons. The report is None for
    caption datasets and VehicleID (whose trials are drawn at evaluation)."""
    if get_dataset_entry(name).task == "captions":
        captions = load_caption_dataset(name, root, **options)
        return {split: caption_summary(captions.split(split)) for split in captions.splits}, None
    if name != "vehicleid":
        dataset = load_dataset(name, root, **options)
        report = CheckReport(dataset.name, dataset.root)
        structure_findings(dataset, report)
        return summarize(dataset), report
    options.pop("test_size", None)
    base = resolve_root(root, ("image", f"{SPLIT_DIR}/train_list.txt"), name, ALIASES)
    sizes = [size for size in TEST_SIZES.values() if (base / SPLIT_DIR / test_list_name(size)).is_file()]
    if not sizes:
        expected = [str(base / SPLIT_DIR / test_list_name(size)) for size in TEST_SIZES.values()]
        raise DatasetError("vehicleid: no test list found; expected at least one of:", expected)
    stats: dict[str, dict[str, int]] = {}
    for size in sizes:
        dataset = load_dataset(name, str(base), test_size=size, **options)
        test = dataset.splits[0].query + dataset.splits[0].gallery
        stats.setdefault("train", split_summary(dataset.train))
        stats[f"test_{size}"] = {k: v for k, v in split_summary(test).items() if k != "cameras"}
    return stats, None


def format_stats(stats: dict[str, dict[str, Any]]) -> str:
    """A small aligned table of :func:`dataset_stats` output."""
    columns = [
        c for c in ("ids", "images", "cameras", "occluded", "captions") if any(c in row for row in stats.values())
    ]
    width = max(len(k) for k in stats) + 2
    lines = ["split".ljust(width) + "".join(c.rjust(10) for c in columns)]
    for split, row in stats.items():
        lines.append(split.ljust(width) + "".join(str(row.get(c, "-")).rjust(10) for c in columns))
    return "\n".join(lines)
