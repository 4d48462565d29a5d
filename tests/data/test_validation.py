"""A validation split carved from the training identities."""

from __future__ import annotations

from pathlib import Path

import pytest

from svllreid.config import load_config
from svllreid.data.datasets import load_dataset
from svllreid.data.factory import build_dataset
from svllreid.data.validation import carve_validation


def test_held_out_identities_leave_training_and_form_the_only_split(market_root: Path):
    dataset = load_dataset("market1501", str(market_root))
    original_train = {s.path: s for s in dataset.train}
    carved = carve_validation(dataset, 1, seed=3)
    split = carved.splits[0]
    assert [s.name for s in carved.splits] == ["validation"]
    held_paths = {s.path for s in split.query + split.gallery}
    train_paths = {s.path for s in carved.train}
    assert held_paths and not held_paths & train_paths
    assert held_paths | train_paths == set(original_train)  # nothing from the test splits, nothing lost
    held_pids = {original_train[p].pid for p in held_paths}
    assert len(held_pids) == 1
    assert sorted({s.pid for s in carved.train}) == list(range(dataset.num_train_ids - 1))  # relabelled
    # One query per identity and camera; the rest of its images are the gallery.
    assert len({(s.pid, s.camid) for s in split.query}) == len(split.query)
    assert carve_validation(dataset, 1, seed=3).splits == carved.splits  # seeded
    assert "held out" in carved.notes[-1]


def test_validation_ids_out_of_range_and_config(market_root: Path):
    dataset = load_dataset("market1501", str(market_root))
    with pytest.raises(ValueError, match=r"data\.validation_ids must be in 1\.\."):
        carve_validation(dataset, dataset.num_train_ids - 1)
    cfg = load_config(None, ["data.dataset=market1501", f"data.root={market_root}", "data.validation_ids=1"])
    built = build_dataset(cfg.data)
    assert built.splits[0].name == "validation" and built.num_train_ids == dataset.num_train_ids - 1
