"""The synthetic Market-1501 style generator: layout, split rules, determinism and caching."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svllreid.data.synthesis import FORMAT_VERSION, SynthSummary, generate_synthetic, synthetic_matches
from svllreid.data.synthesis.attributes import UPPER_COLORS, sample_identity

MARKET_NAME = re.compile(r"^(\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
SMALL = {"num_ids": 6, "num_cameras": 3, "images_per_camera": 3, "seed": 0}


def scan(root: Path) -> dict[str, list[tuple[int, int, str]]]:
    """(pid, camera, file name) of every file per split; asserts the Market-1501 naming."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for split, folder in FOLDERS.items():
        entries = []
        for path in sorted((root / folder).iterdir()):
            match = MARKET_NAME.match(path.name)
            assert match, f"{path.name} is not a Market-1501 name"
            pid, cam, seq, _frame, box = (int(g) for g in match.groups())
            assert seq == 1 and box == 0
            entries.append((pid, cam, path.name))
        out[split] = entries
    return out


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.jpg"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    root = tmp_path_factory.mktemp("synthetic") / "market"
    return root, generate_synthetic(root, **SMALL, workers=1)


def test_layout_names_and_images(small):
    root, summary = small
    assert summary.root == root and summary.num_ids == 6 and summary.num_cameras == 3
    assert summary.seconds > 0
    files = scan(root)
    names = [name for entries in files.values() for _, _, name in entries]
    assert len(names) == len(set(names)), "file names must be unique across splits"
    for split, entries in files.items():
        assert entries, f"{split} is empty"
        for _pid, cam, name in entries:
            assert 1 <= cam <= 3
            with Image.open(root / FOLDERS[split] / name) as img:
                assert img.format == "JPEG" and img.mode == "RGB"
                assert img.size == (64, 128)  # (width, height) for image_size (128, 64)
                pixels = np.asarray(img, dtype=np.float32)
            assert pixels.std() > 10, f"{name} looks blank"


def test_split_rules(small):
    root, _ = small
    files = scan(root)
    ids = {split: {pid for pid, _, _ in entries} for split, entries in files.items()}
    train_ids = ids["train"]
    test_ids = (ids["query"] | ids["gallery"]) - {0}
    assert train_ids == set(range(1, math.ceil(6 / 2) + 1))
    assert test_ids == {4, 5, 6}
    assert not train_ids & test_ids
    assert 0 not in ids["train"] and 0 not in ids["query"]
    assert 0 in ids["gallery"], "the gallery has pid 0000 distractors"

    per_cam: dict[tuple[int, int], int] = defaultdict(int)
    cams_of: dict[int, set[int]] = defaultdict(set)
    for entries in files.values():
        for pid, cam, _ in entries:
            if pid:
                per_cam[pid, cam] += 1
                cams_of[pid].add(cam)
    assert set(cams_of) == set(range(1, 7))
    assert all(len(cams) >= 2 for cams in cams_of.values()), "every identity is seen by >= 2 cameras"
    assert set(per_cam.values()) == {3}, "images_per_camera images in every camera an identity appears in"

    query = defaultdict(list)
    gallery = defaultdict(set)
    for pid, cam, _ in files["query"]:
        query[pid].append(cam)
    for pid, cam, _ in files["gallery"]:
        gallery[pid].add(cam)
    for pid in test_ids:
        assert sorted(query[pid]) == sorted(cams_of[pid]), "one query per camera the identity is in"
        assert gallery[pid] == cams_of[pid], "the other images of each camera are in the gallery"
        for cam in query[pid]:  # a true match in another camera (Market's evaluation protocol)
            assert gallery[pid] - {cam}

    distractors = sum(1 for pid, _, _ in files["gallery"] if pid == 0)
    real = len(files["gallery"]) - distractors
    assert 1 <= distractors <= max(1, round(0.1 * real))


def test_metadata_records_parameters_and_counts(small):
    root, summary = small
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["version"] == FORMAT_VERSION
    assert {k: meta[k] for k in SMALL} == SMALL
    assert meta["image_size"] == [128, 64]
    files = scan(root)
    on_disk = {split: len(entries) for split, entries in files.items()}
    assert {split: meta["counts"][split] for split in FOLDERS} == on_disk == summary.images
    assert meta["counts"]["distractors"] == sum(1 for pid, _, _ in files["gallery"] if pid == 0)
    assert sorted(p.name for p in root.iterdir()) == sorted([*FOLDERS.values(), "synthetic.json", "captions.jsonl"])


def test_same_seed_is_byte_identical_whatever_the_workers(small, tmp_path):
    root, _ = small
    again = tmp_path / "again"
    generate_synthetic(again, **SMALL, workers=2)
    assert hashes(again) == hashes(root)


def test_different_seed_gives_different_data(small, tmp_path):
    root, _ = small
    other = tmp_path / "other"
    generate_synthetic(other, **{**SMALL, "seed": 1}, workers=1)
    first, second = hashes(root), hashes(other)
    assert first != second
    common = set(first) & set(second)
    assert sum(first[k] != second[k] for k in common) == len(common), "same name, same bytes across seeds"


