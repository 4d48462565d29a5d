"""``data check``: every error message a user can meet."""

from __future__ import annotations

from svllreid.data.check import check_dataset
from tests.conftest import write_images


def test_clean_dataset_passes_with_full_decode(market_root):
    report = check_dataset("market1501", str(market_root))
    assert report.ok, report.format()
    assert report.checked_images == 12 + 2 + 9  # every unique image decoded
    assert "OK" in report.format()


def test_missing_folders_are_named(tmp_path):
    report = check_dataset("dukemtmc", str(tmp_path))
    assert not report.ok
    text = report.format()
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        assert str(tmp_path / folder) in text
    assert "FAILED" in text


def test_unparseable_names_are_each_listed(market_root):
    write_images(market_root / "bounding_box_train", ["garbage.jpg", "0001c1.jpg"])
    report = check_dataset("market1501", str(market_root))
    text = report.format()
    assert "garbage.jpg: file name does not match" in text
    assert "0001c1.jpg: file name does not match" in text


def test_corrupt_and_truncated_images_are_each_listed(market_root):
    train = market_root / "bounding_box_train"
    (train / "0002_c1s1_000000_00.jpg").write_bytes(b"this is not a jpeg")
    good = (train / "0002_c1s1_000001_00.jpg").read_bytes()
    (train / "0009_c4s1_000000_00.jpg").write_bytes(good[: len(good) // 2])  # truncated
    report = check_dataset("market1501", str(market_root))
    assert not report.ok
    text = report.format()
    assert "2 images are unreadable or corrupt" in text
    assert "0002_c1s1_000000_00.jpg: cannot be read as an image" in text
    assert "0009_c4s1_000000_00.jpg: cannot be read as an image" in text


def test_quick_mode_does_not_decode_everything(market_root):
    report = check_dataset("market1501", str(market_root), mode="quick")
    assert report.ok
    assert report.checked_images == 23  # fewer than the header sample size: all headers read


def test_empty_split_is_an_error(market_root):
    for path in (market_root / "query").iterdir():
        path.unlink()
    report = check_dataset("market1501", str(market_root))
    assert "the query set is empty" in report.format()
    assert not report.ok


def test_query_identity_absent_from_gallery(market_root):
    write_images(market_root / "query", ["0042_c2s1_000001_00.jpg"])
    report = check_dataset("market1501", str(market_root))
    assert "1 query identities have no image in the gallery: 42" in report.format()


def test_query_only_in_own_camera_is_a_warning(market_root):
    write_images(market_root / "query", ["0012_c4s1_000009_00.jpg"])  # id 12 is only in camera 4 of the gallery
    report = check_dataset("market1501", str(market_root))
    assert report.ok
    assert "only in the gallery under the query's own camera" in report.format()


def test_missing_files_of_a_list_dataset(msmt_root):
    missing = msmt_root / "test" / "0101" / "0101_003_09_0303morning_0003_0.jpg"
    missing.unlink()
    report = check_dataset("msmt17", str(msmt_root))
    assert f"1 image files are missing:\n    {missing}" in report.format()


def test_camera_out_of_range_reported(duke_root):
    write_images(duke_root / "query", ["0020_c9_f0000001.jpg"])
    report = check_dataset("dukemtmc", str(duke_root))
    assert "camera 9 is outside 1..8" in report.format()


def test_unknown_dataset_and_option_are_errors(market_root):
    assert "unknown dataset" in check_dataset("nope", str(market_root)).format()
    report = check_dataset("market1501", str(market_root), colour="red")
    assert "has no option 'colour'" in report.format()


def test_single_image_training_identity_is_a_warning(duke_root):
    write_images(duke_root / "bounding_box_train", ["0099_c1_f0000001.jpg"])
    report = check_dataset("dukemtmc", str(duke_root))
    assert report.ok
    assert "1 training identities have a single image" in report.format()


def test_tiny_images_get_a_warning(market_root):
    """A 1×1 image reads fine but holds nothing to re-identify: a warning names it, the check still passes."""
    from PIL import Image

    tiny = market_root / "bounding_box_train" / "0002_c1s1_000099_00.jpg"
    Image.new("RGB", (1, 1)).save(tiny)
    report = check_dataset("market1501", str(market_root))
    assert report.ok
    assert any("smaller than 16 pixels on a side" in w and f"{tiny} (1×1)" in w for w in report.warnings)
