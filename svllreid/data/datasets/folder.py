"""A user's own data, without writing code.

Three layouts, tried in this order:

1. A CSV manifest (``root`` is a ``.csv`` file, or ``root/manifest.csv`` exists) with columns
   ``path,pid[,camid][,split]``: a header row names them in any order, or without a header they are
   in that order; paths are relative to the CSV file; pids and camids are integers (or names, with
   ``identity_names`` / ``camera_names``); ``split`` is ``train``, ``query`` or ``gallery``.
2. Split folders: ``root/train/<identity>/*.jpg``, ``root/query/<identity>/*.jpg`` and
   ``root/gallery/<identity>/*.jpg``.
3. Identity folders only: ``root/<identity>/*.jpg`` (sub-folders of an identity's folder count as that
   identity's images); identities are split into train and test (``test_fraction``, seeded), and each
   test identity gives one query image per camera (one per identity without cameras) as long as each
   query keeps a gallery image of its identity from another camera, while its other images form the
   gallery (:mod:`svllreid.data.queries`). Identities that one camera saw alone train.

Given splits (layouts 1 and 2) keep what they say, except queries that no gallery image of their
identity (from another camera) can answer: those are left out, with a note.

Instead of one sub-folder per identity, images may lie directly in the folder when ``pid_regex``
reads the identity from each file name (the group named ``pid``, else the first group). Cameras are
optional: ``camera_regex`` reads them from file names (the group named ``cam``, else the first group,
else the whole match); a manifest may carry them in ``camid``. Without cameras the
evaluation protocol excludes only the query's own image.
"""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from pathlib import Path

from svllreid.data.datasets.common import IMAGE_EXTENSIONS, list_images, raise_if_problems
from svllreid.data.datasets.registry import register
from svllreid.data.labels import identity_numbers, is_integer, number_labels, regex_group
from svllreid.data.queries import drop_unanswerable_queries, pick_queries, queried_identities, query_needs
from svllreid.data.types import EvalSplit, ReIDDataset, Sample, relabel, relabelled_names
from svllreid.errors import DatasetError

__all__ = ["COLUMNS", "LISTED_NAMES", "MANIFEST", "SPLITS", "folder"]

SPLITS = ("train", "query", "gallery")
MANIFEST = "manifest.csv"
COLUMNS = ("path", "pid", "camid", "split")


