"""Datasets keep their own identity names (folder names, original numbers) for figures, through the
relabelling of training identities and the validation carve."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from svllreid.data.datasets import load_dataset
from svllreid.data.validation import carve_validation
from tests.conftest import write_images


def _identity_folders(root: Path, names: list[str], per_id: int = 4) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_id):
            Image.new("RGB", (24, 20), (i * 40, 30, 60)).save(root / name / f"{i}_{'left' if i % 2 else 'right'}.jpg")
    return root


def test_folder_names_survive_relabelling(tmp_path: Path) -> None:
    names = ["060", "075", "012", "088", "001", "074"]  # integer names: the numbers are kept for testing
    dataset = load_dataset("folder", _identity_folders(tmp_path / "nyala", names), camera_regex=r"_(left|right)\.")
    train_ids = sorted({s.pid for s in dataset.train})
    assert train_ids == list(range(len(train_ids)))  # relabelled ...
    assert {dataset.identity_name(pid, train=True) for pid in train_ids} <= set(names)  # ... named as on disk
    test_ids = {s.pid for s in dataset.query + dataset.gallery}
    assert {dataset.identity_name(pid) for pid in test_ids} == set(names) - {
        dataset.identity_name(pid, train=True) for pid in train_ids
    }
    assert all(dataset.identity_name(pid) == f"{pid:03d}" for pid in test_ids)  # 60 is known as "060"
    assert dataset.identity_name(99, train=True) == "99"  # unknown: the number itself


def test_named_identities_and_the_validation_carve(tmp_path: Path) -> None:
    names = [f"nyala-{c}" for c in "abcdefgh"]
    dataset = load_dataset("folder", _identity_folders(tmp_path / "zoo", names), test_fraction=0.25)
    carved = carve_validation(dataset, 2, seed=0)
    validation = carved.validation_dataset()
    assert validation is not None
    kept = {carved.identity_name(s.pid, train=True) for s in carved.train}
    held = {validation.identity_name(s.pid) for s in validation.query + validation.gallery}
    trained_on = {dataset.identity_name(s.pid, train=True) for s in dataset.train}
    assert kept | held == trained_on and not kept & held and len(held) == 2
    assert all(name.startswith("nyala-") for name in kept | held)


def test_standard_datasets_name_training_ids_by_their_own_numbers(market_root: Path) -> None:
    dataset = load_dataset("market1501", market_root)
    originals = sorted({int(Path(s.path).name.split("_")[0]) for s in dataset.train})
    assert [dataset.identity_name(pid, train=True) for pid in range(len(originals))] == [str(n) for n in originals]


def test_identity_folders_of_symbolic_links_are_read_as_laid_out(tmp_path: Path) -> None:
    # A user's sorted view of a photo library: identity folders of links to photos kept elsewhere.
    from svllreid.data.images import file_labels, list_images

    library = tmp_path / "library"
    write_images(library, ["a1.jpg", "a2.jpg", "b1.jpg"])
    view = tmp_path / "view"
    for name, identity in (("a1.jpg", "ann"), ("a2.jpg", "ann"), ("b1.jpg", "bob")):
        (view / identity).mkdir(parents=True, exist_ok=True)
        (view / identity / name).symlink_to(library / name)
    paths = list_images(view)
    labels = file_labels(paths, what="pid", root=view, folders=True)
    assert labels is not None and labels.names is not None
    assert [labels.names[int(i)] for i in labels.ids] == ["ann", "ann", "bob"]
    with pytest.raises(ValueError, match="is not inside"):
        file_labels([str(library / "a1.jpg")], what="pid", root=view, folders=True)
