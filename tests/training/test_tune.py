"""`svllreid tune`: a budgeted search on the validation split that writes a config `svllreid train` runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from svllreid.cli import main
from svllreid.config import load_config
from tests.tiny_runs import TINY, small


def _base(tmp_path: Path) -> list[str]:
    # One stage-1 epoch: tune searches stage-2 settings, and every trial trains stage 1 again.
    values = small(tmp_path, "unused", **{"data.validation_ids": 3, "stage2.ids_per_batch": 4, "stage1.epochs": 1})
    return [v for v in values if not v.startswith(("run.name=", "run.output_dir="))]


@pytest.mark.slow
def test_tune_searches_on_validation_only_and_writes_a_config_train_runs(tmp_path, capsys):
    out = tmp_path / "tuned"
    args = ["tune", "--config", str(TINY), "--out", str(out), "--budget", "30", *_base(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for step in ("stage-2 learning rate:", "image-to-text loss weight:", "vision self-supervision weight", "epochs:"):
        assert step in printed, step
    assert f"train it: svllreid train {out / 'chosen.yaml'}" in printed
    log = json.loads((out / "tune.json").read_text())
    ran = [t for t in log["trials"] if t["score"] is not None]
    assert len(ran) >= 7 and all(0 <= t["score"] <= 1 for t in ran)
    assert len({json.dumps(t["overrides"], sort_keys=True) for t in log["trials"]}) == len(log["trials"])  # no repeats
    for trial_dir in out.glob("trial-*"):
        evaluation = json.loads((trial_dir / "eval.json").read_text())
        assert "final" not in evaluation and "untrained" not in evaluation  # the test set was not evaluated
        assert "validation" in evaluation and not (trial_dir / "checkpoints").exists()
    chosen = load_config(out / "chosen.yaml")
    best = max(ran, key=lambda t: t["score"])
    for key, value in log["chosen"].items():
        section, name = key.split(".", 1)
        assert getattr(getattr(chosen, section), name) == value
    assert best["score"] == max(t["score"] for t in ran)
    assert chosen.eval.test  # the run it is for evaluates on the test set (the trials did not)
    assert isinstance(chosen.data.image_size, list) and chosen.data.validation_ids == 3


@pytest.mark.slow
def test_tune_keeps_to_its_budget_and_needs_a_validation_split(tmp_path, capsys):
    out = tmp_path / "short"
    assert main(["tune", "--config", str(TINY), "--out", str(out), "--budget", "0.01", *_base(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "skipped (budget: needs about" in printed
    log = json.loads((out / "tune.json").read_text())
    assert [t["score"] is not None for t in log["trials"]].count(True) == 1  # only the first trial fits
    assert (out / "chosen.yaml").is_file()
    assert main(["tune", "--config", str(TINY), "--budget", "0", *_base(tmp_path)]) == 2
    assert "--budget must be a positive number of minutes; got 0" in capsys.readouterr().err
    no_validation = [v for v in _base(tmp_path) if not v.startswith("data.validation_ids")] + ["data.validation_ids=0"]
    assert main(["tune", "--config", str(TINY), "--out", str(tmp_path / "none"), *no_validation]) == 2
    assert "tune chooses settings on a validation split" in capsys.readouterr().err
