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
    for name in ("demo", "config", "data"):
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


def test_synth_and_demo_on_small_sizes(tmp_path, capsys):
    out_dir = tmp_path / "synth"
    args = ["--ids", "4", "--cameras", "2", "--images-per-camera", "2"]
    assert main(["data", "synth", "--out", str(out_dir), *args, "--seed", "1", "--workers", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["data", "stats", "--dataset", "market1501", "--root", str(out_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["train"]["ids"] == 2
    demo_root = tmp_path / "demo"
    assert main(["demo", "--root", str(demo_root), *args]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "train" in out