def _compile(option: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise DatasetError(f"folder: {option} {pattern!r} is not a valid regular expression: {err}") from err


#: File names listed in a problem that many files share (the rest are counted).
LISTED_NAMES = 5


def _unmatched(option: str, pattern: str, unmatched: list[Path], total: int, hint: str) -> str:
    """One problem for every file name that a pattern option does not match (not one per file)."""
    shown = ", ".join(p.name for p in unmatched[:LISTED_NAMES]) + (
        f", ... ({len(unmatched) - LISTED_NAMES} more)" if len(unmatched) > LISTED_NAMES else ""
    )
    how_many = (
        f"matches none of the {total}" if len(unmatched) == total else f"does not match {len(unmatched)} of the {total}"
    )
    folders = sorted({str(p.parent) for p in unmatched})
    where = folders[0] if len(folders) == 1 else f"{len(folders)} folders, e.g. {folders[0]}"
    return f"{option} '{pattern}' {how_many} file names (in {where}): {shown}. {hint}"


def _rows_from_folder(folder: Path, split: str | None, pid_regex: str, problems: list[str]) -> list[tuple]:
    """Rows (path, identity name, camera label or None, split or None) of one image folder.

    With ``pid_regex`` the images sit directly in ``folder`` and their names give the identity;
    otherwise every sub-folder is one identity.
    """
    if pid_regex:
        regex = _compile("pid_regex", pid_regex)
        rows = []
        images = list_images(folder)
        unmatched = []
        for path in images:
            match = regex.search(path.name)
            if match is None:
                unmatched.append(path)
            else:
                rows.append((str(path), regex_group(regex, match, "pid"), None, split))
        if unmatched:
            hint = "Each file name must hold its identity, read by the group named pid (else the first group)"
            problems.append(_unmatched("pid_regex", pid_regex, unmatched, len(images), hint))
        if not rows and not problems:
            problems.append(f"{folder}: no images directly inside (pid_regex reads identities from file names)")
        return rows
    loose = list_images(folder)
    if loose:
        problems.append(
            f"{folder}: {len(loose)} images lie directly in the folder (e.g. {loose[0].name}); put each identity "
            "in its own sub-folder, or read identities from the file names with -o pid_regex='^(\\d+)_'"
        )
    rows = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = list_images(entry, recursive=True)  # sub-folders of an identity's folder are its images too
        if not images:
            problems.append(f"{entry}: identity folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        rows.extend((str(path), entry.name, None, split) for path in images)
    return rows


def _manifest_columns(manifest: Path, first: list[str]) -> tuple[list[str], bool]:
    """The manifest's columns and whether its first row is a header.

    A first row that names any known column, or whose second cell is no integer (a data row's pid
    is one), is a header: its names must be known (any order) and include path and pid. Otherwise the
    columns are in the fixed order path,pid[,camid][,split].
    """
    names = [cell.strip().lower() for cell in first]
    order = "with no header, the columns are in the order path,pid[,camid][,split]"
    if any(name in COLUMNS for name in names) or (len(names) >= 2 and not is_integer(names[1])):
        unknown = [name for name in names if name not in COLUMNS]
        missing = [name for name in ("path", "pid") if name not in names]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if unknown or missing or repeated:
            wrong = "; ".join(
                part
                for part in (
                    f"unknown columns {unknown}" if unknown else "",
                    f"missing {', '.join(missing)}" if missing else "",
                    f"repeated {', '.join(repeated)}" if repeated else "",
                )
                if part
            )
            raise DatasetError(
                f"folder: manifest {manifest} has the header {','.join(first)!r}: {wrong}. A header names the "
                f"columns {', '.join(COLUMNS)} in any order (path and pid required); {order}"
            )
        return names, True
    if not 2 <= len(names) <= 4:
        raise DatasetError(f"folder: manifest {manifest}: {len(names)} fields in its first row; {order}")
    return list(COLUMNS[: len(names)]), False


def _rows_from_manifest(
    manifest: Path, problems: list[str], *, identity_names: bool, camera_names: bool
) -> tuple[list[tuple], bool, bool]:
    """Read the CSV; returns rows and whether it has camera and split columns. Identities and cameras
    must be integers unless declared to be names (``identity_names``, ``camera_names``)."""
    with manifest.open(newline="") as handle:
        table = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not table:
        raise DatasetError(f"folder: manifest {manifest} is empty; expected rows 'path,pid[,camid][,split]'")
    columns, header = _manifest_columns(manifest, table[0])
    if header:
        table = table[1:]
    has_cam, has_split = "camid" in columns, "split" in columns
    rows = []
    for number, row in enumerate(table, start=2 if header else 1):
        cells = dict(zip(columns, (c.strip() for c in row), strict=False))
        where = f"{manifest}:{number}"
        if len(row) != len(columns):
            problems.append(f"{where}: expected {len(columns)} fields ({','.join(columns)}), got {len(row)}")
            continue
        if not cells["path"] or not cells["pid"]:
            problems.append(f"{where}: empty path or pid")
            continue
        if not identity_names and not is_integer(cells["pid"]):
            problems.append(
                f"{where}: pid must be an integer; got {cells['pid']!r} (identities given by name: "
                "-o identity_names=true)"
            )
            continue
        if has_cam and not cells["camid"]:
            problems.append(f"{where}: empty camid (the manifest has a camid column)")
            continue
        if has_cam and not camera_names and not is_integer(cells["camid"]):
            problems.append(
                f"{where}: camid must be an integer; got {cells['camid']!r} (cameras given by name, e.g. "
                "left/right: -o camera_names=true)"
            )
            continue
        split = cells.get("split", "").lower() or None
        if has_split and split not in SPLITS:
            problems.append(f"{where}: split must be train, query or gallery; got {cells['split']!r}")
            continue
        path = Path(cells["path"]).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        rows.append((str(path), cells["pid"], cells["camid"] if has_cam else None, split))
    return rows, has_cam, has_split


def _cameras_from_names(rows: list[tuple], pattern: str, problems: list[str]) -> list[tuple]:
    regex = _compile("camera_regex", pattern)
    out = []
    unmatched = []
    for path, name, _, split in rows:
        match = regex.search(Path(path).name)
        if match is None:
            unmatched.append(Path(path))
        else:
            out.append((path, name, regex_group(regex, match, "cam"), split))
    if unmatched:
        hint = (
            "Each file name must hold its camera, read by the group named cam (else the first group); the "
            "expression is searched for anywhere in the name, e.g. -o camera_regex='_c(\\d+)' for 0001_c2_17.jpg"
        )
        problems.append(_unmatched("camera_regex", pattern, unmatched, len(rows), hint))
    return out


def _auto_split(
    samples: list[Sample], test_fraction: float, seed: int, has_cameras: bool
) -> tuple[list[Sample], list[Sample], list[Sample], list[str]]:
    """Train, query and gallery samples, and what a user should know of the split.

    Test identities are drawn from those that can be queried (:mod:`svllreid.data.queries`): an identity
    that one camera saw alone (or one photo without cameras) cannot be, and trains instead.
    """
    by_pid: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_pid[sample.pid].append(sample)
    ids = sorted(by_pid)
    if len(ids) < 2:
        raise DatasetError(f"folder: an automatic train/test split needs at least 2 identities; found {len(ids)}")
    usable = queried_identities(samples, has_cameras)
    need = query_needs(has_cameras)
    if not usable:
        raise DatasetError(
            f"folder: no identity has {need}, so none can be a query (a query needs an image of its identity "
            + ("from another camera" if has_cameras else "besides itself")
            + " in the gallery). Add such images, check camera_regex, or give the split yourself (train/, query/, "
            "gallery/ or a manifest with a split column)"
        )
    rng = random.Random(seed)
    rng.shuffle(usable)
    n_test = min(max(round(len(ids) * test_fraction), 1), len(ids) - 1, len(usable))
    test_ids = set(usable[:n_test])
    train = [s for s in samples if s.pid not in test_ids]
    query, gallery = pick_queries({pid: by_pid[pid] for pid in test_ids}, has_cameras=has_cameras, rng=rng)
    notes = [
        f"automatic split: {n_test} of {len(ids)} identities held out for testing (test_fraction={test_fraction}, "
        f"split_seed={seed})"
    ]
    if len(usable) < len(ids):
        notes.append(
            f"{len(ids) - len(usable)} identities lack {need}, so no query could find them; they train and are "
            "never tested"
        )
    return train, query, gallery, notes


@register("folder", kind="person", description="your own images: identity folders or a CSV manifest", own_data=True)
def folder(
    root: str | Path,
    *,
    camera_regex: str = "",
    pid_regex: str = "",
    test_fraction: float = 0.5,
    split_seed: int = 0,
    kind: str = "person",
    identity_names: bool = False,
    camera_names: bool = False,
) -> ReIDDataset:
    """Args:
    camera_regex: regular expression that reads the camera from a file name (image folders).
    pid_regex: regular expression that reads the identity from a file name; the images then lie
        directly in the folder (or in train/, query/, gallery/) instead of one sub-folder each.
    test_fraction: share of identities held out for testing when no split is given.
    split_seed: seed of that automatic split and of the query picks.
    kind: "person" or "vehicle" (selects the prompt template).
    identity_names: a manifest's pid column holds names, numbered in sorted order (default: integers,
        and anything else is an error with its line).
    camera_names: a manifest's camid column holds names such as left / right, numbered in sorted order
        (default: integers).
    """
    if kind not in ("person", "vehicle"):
        raise DatasetError(f"folder: kind must be 'person' or 'vehicle'; got {kind!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise DatasetError(f"folder: test_fraction must be between 0 and 1 (exclusive); got {test_fraction}")
    base = Path(root).expanduser()
    if not str(root) or not base.exists():
        raise DatasetError(
            f"folder: {str(base)!r} does not exist; pass a folder of identity sub-folders, a folder with "
            f"train/, query/ and gallery/, or a CSV manifest (path,pid[,camid][,split])"
        )
    problems: list[str] = []
    manifest = base if base.is_file() else base / MANIFEST
    has_cam = has_split = False
    if manifest.is_file():
        rows, has_cam, has_split = _rows_from_manifest(
            manifest, problems, identity_names=bool(identity_names), camera_names=bool(camera_names)
        )
        if camera_regex or pid_regex:
            raise DatasetError("folder: camera_regex and pid_regex apply to image folders; a manifest has columns")
    elif (base / "train").is_dir():
        present = [s for s in SPLITS if (base / s).is_dir()]
        if present != list(SPLITS):
            missing = [str(base / s) for s in SPLITS if s not in present]
            raise DatasetError("folder: found train/ but the split folders are incomplete; missing:", missing)
        rows = [r for split in SPLITS for r in _rows_from_folder(base / split, split, pid_regex, problems)]
        has_split = True
    else:
        rows = _rows_from_folder(base, None, pid_regex, problems)
    if camera_regex:
        rows = _cameras_from_names(rows, camera_regex, problems)
        has_cam = True
    raise_if_problems("folder", base, problems)
    if not rows:
        raise DatasetError(f"folder: no images found under {base}")

    pid_of = identity_numbers({r[1] for r in rows})
    cam_of = number_labels({r[2] for r in rows}) if has_cam else {}
    samples_by_split: dict[str | None, list[Sample]] = defaultdict(list)
    for path, name, cam, split in rows:
        samples_by_split[split].append(Sample(path, pid_of[name], cam_of[cam] if has_cam else -1, -1))
    notes = []
    if has_split:
        train, query, gallery = (samples_by_split[s] for s in SPLITS)
        answered, dropped = drop_unanswerable_queries(EvalSplit("default", query, gallery), has_cam)
        if dropped:
            query = answered.query
            where = "from another camera " if has_cam else ""
            notes.append(
                f"{len(dropped)} query images of {len({s.pid for s in dropped})} identities have no gallery image of "
                f"their identity {where}to find, so they are left out of the evaluation"
            )
    else:
        train, query, gallery, split_notes = _auto_split(
            samples_by_split[None], float(test_fraction), int(split_seed), has_cam
        )
        notes.extend(split_notes)
    if not has_cam:
        notes.append("no camera labels: each query's own image is excluded from its gallery and nothing else")
    name_of = {number: name for name, number in pid_of.items()}  # the folder or manifest names
    return ReIDDataset(
        name="folder",
        root=str(base.resolve()),
        kind=kind,  # type: ignore[arg-type]
        train=relabel(train),
        splits=[EvalSplit("default", query, gallery)],
        protocol="camera" if has_cam else "no-camera",
        num_cameras=len(cam_of),
        notes=notes,
        train_names=relabelled_names(train, name_of),
        test_names={s.pid: name_of[s.pid] for s in query + gallery if name_of[s.pid] != str(s.pid)},
    )
