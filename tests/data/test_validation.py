"""A validation split carved from the training identities."""

from __future__ import annotations

from pathlib import Path

import pytest

from svllreid.config import load_config
from svllreid.data.datasets import load_dataset
from svllreid.data.factory import build_dataset
from svllreid.data.validation import carve_validation
from tests.conftest import write_images


def test_held_out_identities_leave_training_and_form_a_split_beside_the_test_splits(market_root: Path):
    dataset = load_dataset("market1501", str(market_root))
    original_train = {s.path: s for s in dataset.train}
    carved = carve_validation(dataset, 1, seed=3)
    assert carved.splits == dataset.splits  # the test splits stay as they were
    assert carved.validation is not None and carved.validation.name == "validation"
    split = carved.validation
    held_paths = {s.path for s in split.query + split.gallery}
    train_paths = {s.path for s in carved.train}
    assert held_paths and not held_paths & train_paths
    assert held_paths | train_paths == set(original_train)  # nothing from the test splits, nothing lost
    held_pids = {original_train[p].pid for p in held_paths}
    assert len(held_pids) == 1
    assert sorted({s.pid for s in carved.train}) == list(range(dataset.num_train_ids - 1))  # relabelled
    # Every held-out image is a query against all the others.
    assert split.query == split.gallery and {s.path for s in split.query} == held_paths
    assert carve_validation(dataset, 1, seed=3).validation == carved.validation  # seeded
    assert "held out" in carved.notes[-1]
    view = carved.validation_dataset()
    assert view is not None and view.splits == [split] and view.validation is None
    assert dataset.validation_dataset() is None


def test_validation_ids_out_of_range_and_config(market_root: Path):
    dataset = load_dataset("market1501", str(market_root))
    with pytest.raises(ValueError, match=r"data\.validation_ids must be in 1\.\."):
        carve_validation(dataset, dataset.num_train_ids - 1)
    cfg = load_config(None, ["data.dataset=market1501", f"data.root={market_root}", "data.validation_ids=1"])
    built = build_dataset(cfg.data)
    assert built.validation is not None and built.num_train_ids == dataset.num_train_ids - 1
    assert built.splits == dataset.splits


def _flanks(root: Path, ids: int, per_side: int = 1, one_sided: int = 0) -> Path:
    """Animals photographed from the left and the right flank (camera = side), ``per_side`` photos each;
    the last ``one_sided`` animals only from the left."""
    for i in range(ids):
        sides = ("left",) if i >= ids - one_sided else ("left", "right")
        write_images(root / f"animal-{i:02d}", [f"a{i}_{side}_{k}.jpg" for side in sides for k in range(per_side)])
    return root


def test_one_photo_per_side_gives_one_query_and_one_gallery_image(tmp_path: Path):
    # Before: every test animal's two photos both became queries (one per camera) and the gallery was empty.
    dataset = load_dataset("folder", str(_flanks(tmp_path, 10)), camera_regex=r"_(left|right)_")
    assert len(dataset.query) == len(dataset.gallery) == 5
    cameras = {(s.pid, s.camid) for s in dataset.gallery}
    assert all(any(pid == q.pid and cam != q.camid for pid, cam in cameras) for q in dataset.query)
    assert {s.camid for s in dataset.query} == {0, 1}  # which side is the query is drawn per animal
    carved = carve_validation(load_dataset("folder", str(tmp_path), camera_regex=r"_(left|right)_"), 3, seed=1)
    assert carved.validation is not None
    assert len(carved.validation.query) == 6  # both flanks of 3 animals, each a query against the rest


def test_one_sided_identities_train_and_are_never_queried(tmp_path: Path):
    dataset = load_dataset(
        "folder", str(_flanks(tmp_path, 12, per_side=2, one_sided=4)), camera_regex=r"_(left|right)_"
    )
    one_sided = {f"animal-{i:02d}" for i in range(8, 12)}
    trained = {dataset.identity_name(s.pid, train=True) for s in dataset.train}
    tested = {dataset.identity_name(s.pid) for s in dataset.query + dataset.gallery}
    assert one_sided <= trained and not one_sided & tested and len(tested) == 6
    assert any("4 identities lack images from two cameras" in note for note in dataset.notes)
    assert len(dataset.query) == 12  # two cameras with two photos each: one query per camera
    with pytest.raises(ValueError, match="only 2 of folder's 6 training identities have images from two cameras"):
        carve_validation(dataset, 3)


def test_no_identity_that_can_be_queried_is_explained(tmp_path: Path):
    from svllreid.errors import DatasetError

    with pytest.raises(DatasetError, match="no identity has images from two cameras"):
        load_dataset("folder", str(_flanks(tmp_path, 4, one_sided=4)), camera_regex=r"_(left|right)_")


def test_given_splits_lose_only_the_queries_nothing_can_answer(tmp_path: Path):
    write_images(tmp_path / "train" / "p1", ["a_c1.jpg", "b_c2.jpg"])
    write_images(tmp_path / "query" / "p2", ["q_c1.jpg"])
    write_images(tmp_path / "gallery" / "p2", ["g_c2.jpg"])
    write_images(tmp_path / "query" / "p3", ["q_c1.jpg"])  # its only gallery image is from the same camera
    write_images(tmp_path / "gallery" / "p3", ["g_c1.jpg"])
    write_images(tmp_path / "query" / "p4", ["q_c2.jpg"])  # no gallery image at all
    dataset = load_dataset("folder", str(tmp_path), camera_regex=r"_(c\d)\.")
    assert [dataset.identity_name(s.pid) for s in dataset.query] == ["p2"]
    assert any("2 query images of 2 identities have no gallery image" in note for note in dataset.notes)
