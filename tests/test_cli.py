"""The command line as a user meets it: help texts, exit codes, printed output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from svllreid.cli import build_parser, main
from tests.conftest import write_images

REPO = Path(__file__).resolve().parents[1]

COMMANDS = [
    [],
    ["demo"],
    ["config"],
    ["config", "show"],
    ["data"],
    ["data", "list"],
    ["data", "synth"],
    ["data", "stats"],
    ["data", "check"],
    ["model"],
    ["model", "info"],
    ["train"],
    ["tune"],
    ["eval-features"],
    ["eval"],
    ["extract"],
    ["index"],
    ["index", "build"],
    ["search"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: svllreid")


def test_top_level_help_lists_every_subcommand(capsys):
    build_parser().print_help()
    out = capsys.readouterr().out
    names = ("demo", "config", "data", "model", "train", "tune", "eval-features", "eval", "extract", "index", "search")
    for name in names:
        assert name in out


def test_console_script_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "svllreid", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("svllreid ")


def test_stats_json_shape(market_root, capsys):
    assert main(["data", "stats", "--dataset", "market1501", "--root", str(market_root), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats == {
        "train": {"ids": 3, "images": 12, "cameras": 6},
        "query": {"ids": 2, "images": 2, "cameras": 2},
        "gallery": {"ids": 3, "images": 9, "cameras": 4},
    }


def test_stats_table(duke_root, capsys):
    assert main(["data", "stats", "--dataset", "dukemtmc", "--root", str(duke_root)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "gallery" in out and "cameras" in out


def test_vehicleid_stats_per_test_size(vehicleid_root, capsys):
    assert main(["data", "stats", "--dataset", "vehicleid", "--root", str(vehicleid_root), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats == {
        "train": {"ids": 3, "images": 4, "cameras": 0},
        "test_800": {"ids": 3, "images": 6},
        "test_1600": {"ids": 4, "images": 7},
    }


def test_dataset_option_flag(vehicleid_root, capsys):
    code = main(["data", "check", "--dataset", "vehicleid", "--root", str(vehicleid_root), "-o", "test_size=1600"])
    assert code == 0
    assert "test size 1600" in capsys.readouterr().out


def test_check_exit_status(market_root, capsys):
    assert main(["data", "check", "--dataset", "market1501", "--root", str(market_root)]) == 0
    write_images(market_root / "query", ["not-a-market-name.jpg"])
    assert main(["data", "check", "--dataset", "market1501", "--root", str(market_root)]) == 1
    assert "not-a-market-name.jpg" in capsys.readouterr().out


def test_unknown_dataset_exit_2(capsys):
    assert main(["data", "stats", "--dataset", "marketz", "--root", "/x"]) == 2
    assert "Available:" in capsys.readouterr().err


def test_config_show_prints_resolved_yaml(capsys):
    assert main(["config", "show", str(REPO / "configs" / "synthetic_tiny.yaml"), "stage2.lr=2e-5"]) == 0
    out = capsys.readouterr().out
    assert "lr: 2.0e-05" in out and "dataset: synthetic" in out and "milestones: [12]" in out


def test_config_show_unknown_key(capsys):
    assert main(["config", "show", "defaults", "stage2.lrr=1"]) == 2
    assert "did you mean 'stage2.lr'" in capsys.readouterr().err


def test_data_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "vehicleid" in out and "test_size=800" in out and "camera_regex" in out


def test_synth_on_small_sizes(tmp_path, capsys):
    out_dir = tmp_path / "synth"
    args = ["--ids", "4", "--cameras", "2", "--images-per-camera", "2"]
    assert main(["data", "synth", "--out", str(out_dir), *args, "--seed", "1", "--workers", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["data", "stats", "--dataset", "market1501", "--root", str(out_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["train"]["ids"] == 2
    # Held-out identities of one's own choosing, and the captions of every image.
    held = tmp_path / "held"
    assert main(["data", "synth", "--out", str(held), *args, "--train-ids", "3", "--workers", "1"]) == 0
    assert "with their captions in captions.jsonl" in capsys.readouterr().out
    assert main(["data", "stats", "--dataset", "synthetic_captions", "--root", str(held), "--json"]) == 0
    captions = json.loads(capsys.readouterr().out)
    assert captions["train"]["ids"] == 3 and captions["test"]["ids"] == 1


def test_eval_features(tmp_path, capsys):
    import numpy as np

    # Two identities; the query of id 1 has its true match (other camera) at rank 2.
    gallery = {
        "feats": np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [1.0, 0.0]], dtype=np.float32),
        "pids": np.array([2, 1, 1, 2]),
        "camids": np.array([1, 1, 0, 0]),
    }
    query = {"feats": np.array([[1.0, 0.1]], dtype=np.float32), "pids": np.array([1]), "camids": np.array([0])}
    np.savez(tmp_path / "g.npz", **gallery)
    np.savez(tmp_path / "q.npz", **query)
    args = ["eval-features", "--query", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz")]
    assert main([*args, "--json", "--max-rank", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    # Gallery 2 (id 1, camera 0) is junk; the true match is gallery 1, behind gallery 0 and 3 (id 2).
    assert result["protocol"] == "camera" and result["mAP"] == pytest.approx(1 / 3)
    assert result["cmc"] == [0.0, 0.0, 1.0]
    assert main(args) == 0
    assert "same-identity-same-camera gallery images are junk" in capsys.readouterr().out
    np.savez(tmp_path / "bad.npz", features=query["feats"])
    assert main(["eval-features", "--query", str(tmp_path / "bad.npz"), "--gallery", str(tmp_path / "g.npz")]) == 2
    assert "lacks the array(s) feats, pids" in capsys.readouterr().err
    np.savez(tmp_path / "nocam.npz", feats=query["feats"], pids=query["pids"])
    assert main(["eval-features", "--query", str(tmp_path / "nocam.npz"), "--gallery", str(tmp_path / "g.npz")]) == 2
    assert "'camids' must be in both" in capsys.readouterr().err


def test_synth_pretraining_world_uses_its_own_sizes_and_seed(tmp_path, monkeypatch, capsys):
    import svllreid.data.synthesis.writer as synthetic  # generate_pretraining_world calls it there
    from svllreid.data.synthesis import PRETRAIN_WORLD, SynthSummary

    calls = {}

    def fake(out, workers=None, **sizes):
        calls.update(sizes)
        return SynthSummary(Path(out), sizes["num_ids"], sizes["num_cameras"], {"train": 1}, 0.0)

    monkeypatch.setattr(synthetic, "generate_synthetic", fake)  # drawing 2,400 identities takes a minute
    assert main(["data", "synth", "--out", str(tmp_path / "w"), "--pretraining-world"]) == 0
    assert calls == {
        "num_ids": PRETRAIN_WORLD["ids"],
        "num_cameras": PRETRAIN_WORLD["cameras"],
        "images_per_camera": PRETRAIN_WORLD["images_per_camera"],
        "seed": PRETRAIN_WORLD["seed"],
        "train_ids": PRETRAIN_WORLD["train_ids"],
    }


def test_every_svllreid_error_is_one_kind_with_a_clean_exit(capsys) -> None:
    """One base class: each error the library raises on purpose is an SvllreidError (and still its
    built-in kind), and the CLI prints its message and returns its exit code, never a traceback."""
    from svllreid import errors

    for name in errors.__all__:
        kind = getattr(errors, name)
        assert issubclass(kind, errors.SvllreidError)
    assert issubclass(errors.DatasetError, ValueError) and issubclass(errors.ImageReadError, OSError)
    assert errors.TrainingDiverged.exit_code == 1 and errors.ConfigError.exit_code == 2
    assert main(["config", "show", "no-such-config.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("svllreid: error: ") and "Traceback" not in err


def test_eval_features_explains_files_that_are_no_feature_files(tmp_path, capsys) -> None:
    import numpy as np

    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(500))
    np.save(tmp_path / "one.npy", np.zeros(3))
    for name, expected in (
        ("random.npz", "(not an .npz archive, or a damaged one); a feature file is what 'svllreid extract' writes"),
        ("one.npy", "is a single .npy array, not a feature file"),
    ):
        path = str(tmp_path / name)
        assert main(["eval-features", "--query", path, "--gallery", path]) == 2
        err = capsys.readouterr().err
        assert expected in err and "allow_pickle" not in err


def test_data_check_keeps_the_whole_layout_message(tmp_path, capsys) -> None:
    """The same words as data stats: what is missing and where it looked, not just a path."""
    (tmp_path / "query").mkdir()
    (tmp_path / "bounding_box_train").mkdir()
    assert main(["data", "check", "--dataset", "market1501", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"expected layout not found under {tmp_path}" in out and f"missing: {tmp_path / 'bounding_box_test'}" in out


def test_stats_says_when_check_would_refuse_the_counted_splits(market_root, capsys) -> None:
    # Before: the counts came without a word, and `data check` (and training) then refused the dataset.
    write_images(market_root / "query", ["0077_c1s1_000001_00.jpg"])  # identity 77 is nowhere in the gallery
    assert main(["data", "stats", "--dataset", "market1501", "--root", str(market_root)]) == 0
    captured = capsys.readouterr()
    assert "query" in captured.out
    assert "'svllreid data check' refuses this dataset" in captured.err
    assert "1 query identities have no image in the gallery: 77" in captured.err
    assert main(["data", "check", "--dataset", "market1501", "--root", str(market_root)]) == 1


def test_data_check_sums_up_a_camera_pattern_that_matches_no_file(tmp_path, capsys) -> None:
    # Before: one error line per file (1,942 for a real animal set), and no word of what to do.
    for animal in range(30):
        write_images(tmp_path / f"animal-{animal}", [f"{animal}-L.jpg", f"{animal}-R.jpg"])
    code = main(["data", "check", "--dataset", "folder", "--root", str(tmp_path), "-o", "camera_regex=_(left|right)"])
    out = capsys.readouterr().out
    assert code == 1
    errors = [line for line in out.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "camera_regex '_(left|right)' matches none of the 60 file names" in errors[0]
    assert "(55 more)" in errors[0] and "group named cam" in errors[0]


def test_a_100_megapixel_photo_gets_a_note_not_pils_raw_warning(tmp_path, capsys) -> None:
    # Before: PIL's DecompressionBombWarning (with its source line) leaked into the command's output.
    import warnings

    from PIL import Image

    for animal in ("a", "b"):
        (tmp_path / animal).mkdir()
        for i in range(2):
            Image.new("RGB", (64, 128), (40 * i, 90, 30)).save(tmp_path / animal / f"{i}.jpg")
    Image.new("L", (10000, 10000), 128).save(tmp_path / "a" / "camera-original.jpg", quality=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["data", "check", "--dataset", "folder", "--root", str(tmp_path)]) == 0
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    out = capsys.readouterr().out
    assert "1 images have more than 89 megapixels" in out and "camera-original.jpg (10000×10000)" in out
