"""Caption datasets: (image, caption[, identity]) pairs for language-image pretraining and
text-to-image evaluation.

- ``synthetic_captions``: the synthetic generator's ``captions.jsonl`` (the pretraining world by
  default: many identities under a seed no ReID set uses, a held-out part as the test split);
- ``captions_csv``: ``path,caption[,pid][,split]`` rows of your own;
- ``cuhk_pedes``, ``icfg_pedes``, ``rstpreid``: the three text-based person search benchmarks in
  their released layouts (``imgs/`` beside ``reid_raw.json``, ``ICFG-PEDES.json`` or
  ``data_captions.json``).

Every parser checks that each record has its keys and each image exists, and reports every
problem at once.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from svllreid.data.datasets.common import raise_if_problems, resolve_root
from svllreid.data.datasets.registry import register
from svllreid.data.datasets.synthetic import ensure_synthetic
from svllreid.data.synthesis import CAPTIONS_FILE, META_FILE, PRETRAIN_WORLD
from svllreid.data.types import CAPTION_SPLITS, UNKNOWN, Caption, CaptionDataset
from svllreid.errors import DatasetError

__all__ = ["captions_csv", "cuhk_pedes", "icfg_pedes", "read_synthetic_captions", "rstpreid", "synthetic_captions"]

#: Synthetic splits -> caption splits (the held-out identities' query and gallery images are the test).
_SYNTHETIC_SPLITS = {"train": "train", "query": "test", "gallery": "test"}


def _read_json(path: Path, dataset: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DatasetError(f"{dataset}: {path} is not UTF-8 text ({err})") from err
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{dataset}: {path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "is the file complete?"
        ) from err


def _int_id(value: Any, where: str, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        problems.append(f"{where}: id {value!r} is not an integer")
        return None
    try:
        return int(value)
    except ValueError:
        problems.append(f"{where}: id {value!r} is not an integer")
        return None


def _released_json(
    root: str | Path, dataset: str, annotation: str, path_key: str, aliases: tuple[str, ...]
) -> CaptionDataset:
    """The common reader of the three benchmarks: a JSON list of records with ``id``, ``split``,
    ``captions`` and the image path under ``path_key``, relative to ``imgs/``."""
    base = resolve_root(root, (annotation, "imgs"), dataset, aliases)
    records = _read_json(base / annotation, dataset)
    if not isinstance(records, list):
        raise DatasetError(f"{dataset}: {base / annotation} must hold a list of records, not {type(records).__name__}")
    problems: list[str] = []
    captions: list[Caption] = []
    images = base / "imgs"
    for number, record in enumerate(records):
        where = f"{annotation} record {number}"
        if not isinstance(record, dict):
            problems.append(f"{where}: not an object")
            continue
        missing = [k for k in ("id", "split", "captions", path_key) if k not in record]
        if missing:
            problems.append(f"{where}: missing key(s) {', '.join(missing)}")
            continue
        pid = _int_id(record["id"], where, problems)
        split, texts, relative = record["split"], record["captions"], record[path_key]
        if split not in CAPTION_SPLITS:
            problems.append(f"{where}: split {split!r} is not one of {', '.join(CAPTION_SPLITS)}")
            continue
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            problems.append(f"{where}: 'captions' must be a non-empty list of texts")
            continue
        path = images / str(relative)
        if not path.is_file():
            problems.append(f"{where}: image {path} does not exist")
            continue
        if pid is None:
            continue
        captions += [Caption(str(path), text.strip(), pid, split) for text in texts]
    raise_if_problems(dataset, base, problems)
    return CaptionDataset(dataset, str(base), captions)


@register(
    "cuhk_pedes",
    kind="person",
    description="CUHK-PEDES text-based person search: imgs/ and reid_raw.json",
    task="captions",
)
def cuhk_pedes(root: str | Path) -> CaptionDataset:
    """CUHK-PEDES: ``reid_raw.json`` records ``{"split", "captions", "file_path", "id"}``."""
    return _released_json(root, "cuhk_pedes", "reid_raw.json", "file_path", ("CUHK-PEDES",))


@register(
    "icfg_pedes",
    kind="person",
    description="ICFG-PEDES text-based person search: imgs/ and ICFG-PEDES.json",
    task="captions",
)
def icfg_pedes(root: str | Path) -> CaptionDataset:
    """ICFG-PEDES: ``ICFG-PEDES.json`` records ``{"split", "captions", "file_path", "id"}``."""
    return _released_json(root, "icfg_pedes", "ICFG-PEDES.json", "file_path", ("ICFG-PEDES",))


@register(
    "rstpreid",
    kind="person",
    description="RSTPReid text-based person search: imgs/ and data_captions.json",
    task="captions",
)
def rstpreid(root: str | Path) -> CaptionDataset:
    """RSTPReid: ``data_captions.json`` records ``{"split", "captions", "img_path", "id"}``."""
    return _released_json(root, "rstpreid", "data_captions.json", "img_path", ("RSTPReid",))


@register(
    "captions_csv",
    kind="person",
    description="your own captions: a CSV of path,caption[,pid][,split] (paths relative to the CSV)",
    task="captions",
)
def captions_csv(root: str | Path) -> CaptionDataset:
    """A CSV file (or a folder holding ``captions.csv``) with columns ``path,caption[,pid][,split]``.

    A header row is optional. Paths are relative to the CSV's folder. Without a ``pid`` column
    (or with an empty cell) each image is its own identity; without ``split`` every pair is
    ``train``.
    """
    source = Path(root).expanduser()
    if source.is_dir():
        source = source / "captions.csv"
    if not source.is_file():
        raise DatasetError(
            f"captions_csv: {source} does not exist; pass a CSV file with columns path,caption[,pid][,split] "
            "or a folder holding captions.csv"
        )
    try:
        rows = list(csv.reader(source.read_text(encoding="utf-8").splitlines()))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"captions_csv: cannot read {source} as CSV text: {err}") from err
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "caption"]:
        rows = rows[1:]
        start = 2
    else:
        start = 1
    problems: list[str] = []
    captions: list[Caption] = []
    for number, row in enumerate(rows, start=start):
        where = f"{source.name} line {number}"
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < 2 or len(row) > 4:
            problems.append(f"{where}: expected 2 to 4 columns (path,caption[,pid][,split]), got {len(row)}")
            continue
        relative, text = row[0].strip(), row[1].strip()
        pid_text = row[2].strip() if len(row) > 2 else ""
        split = row[3].strip() if len(row) > 3 else "train"
        if not text:
            problems.append(f"{where}: empty caption")
            continue
        pid = UNKNOWN
        if pid_text:
            parsed = _int_id(pid_text, where, problems)
            if parsed is None:
                continue
            pid = parsed
        if split not in CAPTION_SPLITS:
            problems.append(f"{where}: split {split!r} is not one of {', '.join(CAPTION_SPLITS)}")
            continue
        path = (source.parent / relative).resolve()
        if not path.is_file():
            problems.append(f"{where}: image {path} does not exist")
            continue
        captions.append(Caption(str(path), text, pid, split))
    raise_if_problems("captions_csv", source, problems)
    if not captions:
        raise DatasetError(f"captions_csv: {source} holds no caption rows")
    return CaptionDataset("captions_csv", str(source), captions)


def read_synthetic_captions(base: Path, dataset: str = "synthetic_captions") -> CaptionDataset:
    """The captions of a synthetic dataset folder (``captions.jsonl``); distractors are left out."""
    file = base / CAPTIONS_FILE
    if not file.is_file():
        raise DatasetError(
            f"{dataset}: {file} does not exist; the folder was not written by svllreid's generator "
            "(or by a version before captions): regenerate it with 'svllreid data synth'"
        )
    problems: list[str] = []
    captions: list[Caption] = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{CAPTIONS_FILE} line {number}: not valid JSON ({err.msg})")
            continue
        if not isinstance(record, dict) or any(k not in record for k in ("path", "pid", "split", "caption")):
            problems.append(f"{CAPTIONS_FILE} line {number}: needs path, pid, split and caption")
            continue
        if record["pid"] == 0:  # distractors: passers-by, no identity to retrieve
            continue
        path = base / record["path"]
        if not path.is_file():
            problems.append(f"{CAPTIONS_FILE} line {number}: image {path} does not exist")
            continue
        split = _SYNTHETIC_SPLITS.get(record["split"])
        if split is None:
            problems.append(f"{CAPTIONS_FILE} line {number}: unknown split {record['split']!r}")
            continue
        captions.append(Caption(str(path), str(record["caption"]), int(record["pid"]), split))
    raise_if_problems(dataset, base, problems)
    return CaptionDataset(dataset, str(base), captions)


@register(
    "synthetic_captions",
    kind="person",
    description="captioned drawn people; by default the pretraining world (its own seed, held-out test ids)",
    task="captions",
)
def synthetic_captions(
    root: str | Path = "",
    *,
    ids: int = PRETRAIN_WORLD["ids"],
    train_ids: int = PRETRAIN_WORLD["train_ids"],
    cameras: int = PRETRAIN_WORLD["cameras"],
    images_per_camera: int = PRETRAIN_WORLD["images_per_camera"],
    seed: int = PRETRAIN_WORLD["seed"],
) -> CaptionDataset:
    """Captions of a synthetic dataset: read from ``root`` if it holds one (of any parameters), else
    generated there (or in the cache when ``root`` is empty) with these parameters.

    Identities ``1..train_ids`` are the train split; the others (their query and gallery images)
    the test split, for zero-shot text-to-image evaluation.
    """
    given = Path(root).expanduser() if root else None
    if given is not None and (given / CAPTIONS_FILE).is_file() and (given / META_FILE).is_file():
        return read_synthetic_captions(given)  # any synthetic dataset (e.g. a ReID set's own captions)
    return read_synthetic_captions(
        ensure_synthetic(
            root, ids=ids, cameras=cameras, images_per_camera=images_per_camera, seed=seed, train_ids=train_ids
        )
    )
