"""Occluded queries, synthetic and from photos: every query occluded within the range, measured on the
masks and pixels; the gallery share; byte-for-byte determinism; clear errors for bad options."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svllreid.config import DataConfig
from svllreid.data.datasets import load_dataset
from svllreid.data.factory import build_dataset
from svllreid.data.occlusion import OCCLUSION_FILE
from svllreid.data.stats import summarize
from svllreid.data.synthesis import CAPTIONS_FILE, generate_synthetic
from svllreid.data.synthesis.attributes import TAG_IMAGE, TAG_OCCLUDER, identity_of, seeded_rng
from svllreid.data.synthesis.occluders import OCCLUDER_KINDS, coverage, occlude, occlusion_range
from svllreid.data.synthesis.scene import camera_of, render
from svllreid.errors import DatasetError

SMALL = {"num_ids": 12, "num_cameras": 3, "images_per_camera": 2, "seed": 3, "image_size": (64, 32)}


def _records(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / CAPTIONS_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def occluded_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("occluded") / "synth"
    generate_synthetic(root, **SMALL, occluded_queries=[0.2, 0.5], occluded_gallery=0.25, workers=1)
    return root


def test_every_synthetic_query_is_occluded_within_the_range_measured_on_its_masks(occluded_synth):
    queries = [r for r in _records(occluded_synth) if r["split"] == "query"]
    assert queries and all(0.2 <= r["coverage"] <= 0.5 for r in queries)
    assert {r["occluder"] for r in queries} <= set(OCCLUDER_KINDS)
    # Draw a few queries again and measure the covered share of the person's mask independently.
    for record in queries[:6]:
        pid, cam = record["pid"], record["camid"]
        index = int(Path(record["path"]).name.split("_")[2]) - 1
        drawn = render(
            SMALL["seed"],
            identity_of(SMALL["seed"], pid),
            camera_of(SMALL["seed"], cam),
            rng=seeded_rng(SMALL["seed"], TAG_IMAGE, pid=pid, cam=cam, index=index),
            size=SMALL["image_size"],
            occlude=(0.2, 0.5),
            occluder_rng=seeded_rng(SMALL["seed"], TAG_OCCLUDER, pid=pid, cam=cam, index=index),
        )
        person, occluder = drawn.person_mask, drawn.occluder_mask
        assert person is not None and occluder is not None and person.sum() > 100
        measured = (person & occluder).sum() / person.sum()
        assert 0.2 <= measured <= 0.5
        assert measured == pytest.approx(record["coverage"], abs=1e-4)


def test_the_stated_share_of_the_synthetic_gallery_is_occluded(occluded_synth):
    gallery = [r for r in _records(occluded_synth) if r["split"] == "gallery"]
    occluded = [r for r in gallery if "occluder" in r]
    assert len(occluded) == round(0.25 * len(gallery))
    assert all(0.2 <= r["coverage"] <= 0.5 for r in occluded)
    assert not any("occluder" in r for r in _records(occluded_synth) if r["split"] == "train")
    meta = json.loads((occluded_synth / "synthetic.json").read_text())
    assert meta["counts"]["occluded"] == {"train": 0, "query": meta["counts"]["query"], "gallery": len(occluded)}


def test_occluded_synthetic_data_is_byte_identical_and_trains_on_the_holistic_images(occluded_synth, tmp_path):
    again = tmp_path / "again"
    generate_synthetic(again, **SMALL, occluded_queries="20-50%", occluded_gallery=0.25, workers=2)
    holistic = tmp_path / "holistic"
    generate_synthetic(holistic, **SMALL, workers=1)
    for path in sorted(occluded_synth.rglob("*.jpg")):
        relative = path.relative_to(occluded_synth)
        assert (again / relative).read_bytes() == path.read_bytes(), relative
        if relative.parts[0] == "bounding_box_train":
            assert (holistic / relative).read_bytes() == path.read_bytes(), relative
    assert (again / CAPTIONS_FILE).read_bytes() == (occluded_synth / CAPTIONS_FILE).read_bytes()


def test_the_synthetic_dataset_option_counts_its_occluded_images(tmp_path, monkeypatch):
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path))
    dataset = load_dataset("synthetic", ids=12, cameras=3, images_per_camera=2, seed=3, occluded_queries=[0.2, 0.5])
    stats = summarize(dataset)
    assert stats["query"]["occluded"] == stats["query"]["images"] > 0
    assert stats["gallery"]["occluded"] == round(0.1 * stats["gallery"]["images"])
    assert stats["train"]["occluded"] == 0
    assert dataset.occlusion == (0.2, 0.5, 3)
    assert (
        "occluded" not in summarize(load_dataset("synthetic", ids=12, cameras=3, images_per_camera=2, seed=3))["query"]
    )


def _noise_pku(root: Path) -> Path:
    """A PKU tree of random-noise photos (so that any pasted occluder changes the pixels it covers)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for pid in range(1, 7):
        for cam in (1, 2):
            for o in (1, 2):
                pixels = rng.integers(0, 256, size=(64, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / "images" / f"{pid:03d}_{cam:02d}_{o}.png")
    (root / "split.json").write_text(json.dumps({"train_ids": [1, 2, 3], "test_ids": [4, 5, 6]}))
    return root


def test_pku_occluded_queries_cover_the_stated_share_and_leave_the_gallery(tmp_path, monkeypatch):
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))
    root = _noise_pku(tmp_path / "pku")
    plain = load_dataset("pku", str(root))
    dataset = load_dataset("pku", str(root), occluded_queries=[0.25, 0.45], occlusion_seed=7)
    assert [s.name for s in dataset.splits] == [f"{s.name} (occluded queries)" for s in plain.splits]
    folder = Path(dataset.splits[0].query[0].path).parent
    records = json.loads((folder / OCCLUSION_FILE).read_text())
    train_paths = {s.path for s in plain.train}
    for occluded_split, split in zip(dataset.splits, plain.splits, strict=True):
        assert occluded_split.gallery == split.gallery  # untouched
        assert len(occluded_split.query) == len(split.query)
        for copy, original in zip(occluded_split.query, split.query, strict=True):
            assert copy.path in dataset.occluded and (copy.pid, copy.camid) == (original.pid, original.camid)
            record = records[Path(copy.path).name]
            assert record["source"] == original.path
            assert 0.25 <= record["coverage"] <= 0.45
            changed = np.any(
                np.asarray(Image.open(copy.path)) != np.asarray(Image.open(original.path).convert("RGB")), axis=-1
            ).mean()
            assert changed == pytest.approx(record["coverage"], abs=0.03)
            if "photo" in record:  # an occluding person is cut from a training identity, never the query's
                assert record["photo"] in train_paths
    assert summarize(dataset)["query"]["occluded"] == len(dataset.query)
    assert summarize(dataset)["gallery"]["occluded"] == 0


