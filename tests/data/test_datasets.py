"""Parsers: exact counts on tiny fake trees with the real naming schemes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from svllreid.data.datasets import available_datasets, get_dataset_entry, load_dataset
from svllreid.data.stats import summarize
from svllreid.errors import DatasetError
from tests.conftest import PKU, write_images, write_veri_views


def pids(samples):
    return sorted({s.pid for s in samples})


def test_registry_lists_every_dataset():
    expected = {
        "market1501",
        "dukemtmc",
        "occluded_duke",
        "msmt17",
        "veri776",
        "vehicleid",
        "pku",
        "folder",
        "synthetic",
    }
    captions = {"synthetic_captions", "captions_csv", "cuhk_pedes", "icfg_pedes", "rstpreid"}
    assert set(available_datasets("reid")) == expected
    assert set(available_datasets("captions")) == captions
    assert set(available_datasets()) == expected | captions


def test_unknown_dataset_lists_available_and_suggests():
    with pytest.raises(DatasetError) as err:
        load_dataset("market1510", "/nowhere")
    assert "unknown dataset 'market1510'" in str(err.value)
    assert "Did you mean 'market1501'?" in str(err.value)
    assert "vehicleid" in str(err.value)


def test_unknown_option_lists_valid_options(vehicleid_root):
    with pytest.raises(DatasetError, match=r"has no option 'test_sise'.*Did you mean 'test_size'"):
        load_dataset("vehicleid", str(vehicleid_root), test_sise=800)


def test_market1501_counts_junk_and_distractors(market_root):
    ds = load_dataset("market1501", str(market_root.parent))  # finds the versioned sub-folder
    assert Path(ds.root) == market_root.resolve()
    assert summarize(ds) == {
        "train": {"ids": 3, "images": 12, "cameras": 6},
        "query": {"ids": 2, "images": 2, "cameras": 2},
        "gallery": {"ids": 3, "images": 9, "cameras": 4},  # -1 junk dropped, 0 distractors kept
    }
    assert pids(ds.train) == [0, 1, 2]  # 2, 7, 9 relabelled
    assert Counter(s.pid for s in ds.train) == {0: 4, 1: 2, 2: 6}
    assert {s.camid for s in ds.train} == {0, 1, 2, 3, 4, 5}  # cameras 1-6 become 0-5
    assert pids(ds.gallery) == [0, 11, 12]  # original ids kept
    assert all(s.viewid == -1 for s in ds.train)
    assert ds.protocol == "camera" and ds.num_cameras == 6 and ds.kind == "person"
    assert any("junk" in note for note in ds.notes)


def test_duke_and_occluded_duke(duke_root):
    for name in ("dukemtmc", "occluded_duke"):
        ds = load_dataset(name, str(duke_root))
        assert summarize(ds) == {
            "train": {"ids": 2, "images": 7, "cameras": 3},
            "query": {"ids": 1, "images": 1, "cameras": 1},
            "gallery": {"ids": 2, "images": 5, "cameras": 3},
        }
        assert ds.num_cameras == 8
        assert {s.camid for s in ds.train} == {0, 1, 7}


def test_market_camera_out_of_range_is_an_error(market_root):
    write_images(market_root / "query", ["0011_c7s1_000001_00.jpg"])
    with pytest.raises(DatasetError, match=r"camera 7 is outside 1\.\.6"):
        load_dataset("market1501", str(market_root))


def test_market_unparseable_names_are_all_listed(market_root):
    write_images(market_root / "query", ["bad_name.jpg", "also-bad.jpg"])
    with pytest.raises(DatasetError) as err:
        load_dataset("market1501", str(market_root))
    assert "2 problem(s)" in str(err.value)
    assert "bad_name.jpg" in str(err.value) and "also-bad.jpg" in str(err.value)


def test_missing_folder_names_what_is_expected_where(tmp_path):
    (tmp_path / "bounding_box_train").mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset("market1501", str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "query") in message and str(tmp_path / "bounding_box_test") in message
    assert str(tmp_path / "bounding_box_train") not in message


def test_missing_root_says_how_to_fix():
    with pytest.raises(DatasetError, match=r"does not exist; pass the folder that holds bounding_box_train"):
        load_dataset("market1501", "/no/such/folder")


def test_msmt17_train_is_train_plus_val(msmt_root):
    ds = load_dataset("msmt17", str(msmt_root))
    assert summarize(ds) == {
        "train": {"ids": 3, "images": 5, "cameras": 5},
        "query": {"ids": 1, "images": 1, "cameras": 1},
        "gallery": {"ids": 2, "images": 3, "cameras": 3},
    }
    assert Counter(s.pid for s in ds.train) == {0: 2, 1: 2, 2: 1}  # labels 0, 1, 5 relabelled
    assert {s.camid for s in ds.train} == {0, 14, 2, 3, 1}
    assert ds.query[0].path == str(msmt_root / "test" / "0100" / "0100_000_01_0303morning_0000_0.jpg")
    assert ds.num_cameras == 15


def test_msmt17_missing_list_file(msmt_root):
    (msmt_root / "list_val.txt").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("msmt17", str(msmt_root))
    assert str(msmt_root / "list_val.txt") in str(err.value)


def test_msmt17_malformed_list_line(msmt_root):
    with (msmt_root / "list_query.txt").open("a") as handle:
        handle.write("just-a-path\n0100/0100_000_99_x_0_0.jpg 100\n")
    with pytest.raises(DatasetError) as err:
        load_dataset("msmt17", str(msmt_root))
    assert "list_query.txt:2: expected '<relative path> <label>'" in str(err.value)
    assert "camera 99" in str(err.value)


def test_veri_without_view_files_is_camera_only(veri_root):
    ds = load_dataset("veri776", str(veri_root))
    assert summarize(ds) == {
        "train": {"ids": 2, "images": 6, "cameras": 3},
        "query": {"ids": 1, "images": 1, "cameras": 1},
        "gallery": {"ids": 2, "images": 5, "cameras": 3},
    }
    assert ds.num_views == 0 and ds.kind == "vehicle" and ds.num_cameras == 20
    assert {s.camid for s in ds.train} == {0, 19, 4}
    assert all(s.viewid == -1 for s in ds.train + ds.query + ds.gallery)


def test_veri_with_view_files_keeps_unlabelled_images(veri_root):
    write_veri_views(veri_root, skip={"0001_c001_00000100_0.jpg"})
    ds = load_dataset("veri776", str(veri_root))
    assert ds.num_views == 8
    assert len(ds.train) == 6  # nothing dropped
    unknown = [s for s in ds.train if s.viewid == -1]
    assert [Path(s.path).name for s in unknown] == ["0001_c001_00000100_0.jpg"]
    assert all(0 <= s.viewid < 8 for s in ds.query + ds.gallery)
    assert any("no viewpoint label" in note for note in ds.notes)
    reference = load_dataset("veri776", str(veri_root), drop_unlabelled_views=True)
    assert len(reference.train) == 5


def test_veri_partial_view_files_is_an_error(veri_root):
    write_veri_views(veri_root)
    (veri_root / "keypoint_test.txt").unlink()
    with pytest.raises(DatasetError, match="only some viewpoint label files"):
        load_dataset("veri776", str(veri_root))


@pytest.mark.parametrize(("size", "ids", "images"), [(800, 3, 6), ("medium", 4, 7)])
def test_vehicleid_test_sizes_and_trials(vehicleid_root, size, ids, images):
    ds = load_dataset("vehicleid", str(vehicleid_root), test_size=size)
    assert summarize(ds)["train"] == {"ids": 3, "images": 4, "cameras": 0}
    assert ds.protocol == "no-camera" and ds.kind == "vehicle"
    assert len(ds.splits) == 10
    for split in ds.splits:
        test = split.query + split.gallery
        assert len(test) == images and len({s.pid for s in test}) == ids
        assert Counter(s.pid for s in split.gallery) == dict.fromkeys({s.pid for s in test}, 1)
        assert not {s.path for s in split.query} & {s.path for s in split.gallery}
    assert len({tuple(s.path for s in split.gallery) for split in ds.splits}) > 1  # trials differ
    again = load_dataset("vehicleid", str(vehicleid_root), test_size=size)
    assert [sp.gallery for sp in again.splits] == [sp.gallery for sp in ds.splits]  # seeded


def test_vehicleid_bad_size_and_missing_list(vehicleid_root):
    with pytest.raises(DatasetError, match="test_size must be 800, 1600, 2400"):
        load_dataset("vehicleid", str(vehicleid_root), test_size=1000)
    with pytest.raises(DatasetError) as err:
        load_dataset("vehicleid", str(vehicleid_root), test_size="large")
    assert "test_list_2400.txt" in str(err.value)


def test_pku_two_directions(pku_root):
    ds = load_dataset("pku", str(pku_root))
    assert [s.name for s in ds.splits] == ["camera 01 -> 02", "camera 02 -> 01"]
    assert summarize(ds)["train"] == {"ids": 2, "images": 8, "cameras": 2}
    first, second = ds.splits
    assert {s.camid for s in first.query} == {0} and {s.camid for s in first.gallery} == {1}
    assert first.query == second.gallery and first.gallery == second.query
    assert pids(first.query) == [3, 4]
    assert ds.num_views == 8 and {s.viewid for s in ds.train} == {0, 1}


def test_pku_split_names_unknown_identity(pku_root):
    (pku_root / "split.json").write_text('{"train_ids": ["001"], "test_ids": ["003", "099"]}')
    with pytest.raises(DatasetError, match=r"identities without images: \[99\]"):
        load_dataset("pku", str(pku_root))


def test_pku_real_subset_counts():
    ds = load_dataset("pku", str(PKU))
    assert summarize(ds) == {
        "train": {"ids": 37, "images": 592, "cameras": 2},
        "query": {"ids": 37, "images": 296, "cameras": 1},
        "gallery": {"ids": 37, "images": 296, "cameras": 1},
    }
    assert not {s.pid for s in ds.query} & {int(Path(s.path).name[:3]) for s in ds.train}


# --- folder: the user's own data -------------------------------------------------------------------


def test_folder_identity_folders_without_cameras(tmp_path):
    for person in ("alice", "bob", "carol", "dave"):
        write_images(tmp_path / person, [f"{person}_{i}.jpg" for i in range(3)])
    ds = load_dataset("folder", str(tmp_path))
    assert ds.protocol == "no-camera" and ds.num_cameras == 0
    assert len(ds.train) == 6 and len(ds.query) + len(ds.gallery) == 6
    assert len(ds.query) == 2  # one query per test identity
    assert {s.pid for s in ds.query} == {s.pid for s in ds.gallery}
    assert any("own image is excluded" in note for note in ds.notes)
    assert all(s.camid == -1 for s in ds.train + ds.query + ds.gallery)
    same = load_dataset("folder", str(tmp_path))
    assert same.query == ds.query
    other = load_dataset("folder", str(tmp_path), split_seed=5)
    assert other.train != ds.train or other.query != ds.query


def test_folder_identity_folders_with_camera_regex(tmp_path):
    for pid in (1, 2, 3, 4):
        write_images(tmp_path / f"{pid:03d}", [f"cam{c}_{i}.jpg" for c in (1, 2) for i in range(2)])
    ds = load_dataset("folder", str(tmp_path), camera_regex=r"cam(?P<cam>\d+)_")
    assert ds.protocol == "camera" and ds.num_cameras == 2
    assert pids(ds.query) == pids(ds.gallery)
    assert len(ds.query) == 4  # one per test identity and camera
    assert {s.pid for s in ds.query} <= {1, 2, 3, 4}  # integer folder names keep their value


def test_folder_camera_regex_must_match(tmp_path):
    write_images(tmp_path / "a", ["cam1_0.jpg", "nocamera.jpg"])
    write_images(tmp_path / "b", ["cam2_0.jpg"])
    with pytest.raises(
        DatasetError, match=r"camera_regex 'cam\(\\d\)' does not match 1 of the 3 file names \(in .*a\): nocamera\.jpg"
    ):
        load_dataset("folder", str(tmp_path), camera_regex=r"cam(\d)")
    with pytest.raises(DatasetError, match="not a valid regular expression"):
        load_dataset("folder", str(tmp_path), camera_regex="cam(")


def test_folder_split_folders(tmp_path):
    write_images(tmp_path / "train" / "p1", ["a.jpg", "b.jpg"])
    write_images(tmp_path / "train" / "p2", ["a.jpg"])
    write_images(tmp_path / "query" / "p3", ["q.jpg"])
    write_images(tmp_path / "gallery" / "p3", ["g.jpg"])
    write_images(tmp_path / "gallery" / "p4", ["g.jpg"])
    ds = load_dataset("folder", str(tmp_path))
    assert summarize(ds) == {
        "train": {"ids": 2, "images": 3, "cameras": 0},
        "query": {"ids": 1, "images": 1, "cameras": 0},
        "gallery": {"ids": 2, "images": 2, "cameras": 0},
    }
    assert ds.query[0].pid in {s.pid for s in ds.gallery}  # one numbering across query and gallery


def test_folder_incomplete_split_folders(tmp_path):
    write_images(tmp_path / "train" / "p1", ["a.jpg"])
    write_images(tmp_path / "query" / "p1", ["a.jpg"])
    with pytest.raises(DatasetError) as err:
        load_dataset("folder", str(tmp_path))
    assert str(tmp_path / "gallery") in str(err.value)


def test_folder_loose_images_and_empty_identity(tmp_path):
    write_images(tmp_path, ["loose.jpg", "loose2.jpg"])
    (tmp_path / "empty_person").mkdir()
    write_images(tmp_path / "p1", ["a.jpg"])
    with pytest.raises(DatasetError) as err:
        load_dataset("folder", str(tmp_path))
    message = str(err.value)
    assert "2 problem(s)" in message  # one message for all loose images, not one per file
    assert "2 images lie directly in the folder (e.g. loose.jpg)" in message and "pid_regex" in message
    assert "empty_person: identity folder holds no images" in message


def test_folder_flat_images_with_pid_regex(tmp_path):
    names = [f"{pid:03d}_{cam:02d}_{i}.jpg" for pid in range(1, 5) for cam in (1, 2) for i in range(2)]
    write_images(tmp_path, names)
    ds = load_dataset("folder", str(tmp_path), pid_regex=r"^(?P<pid>\d+)_", camera_regex=r"^\d+_(\d+)_")
    assert ds.protocol == "camera" and ds.num_cameras == 2
    assert len(ds.train) + len(ds.query) + len(ds.gallery) == 16
    assert {s.pid for s in ds.train} | {s.pid for s in ds.query} <= {0, 1} | {1, 2, 3, 4}
    write_images(tmp_path, ["README.jpg"])
    with pytest.raises(
        DatasetError, match=r"pid_regex '\^\(\\d\+\)_' does not match 1 of the 17 file names .*: README\.jpg"
    ):
        load_dataset("folder", str(tmp_path), pid_regex=r"^(\d+)_")
    with pytest.raises(DatasetError, match="pid_regex apply to image folders"):
        (tmp_path / "m.csv").write_text("a.jpg,1\n")
        load_dataset("folder", str(tmp_path / "m.csv"), pid_regex="x")


def test_folder_reads_a_real_flat_folder():
    ds = load_dataset("folder", str(PKU / "images"), pid_regex=r"^(\d+)_", camera_regex=r"^\d+_(\d+)_")
    assert ds.num_train_ids + len({s.pid for s in ds.query + ds.gallery}) == 74
    assert len({s.pid for s in ds.query}) == 37  # every test identity has 2 cameras: one query per camera
    assert len(ds.query) == 74


def test_folder_csv_manifest_with_header(tmp_path):
    write_images(tmp_path / "img", [f"{i}.jpg" for i in range(6)])
    rows = [
        "split,path,pid,camid",
        "train,img/0.jpg,x,c1",
        "train,img/1.jpg,y,c2",
        "query,img/2.jpg,z,c1",
        "gallery,img/3.jpg,z,c2",
        "gallery,img/4.jpg,w,c2",
    ]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset("folder", str(tmp_path), identity_names=True, camera_names=True)
    assert ds.protocol == "camera" and ds.num_cameras == 2
    assert summarize(ds) == {
        "train": {"ids": 2, "images": 2, "cameras": 2},
        "query": {"ids": 1, "images": 1, "cameras": 1},
        "gallery": {"ids": 2, "images": 2, "cameras": 1},
    }
    assert ds.query[0].path == str(tmp_path / "img" / "2.jpg")


def test_folder_csv_without_header_or_split_is_auto_split(tmp_path):
    write_images(tmp_path / "img", [f"{i}.jpg" for i in range(8)])
    manifest = tmp_path / "people.csv"
    manifest.write_text("".join(f"img/{i}.jpg,{i // 2}\n" for i in range(8)))
    ds = load_dataset("folder", str(manifest))
    assert ds.protocol == "no-camera"
    assert len(ds.train) + len(ds.query) + len(ds.gallery) == 8
    assert len({s.pid for s in ds.query}) == 2


def test_folder_csv_bad_rows_are_all_listed(tmp_path):
    (tmp_path / "m.csv").write_text("path,pid,split\na.jpg,1,train\nb.jpg,,train\nc.jpg,2,test\nd.jpg,3\n")
    with pytest.raises(DatasetError) as err:
        load_dataset("folder", str(tmp_path / "m.csv"))
    message = str(err.value)
    assert "m.csv:3: empty path or pid" in message
    assert "m.csv:4: split must be train, query or gallery; got 'test'" in message
    assert "m.csv:5: expected 3 fields" in message


def test_folder_csv_header_names_any_order_and_a_wrong_header_is_explained(tmp_path):
    write_images(tmp_path / "img", [f"{i}.jpg" for i in range(8)])
    rows = ["camid,pid,path"] + [f"{1 + i % 2},{10 + i // 2},img/{i}.jpg" for i in range(8)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset("folder", str(tmp_path / "m.csv"))
    assert ds.protocol == "camera" and ds.num_cameras == 2
    assert {s.pid for s in ds.query + ds.gallery} <= {10, 11, 12, 13}  # integer identities keep their value
    # The camid column is not read as identities when the header leaves out pid.
    (tmp_path / "bad.csv").write_text("path,camid\nimg/0.jpg,1\n")
    with pytest.raises(DatasetError, match=r"has the header 'path,camid': missing pid\. A header names"):
        load_dataset("folder", str(tmp_path / "bad.csv"))
    # Other names: not 'missing: file' but what is wrong with the header and the fixed order.
    (tmp_path / "other.csv").write_text("file,id,cam\nimg/0.jpg,1,1\n")
    with pytest.raises(DatasetError) as err:
        load_dataset("folder", str(tmp_path / "other.csv"))
    message = str(err.value)
    assert "unknown columns ['file', 'id', 'cam']; missing path, pid" in message
    assert "with no header, the columns are in the order path,pid[,camid][,split]" in message


def test_folder_csv_pids_and_cameras_are_integers_unless_declared_names(tmp_path):
    write_images(tmp_path / "img", [f"{i}.jpg" for i in range(4)])
    rows = ["path,pid,camid", "img/0.jpg,1,1", "img/1.jpg,abc,2", "img/2.jpg,2,left", "img/3.jpg,2,right"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError) as err:
        load_dataset("folder", str(tmp_path / "m.csv"))
    message = str(err.value)
    assert "m.csv:3: pid must be an integer; got 'abc' (identities given by name: -o identity_names=true)" in message
    assert "m.csv:4: camid must be an integer; got 'left'" in message and "camera_names=true" in message
    assert "m.csv:5:" in message  # every bad row listed
    rows = ["path,pid,camid", "img/0.jpg,1,left", "img/1.jpg,1,right", "img/2.jpg,2,left", "img/3.jpg,2,right"]
    (tmp_path / "named.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset("folder", str(tmp_path / "named.csv"), camera_names=True)
    assert ds.num_cameras == 2 and ds.protocol == "camera"


def test_folder_csv_unknown_column(tmp_path):
    (tmp_path / "m.csv").write_text("path,pid,camera\na.jpg,1,2\n")
    with pytest.raises(DatasetError, match=r"unknown columns \['camera'\]"):
        load_dataset("folder", str(tmp_path / "m.csv"))


def test_folder_needs_two_identities_for_auto_split(tmp_path):
    write_images(tmp_path / "only", ["a.jpg", "b.jpg"])
    with pytest.raises(DatasetError, match="needs at least 2 identities"):
        load_dataset("folder", str(tmp_path))


def test_dataset_kind_in_registry():
    assert get_dataset_entry("veri776").kind == "vehicle"
    assert get_dataset_entry("market1501").kind == "person"
    assert set(get_dataset_entry("vehicleid").options) == {"test_size", "trials"}


def test_folder_identity_folders_may_nest_and_read_every_image_kind(tmp_path):
    """Sub-folders of an identity's folder are its images (as extract searches recursively), and .tif
    files count as everywhere else in svllreid."""
    from PIL import Image

    for pid in ("7", "9"):
        write_images(tmp_path / pid, ["a.jpg", "day2/b.jpg"])
        Image.new("RGB", (8, 16)).save(tmp_path / pid / "day2" / "c.tif")
    ds = load_dataset("folder", str(tmp_path))
    images = ds.train + ds.query + ds.gallery
    assert len(images) == 6 and any(s.path.endswith("c.tif") for s in images)


def test_pku_without_a_root_reads_the_repository_copy_and_explains_the_wheel(monkeypatch, tmp_path) -> None:
    """An empty root is the checkout's data/pku-reid-subset; an installed wheel (no copy) says what to do."""
    from svllreid.data.datasets import pku

    assert len(load_dataset("pku", "").train) == 592
    assert get_dataset_entry("pku").default_root() == PKU.resolve()  # what the demo's first line names
    assert get_dataset_entry("market1501").default_root is None
    monkeypatch.setattr(pku, "CHECKOUT_ROOT", tmp_path / "absent")
    with pytest.raises(DatasetError, match=r"wheel leaves it out.*checkout of the svllreid source repository.*--root"):
        load_dataset("pku", "")
