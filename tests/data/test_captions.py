"""Captions of the synthetic generator and the caption dataset parsers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from svllreid.data.check import check_dataset
from svllreid.data.datasets import load_caption_dataset, load_dataset
from svllreid.data.stats import dataset_stats
from svllreid.data.synthesis import CAPTIONS_FILE, PRETRAIN_WORLD, generate_synthetic, identity_attributes
from svllreid.data.synthesis.attributes import identity_of
from svllreid.data.synthesis.captions import describe, visible_parts
from svllreid.errors import DatasetError
from tests.conftest import write_images

SMALL = {"num_ids": 16, "num_cameras": 4, "images_per_camera": 2, "seed": 3}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "ds"
    generate_synthetic(root, workers=1, **SMALL)
    return root


def records(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / CAPTIONS_FILE).read_text().splitlines()]


def test_every_image_has_one_caption_and_captions_are_deterministic(synth: Path, tmp_path: Path):
    rows = records(synth)
    images = sorted(str(p.relative_to(synth)) for p in synth.glob("*/*.jpg"))
    assert sorted(r["path"] for r in rows) == images
    again = tmp_path / "again"
    generate_synthetic(again, workers=2, **SMALL)  # other worker count, same captions
    assert (again / CAPTIONS_FILE).read_bytes() == (synth / CAPTIONS_FILE).read_bytes()
    other = tmp_path / "other"
    generate_synthetic(other, workers=1, **{**SMALL, "seed": 4})
    assert (other / CAPTIONS_FILE).read_bytes() != (synth / CAPTIONS_FILE).read_bytes()


def test_captions_say_what_the_drawn_person_shows(synth: Path):
    rows = [r for r in records(synth) if r["pid"] != 0]
    assert rows
    for r in rows:
        attrs = identity_attributes(identity_of(SMALL["seed"], r["pid"]))
        text, view = r["caption"].lower(), r["view"]
        assert ("backpack" in text) == (attrs["bag"] == "backpack"), r
        assert ("straps of a backpack" in text) == (attrs["bag"] == "backpack" and view == "front"), r
        assert ("handbag" in text) == (attrs["bag"] == "handbag"), r
        assert ("logo" in text) == (attrs["upper_pattern"] == "logo" and view == "front"), r
        assert ("jacket" in text) == (attrs["upper_pattern"] == "jacket" and view != "back"), r
        assert ("stripes" in text) == (attrs["upper_pattern"] in ("hstripes", "vstripes")), r
        assert (" cap" in text) == (attrs["hat"] == "cap") and ("beanie" in text) == (attrs["hat"] == "beanie"), r
        assert ("skirt" in text) == (attrs["lower_type"] == "skirt"), r
        assert ("shorts" in text) == (attrs["lower_type"] == "shorts"), r
        if attrs["hair_style"] == "bald":
            assert "bald" in text or "no hair" in text, r
        else:
            assert f"{attrs['hair_color']} hair" in text and attrs["hair_style"] in text, r
        assert attrs["upper_color"] in text and attrs["lower_color"] in text and attrs["shoe_color"] in text, r


def test_visible_parts_follow_the_viewpoint():
    attrs = {
        "hair_color": "black",
        "hair_style": "short",
        "hat": "none",
        "hat_color": "red",
        "upper_color": "red",
        "upper_color2": "white",
        "upper_pattern": "logo",
        "long_sleeves": True,
        "lower_color": "grey",
        "lower_type": "trousers",
        "shoe_color": "black",
        "bag": "shoulder",
        "bag_color": "brown",
        "bag_side": "right",
    }
    assert visible_parts(attrs, "front")["pattern"] == "logo"
    assert visible_parts(attrs, "back")["pattern"] == "plain" and visible_parts(attrs, "back")["top_second"] is None
    # The bag hangs on the person's right: a right-side view shows it, a left-side view only the strap.
    assert visible_parts(attrs, "right")["bag"] == "shoulder bag"
    assert visible_parts(attrs, "left")["bag"] == "shoulder strap"
    assert visible_parts(attrs, "left")["bag_side"] is None
    backpack = {**attrs, "bag": "backpack"}
    assert visible_parts(backpack, "front")["bag"] == "backpack straps"
    assert visible_parts(backpack, "back")["bag"] == "backpack"
    with pytest.raises(ValueError, match="view must be one of"):
        visible_parts(attrs, "top")
    texts = {describe(attrs, "front", np.random.default_rng(s)) for s in range(40)}
    assert len(texts) >= 8  # templates, word orders and synonyms vary
    assert all("logo" in t for t in texts)


def test_synthetic_captions_dataset_splits_held_out_identities(tmp_path: Path):
    root = tmp_path / "world"
    dataset = load_caption_dataset(
        "synthetic_captions", str(root), ids=12, train_ids=9, cameras=3, images_per_camera=1, seed=11
    )
    train, test = dataset.split("train"), dataset.split("test")
    assert {c.pid for c in train} == set(range(1, 10))
    assert {c.pid for c in test} == {10, 11, 12}
    assert all(Path(c.path).is_file() and c.caption for c in train + test)
    # Any synthetic folder reads back, e.g. a ReID set's own captions.
    again = load_caption_dataset("synthetic_captions", str(root))
    assert again.captions == dataset.captions


def test_pretraining_world_seed_is_no_reid_seed():
    """Pretraining never sees an evaluation identity: no synthetic ReID set of the project uses its seed."""
    import yaml

    from svllreid.data.datasets import get_dataset_entry

    project = Path(__file__).resolve().parents[2]
    files = [*(project / "configs").rglob("*.yaml"), project / "svllreid" / "resources" / "demo.yaml"]
    seeds = {get_dataset_entry("synthetic").options["seed"]}
    for file in files:
        data = (yaml.safe_load(file.read_text()) or {}).get("data", {})
        if data.get("dataset", "synthetic") == "synthetic":
            seeds.add(data.get("options", {}).get("seed", 0))
    assert PRETRAIN_WORLD["seed"] not in seeds
    assert PRETRAIN_WORLD["ids"] >= 2000 and PRETRAIN_WORLD["train_ids"] < PRETRAIN_WORLD["ids"]


# ------------------------------------------------------------------------------------------------
# The released benchmarks' layouts, on fake trees
# ------------------------------------------------------------------------------------------------

RELEASED = {
    "cuhk_pedes": ("reid_raw.json", "file_path", ["CUHK01/0001.png", "CUHK01/0002.png", "test_query/p3.png"]),
    "icfg_pedes": ("ICFG-PEDES.json", "file_path", ["train/0001/a.jpg", "train/0002/b.jpg", "test/0003/c.jpg"]),
    "rstpreid": ("data_captions.json", "img_path", ["0001_c1_01.jpg", "0002_c2_01.jpg", "0003_c3_01.jpg"]),
}


def released_tree(tmp_path: Path, name: str, records: list[dict] | None = None) -> Path:
    annotation, key, paths = RELEASED[name]
    root = tmp_path / name
    write_images(root / "imgs", paths)
    if records is None:
        records = [
            {"id": 1, "split": "train", "captions": ["a man in red.", "red top, jeans."], key: paths[0]},
            {"id": 2, "split": "val", "captions": ["a woman with a bag."], key: paths[1]},
            {"id": 3, "split": "test", "captions": ["someone in black."], key: paths[2], "processed_tokens": []},
        ]
    (root / annotation).write_text(json.dumps(records))
    return root


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_layouts_parse(tmp_path: Path, name: str):
    root = released_tree(tmp_path, name)
    dataset = load_caption_dataset(name, str(root))
    assert [(c.pid, c.split, c.caption) for c in dataset.captions] == [
        (1, "train", "a man in red."),
        (1, "train", "red top, jeans."),
        (2, "val", "a woman with a bag."),
        (3, "test", "someone in black."),
    ]
    assert all(Path(c.path).is_file() and "/imgs/" in c.path for c in dataset.captions)
    assert dataset.splits == ["train", "val", "test"]
    stats = dataset_stats(name, str(root))
    assert stats["train"] == {"ids": 1, "images": 1, "captions": 2}
    assert check_dataset(name, str(root)).ok


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_layouts_report_malformed_json_missing_keys_and_images(tmp_path: Path, name: str):
    annotation, key, paths = RELEASED[name]
    root = released_tree(tmp_path, name)
    (root / annotation).write_text('[{"id": 1, "split": "train"')
    with pytest.raises(DatasetError, match=rf"{annotation} is not valid JSON \(line 1"):
        load_caption_dataset(name, str(root))
    records = [
        {"id": 1, "split": "train", "captions": ["ok"]},  # no image path
        {"id": 2, "split": "train", "captions": ["ok"], key: "nope/missing.jpg"},
        {"id": 3, "split": "dev", "captions": ["ok"], key: paths[0]},
        {"id": "x", "split": "test", "captions": ["ok"], key: paths[1]},
        {"id": 4, "split": "test", "captions": [], key: paths[2]},
    ]
    root = released_tree(tmp_path / "bad", name, records)
    with pytest.raises(DatasetError) as err:
        load_caption_dataset(name, str(root))
    message = str(err.value)
    assert "5 problem(s)" in message
    assert f"record 0: missing key(s) {key}" in message
    assert "missing.jpg does not exist" in message
    assert "split 'dev' is not one of train, val, test" in message
    assert "id 'x' is not an integer" in message
    assert "'captions' must be a non-empty list" in message
    report = check_dataset(name, str(root))
    assert not report.ok and any("missing.jpg" in e for e in report.errors)


def test_released_layout_missing_annotation_names_it(tmp_path: Path):
    root = tmp_path / "cuhk"
    write_images(root / "imgs", ["a.png"])
    with pytest.raises(DatasetError, match=r"reid_raw\.json"):
        load_caption_dataset("cuhk_pedes", str(root))


def test_captions_csv(tmp_path: Path):
    write_images(tmp_path / "img", ["a.jpg", "b.jpg", "c.jpg"])
    csv = tmp_path / "captions.csv"
    csv.write_text(
        'path,caption,pid,split\nimg/a.jpg,"a man, in red",1,train\nimg/b.jpg,a woman,,test\nimg/c.jpg,kid,2,test\n'
    )
    dataset = load_caption_dataset("captions_csv", str(tmp_path))
    assert [(Path(c.path).name, c.caption, c.pid, c.split) for c in dataset.captions] == [
        ("a.jpg", "a man, in red", 1, "train"),
        ("b.jpg", "a woman", -1, "test"),
        ("c.jpg", "kid", 2, "test"),
    ]
    plain = tmp_path / "plain.csv"
    plain.write_text("img/a.jpg,red\nimg/b.jpg,blue\n")  # no header, no pid, no split: all train
    assert {c.split for c in load_caption_dataset("captions_csv", str(plain)).captions} == {"train"}
    bad = tmp_path / "bad.csv"
    bad.write_text("img/a.jpg\nimg/zz.jpg,x\nimg/b.jpg,y,q\nimg/c.jpg,z,3,later\nimg/a.jpg,\n")
    with pytest.raises(DatasetError) as err:
        load_caption_dataset("captions_csv", str(bad))
    message = str(err.value)
    assert "line 1: expected 2 to 4 columns" in message
    assert "zz.jpg does not exist" in message
    assert "id 'q' is not an integer" in message
    assert "split 'later'" in message
    assert "line 5: empty caption" in message
    with pytest.raises(DatasetError, match="does not exist; pass a CSV file"):
        load_caption_dataset("captions_csv", str(tmp_path / "none.csv"))


def test_reid_and_caption_loaders_refuse_each_others_datasets(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"'cuhk_pedes' is a captions .* but this needs a re-identification"):
        load_dataset("cuhk_pedes", str(tmp_path))
    with pytest.raises(DatasetError, match=r"'market1501' is a re-identification .* needs a captions"):
        load_caption_dataset("market1501", str(tmp_path))


def test_a_synthetic_set_from_an_older_generator_is_drawn_again(tmp_path: Path):
    from svllreid.data.datasets.synthetic import ensure_synthetic

    params = {"ids": 6, "cameras": 2, "images_per_camera": 1, "seed": 9}
    root = ensure_synthetic(tmp_path / "ds", **params)
    meta = json.loads((root / "synthetic.json").read_text())
    (root / "synthetic.json").write_text(json.dumps({**meta, "version": 1}))  # as written before captions
    (root / CAPTIONS_FILE).unlink()
    again = ensure_synthetic(tmp_path / "ds", **params)
    assert (again / CAPTIONS_FILE).is_file()
    assert json.loads((again / "synthetic.json").read_text())["version"] == meta["version"]
    # Other data is still refused.
    other = tmp_path / "other"
    write_images(other / "bounding_box_train", ["0001_c1s1_000001_00.jpg"])
    with pytest.raises(DatasetError, match="already holds other data"):
        ensure_synthetic(other, **params)