def test_pku_occluded_queries_are_deterministic_byte_for_byte(tmp_path, monkeypatch):
    root = _noise_pku(tmp_path / "pku")
    copies = []
    for cache in ("one", "two"):
        monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / cache))
        dataset = load_dataset("pku", str(root), occluded_queries="20-50%")
        queries = [s for split in dataset.splits for s in split.query]
        copies.append({Path(s.path).name: Path(s.path).read_bytes() for s in queries})
    assert copies[0] == copies[1] and len(copies[0]) == 12
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "three"))
    other = load_dataset("pku", str(root), occluded_queries="20-50%", occlusion_seed=1)
    assert {Path(s.path).name: Path(s.path).read_bytes() for s in other.query} != {
        name: data for name, data in copies[0].items() if name in {Path(s.path).name for s in other.query}
    }


def test_a_validation_split_of_an_occluded_dataset_has_occluded_queries(tmp_path, monkeypatch):
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))
    root = _noise_pku(tmp_path / "pku")
    (root / "split.json").write_text(json.dumps({"train_ids": [1, 2, 3, 4], "test_ids": [5, 6]}))
    cfg = DataConfig(dataset="pku", root=str(root), options={"occluded_queries": [0.2, 0.5]}, validation_ids=1)
    dataset = build_dataset(dataclasses.replace(cfg, check="off"))
    validation = dataset.validation
    assert validation is not None and validation.name == "validation (occluded queries)"
    assert all(s.path in dataset.occluded for s in validation.query)
    assert not any(s.path in dataset.occluded for s in validation.gallery)
    held = {Path(s.path).name[:3] for s in validation.gallery}  # the held-out identities' own names
    folder = Path(validation.query[0].path).parent
    photos = [r["photo"] for r in json.loads((folder / OCCLUSION_FILE).read_text()).values() if "photo" in r]
    assert all(Path(photo).name[:3] not in held for photo in photos)  # cut from identities that still train


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"occluded_queries": "0.7-0.2"}, "0 < low <= high < 1"),
        ({"occluded_queries": "lots"}, "like [0.2, 0.5] or '20-50%'"),
        ({"occluded_queries": [0.3, 0.31]}, "must span at least 0.05"),
        ({"occluded_queries": [0.2, 0.5], "occluded_gallery": 1.5}, "occluded_gallery must be the share"),
        ({"occluded_queries": [0.2, 0.5], "occlusion_seed": "x"}, "occlusion_seed must be an integer"),
    ],
)
def test_bad_occlusion_options_are_clear_errors(tmp_path, monkeypatch, options, message):
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path))
    name = "pku" if "occlusion_seed" in options else "synthetic"
    root = str(_noise_pku(tmp_path / "pku")) if name == "pku" else ""
    with pytest.raises(DatasetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_dataset(name, root, **options)
    assert not list(tmp_path.glob("synthetic-*"))  # nothing was drawn


def test_occlusion_range_reads_pairs_percentages_and_none():
    assert occlusion_range([0.2, 0.5]) == (0.2, 0.5)
    assert occlusion_range("20-50%") == (0.2, 0.5)
    assert occlusion_range("0.1..0.4") == (0.1, 0.4)
    assert occlusion_range(None) is None and occlusion_range("") is None


def test_every_kind_of_occluder_hits_a_target_range_on_a_drawn_mask():
    person = np.zeros((192, 96), dtype=bool)
    person[20:185, 30:66] = True
    rng = np.random.default_rng(5)
    for kind in OCCLUDER_KINDS:
        for _ in range(3):
            layer, occlusion = occlude(person, (0.3, 0.4), rng, kinds=[kind])
            assert occlusion.kind == kind or occlusion.kind == "pole"
            assert 0.3 <= coverage(person, np.asarray(layer)[..., 3] > 0) == occlusion.coverage <= 0.4


def test_pku_occluders_do_not_depend_on_where_the_dataset_lives(tmp_path, monkeypatch):
    copies = []
    for place in ("here", "there"):
        root = _noise_pku(tmp_path / place / "pku")
        monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / place / "cache"))
        dataset = load_dataset("pku", str(root), occluded_queries="20-50%")
        copies.append({Path(s.path).name: Path(s.path).read_bytes() for split in dataset.splits for s in split.query})
    assert copies[0] == copies[1]


def test_synthetic_occluded_counts_hold_for_a_relative_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset = load_dataset(
        "synthetic", "rel", ids=12, cameras=3, images_per_camera=2, seed=3, occluded_queries=[0.2, 0.5]
    )
    stats = summarize(dataset)
    assert stats["query"]["occluded"] == stats["query"]["images"] > 0
    assert any(note.startswith("occluded queries") and " 0 of " not in note for note in dataset.notes)


def test_an_occluded_synthetic_cache_drawn_by_older_occluders_is_drawn_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path))
    options = {"ids": 12, "cameras": 3, "images_per_camera": 2, "seed": 3, "occluded_queries": [0.2, 0.5]}
    first = load_dataset("synthetic", **options)
    meta_path = Path(first.root) / "synthetic.json"
    meta = json.loads(meta_path.read_text())
    meta["occluder_version"] -= 1
    meta_path.write_text(json.dumps(meta))
    again = load_dataset("synthetic", **options)
    assert json.loads(meta_path.read_text())["occluder_version"] == meta["occluder_version"] + 1
    assert summarize(again)["query"]["occluded"] == summarize(first)["query"]["occluded"]