def test_synthetic_matches(small, tmp_path):
    root, _ = small
    assert synthetic_matches(root, **SMALL)
    assert synthetic_matches(str(root), **SMALL, image_size=(128, 64))
    for key, value in (("num_ids", 7), ("num_cameras", 4), ("images_per_camera", 2), ("seed", 1)):
        assert not synthetic_matches(root, **{**SMALL, key: value}), key
    assert not synthetic_matches(root, **SMALL, image_size=(256, 128))
    assert not synthetic_matches(tmp_path / "missing", **SMALL)
    (tmp_path / "empty").mkdir()
    assert not synthetic_matches(tmp_path / "empty", **SMALL)


def test_incomplete_or_regenerated_folders(tmp_path):
    root = tmp_path / "synth"
    params = {"num_ids": 2, "num_cameras": 2, "images_per_camera": 2, "seed": 3}
    generate_synthetic(root, **params)
    assert synthetic_matches(root, **params)
    next((root / "bounding_box_test").iterdir()).unlink()
    assert not synthetic_matches(root, **params), "a missing image must invalidate the cache"
    (root / "synthetic.json").write_text("{not json")
    assert not synthetic_matches(root, **params)

    # Regenerating with other parameters replaces everything: no stale files survive.
    new = {**params, "num_ids": 3, "images_per_camera": 1}
    summary = generate_synthetic(root, **new, image_size=(64, 32))
    assert synthetic_matches(root, **new, image_size=(64, 32))
    assert not synthetic_matches(root, **params)
    files = scan(root)
    assert {split: len(entries) for split, entries in files.items()} == summary.images
    for entries in files.values():
        for _, _, name in entries:
            assert name.endswith(".jpg")
    with Image.open(next((root / "query").iterdir())) as img:
        assert img.size == (32, 64)
    # One image per camera: the queries' true matches come from the identity's last camera.
    query_cams = defaultdict(set)
    gallery_cams = defaultdict(set)
    for pid, cam, _ in files["query"]:
        query_cams[pid].add(cam)
    for pid, cam, _ in files["gallery"]:
        gallery_cams[pid].add(cam)
    for pid, cams in query_cams.items():
        assert gallery_cams[pid] and not gallery_cams[pid] & cams


def test_refuses_to_overwrite_foreign_data(tmp_path):
    foreign = tmp_path / "market" / "bounding_box_train" / "0002_c1s1_000451_03.jpg"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"real data")
    with pytest.raises(FileExistsError, match=r"synthetic\.json"):
        generate_synthetic(tmp_path / "market", num_ids=2, num_cameras=2, images_per_camera=1)
    assert foreign.read_bytes() == b"real data"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_ids": 1}, "num_ids"),
        ({"num_ids": 0}, "num_ids"),
        ({"num_ids": 10_000}, "num_ids"),
        ({"num_ids": 4.5}, "num_ids"),
        ({"num_cameras": 1}, "num_cameras"),
        ({"num_cameras": 10}, "num_cameras"),
        ({"images_per_camera": 0}, "images_per_camera"),
        ({"images_per_camera": "3"}, "images_per_camera"),
        ({"seed": -1}, "seed"),
        ({"image_size": (8, 4)}, "image_size"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_synthetic(tmp_path / "out", **{"num_ids": 4, "num_cameras": 2, **kwargs})
    assert not (tmp_path / "out").exists(), "nothing is written for bad arguments"


def test_colour_alone_does_not_identify_people():
    rng = np.random.default_rng(0)
    people = [sample_identity(rng) for _ in range(30)]
    assert {p.upper_color for p in people} <= set(UPPER_COLORS)
    sharing = [(a, b) for a, b in combinations(people, 2) if a.upper_color == b.upper_color]
    assert sharing, "some identities must share an upper-clothing colour"
    assert all(a != b for a, b in sharing), "people sharing a colour differ in other attributes"
    assert any(a.upper_color == b.upper_color and a.lower_color == b.lower_color for a, b in sharing)
    assert len(set(people)) == len(people)
    for field in ("lower_color", "skin", "hair_style", "bag", "upper_pattern", "lower_type"):
        values = [getattr(p, field) for p in people]
        assert len(set(values)) > 1, f"{field} never varies"
        assert len(set(values)) < len(values), f"{field} is never shared"


def test_market1501_parser_reads_it(small):
    root, summary = small
    try:
        from svllreid.data.datasets import load_dataset
    except ImportError as err:  # the parsers are optional for this module
        pytest.skip(f"dataset parsers not importable: {err}")
    ds = load_dataset("market1501", str(root))
    assert len(ds.train) == summary.images["train"]
    split = ds.splits[0]
    assert len(split.query) == summary.images["query"]
    assert len(split.gallery) == summary.images["gallery"]
    assert any(s.pid == 0 for s in split.gallery)
