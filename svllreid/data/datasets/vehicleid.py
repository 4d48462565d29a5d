"""VehicleID: ``image/<name>.jpg`` and split lists ``<name> <vehicle id>``; no cameras.

The test protocol draws, in each seeded trial, one random image per vehicle as the gallery and
uses all its other images as queries (trial ``i`` uses seed ``i``). Test sizes: 800 (Small),
1600 (Medium), 2400 (Large).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from svllreid.data.datasets.common import raise_if_problems, resolve_root
from svllreid.data.datasets.registry import register
from svllreid.data.types import EvalSplit, ReIDDataset, Sample, relabel, relabelled_names
from svllreid.errors import DatasetError

__all__ = [
    "ALIASES",
    "SPLIT_DIR",
    "TEST_SIZES",
    "parse_test_size",
    "read_split_list",
    "test_list_name",
    "vehicleid",
    "vehicleid_trials",
]

TEST_SIZES = {"small": 800, "medium": 1600, "large": 2400}
SPLIT_DIR = "train_test_split"
ALIASES = ("VehicleID_V1.0", "VehicleID")


def test_list_name(size: int) -> str:
    return f"test_list_{size}.txt"


def parse_test_size(value: int | str) -> int:
    """Accept 800 / 1600 / 2400 or small / medium / large."""
    size = TEST_SIZES.get(str(value).lower(), value)
    try:
        size = int(size)
    except (TypeError, ValueError):
        size = -1
    if size not in TEST_SIZES.values():
        raise DatasetError(f"vehicleid: test_size must be 800, 1600, 2400, small, medium or large; got {value!r}")
    return size


def read_split_list(list_file: Path, image_dir: Path, problems: list[str]) -> list[Sample]:
    samples = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            problems.append(f"{list_file}:{number}: expected '<image name> <vehicle id>', got {line.strip()!r}")
            continue
        name = fields[0] if Path(fields[0]).suffix else f"{fields[0]}.jpg"
        samples.append(Sample(str(image_dir / name), int(fields[1]), -1, -1))
    return samples


def vehicleid_trials(test: list[Sample], trials: int) -> list[EvalSplit]:
    """The seeded VehicleID protocol: per trial one random gallery image per vehicle, the rest queries."""
    by_vehicle: dict[int, list[Sample]] = defaultdict(list)
    for sample in test:
        by_vehicle[sample.pid].append(sample)
    splits = []
    for trial in range(trials):
        rng = random.Random(trial)
        query, gallery = [], []
        for vid in sorted(by_vehicle):
            images = by_vehicle[vid]
            pick = rng.randrange(len(images))
            gallery.append(images[pick])
            query.extend(images[:pick] + images[pick + 1 :])
        splits.append(EvalSplit(f"trial-{trial}", query, gallery))
    return splits


@register("vehicleid", kind="vehicle", description="VehicleID (no cameras; test sizes 800/1600/2400, 10 trials)")
def vehicleid(root: str | Path, test_size: int | str = 800, trials: int = 10) -> ReIDDataset:
    """Args:
    test_size: 800 / 1600 / 2400 (or small / medium / large).
    trials: number of seeded gallery draws.
    """
    size = parse_test_size(test_size)
    if int(trials) < 1:
        raise DatasetError(f"vehicleid: trials must be at least 1; got {trials}")
    lists = (f"{SPLIT_DIR}/train_list.txt", f"{SPLIT_DIR}/{test_list_name(size)}")
    base = resolve_root(root, ("image", *lists), "vehicleid", ALIASES)
    problems: list[str] = []
    train = read_split_list(base / lists[0], base / "image", problems)
    test = read_split_list(base / lists[1], base / "image", problems)
    raise_if_problems("vehicleid", base, problems)
    return ReIDDataset(
        name="vehicleid",
        root=str(base),
        kind="vehicle",
        train=relabel(train),
        train_names=relabelled_names(train),
        splits=vehicleid_trials(test, int(trials)),
        protocol="no-camera",
        num_cameras=0,
        notes=[f"test size {size}; {int(trials)} seeded trials (seed i for trial i)"],
    )
