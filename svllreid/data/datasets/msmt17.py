"""MSMT17 (V1): image folders plus list files ``<relative path> <label>``.

Training uses ``list_train.txt`` and ``list_val.txt`` together (paths under ``train/``); queries
and gallery come from ``list_query.txt`` and ``list_gallery.txt`` (paths under ``test/``). The
camera is the third ``_``-separated field of the file name (1-15).
"""

from __future__ import annotations

from pathlib import Path

from svllreid.data.datasets.common import raise_if_problems, resolve_root
from svllreid.data.datasets.registry import register
from svllreid.data.types import EvalSplit, ReIDDataset, Sample, relabel, relabelled_names

__all__ = ["LISTS", "NUM_CAMERAS", "msmt17", "read_list"]

NUM_CAMERAS = 15
LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")


def read_list(list_file: Path, image_dir: Path, problems: list[str]) -> list[Sample]:
    """Parse one MSMT17 list file; malformed lines and bad camera fields go to ``problems``."""
    samples = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{list_file}:{number}"
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            problems.append(f"{where}: expected '<relative path> <label>', got {line.strip()!r}")
            continue
        rel, label = fields[0], int(fields[1])
        name_fields = Path(rel).name.split("_")
        if len(name_fields) < 3 or not name_fields[2].isdigit():
            problems.append(f"{where}: cannot read the camera (third '_' field) of {rel!r}")
            continue
        cam = int(name_fields[2])
        if not 1 <= cam <= NUM_CAMERAS:
            problems.append(f"{where}: camera {cam} of {rel!r} is outside 1..{NUM_CAMERAS}")
            continue
        samples.append(Sample(str(image_dir / rel), label, cam - 1, -1))
    return samples


@register("msmt17", kind="person", description="MSMT17 V1 (15 cameras, list files; train = train + val)")
def msmt17(root: str | Path) -> ReIDDataset:
    base = resolve_root(root, ("train", "test", *LISTS), "msmt17", ("MSMT17_V1", "MSMT17"))
    problems: list[str] = []
    train_files = [read_list(base / name, base / "train", problems) for name in LISTS[:2]]
    query = read_list(base / "list_query.txt", base / "test", problems)
    gallery = read_list(base / "list_gallery.txt", base / "test", problems)
    raise_if_problems("msmt17", base, problems)
    return ReIDDataset(
        name="msmt17",
        root=str(base),
        kind="person",
        train=relabel(train_files[0] + train_files[1]),
        train_names=relabelled_names(train_files[0] + train_files[1]),
        splits=[EvalSplit("default", query, gallery)],
        protocol="camera",
        num_cameras=NUM_CAMERAS,
    )
