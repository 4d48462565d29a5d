"""Training never silently ends worse than it started: the validation split chooses the delivered network,
a run that cannot beat its start delivers the start and says so, early stopping, exact resume, and a run
that fails at its start leaves nothing behind."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from svllreid.cli import main
from svllreid.config import load_config
from svllreid.errors import ConfigError
from svllreid.inference.checkpoint import read_checkpoint
from svllreid.training import run as run_module
from svllreid.training.run import Run, RunResult, train
from tests.tiny_runs import TINY, small, weights


def with_validation(tmp_path: Path, name: str, **extra: object) -> list[str]:
    """A seconds-long run whose 8 training identities lose 3 to a validation split (the start is evaluated)."""
    return small(tmp_path, name, **{"data.validation_ids": 3, "stage2.ids_per_batch": 4, **extra})


def encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("image_encoder.")}


def scripted_validation(monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> None:
    """The validation mAP of the start and of each following evaluation, in order (the test split is real)."""
    real = Run.evaluate
    queue = list(scores)

    def evaluate(self, split: str = "test"):
        evaluation = real(self, split)
        if split == "validation":
            evaluation.summary["mAP"] = queue.pop(0)
        return evaluation

    monkeypatch.setattr(Run, "evaluate", evaluate)


@pytest.mark.slow
def test_a_run_that_cannot_beat_its_start_delivers_the_start_and_says_so(tmp_path, capsys):
    # A learning rate far too high wrecks the pretrained encoder: no epoch beats the start on validation.
    args = ["train", str(TINY), *with_validation(tmp_path, "wrecked", **{"stage2.lr": 0.05}), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "no stage-2 epoch beat the start on the validation split" in out
    assert "best: the start" in out and "last: stage-2 epoch 2" in out and "pretrained only (start)" in out
    run_dir = tmp_path / "runs" / "wrecked"
    delivered = weights(run_dir / "checkpoints" / "model.safetensors")
    start = weights(run_dir / "checkpoints" / "stage1.safetensors")
    last = weights(run_dir / "checkpoints" / "last.safetensors")
    assert all(torch.equal(delivered[k], start[k]) for k in encoder(start))  # the start's image encoder
    assert any(not torch.equal(last[k], start[k]) for k in encoder(start))  # what training made of it
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["selection"]["best_epoch"] == 0
    assert result["final"]["mAP"] == pytest.approx(result["untrained"]["mAP"])  # the same features
    assert result["validation"]["best"] == result["validation"]["start"]
    assert result["last"]["mAP"] != result["final"]["mAP"]
    assert read_checkpoint(run_dir / "checkpoints" / "model.safetensors").meta["epoch"] == 0


@pytest.fixture(scope="module")
def chosen(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A run that validates after every epoch, its validation mAP scripted to 0.30 at the start, 0.50 after
    epoch 1 and 0.40 after epoch 2 (the evaluations run; only their mAP is replaced), with its report. One
    run for the three tests below, which only read it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        scripted_validation(monkeypatch, [0.30, 0.50, 0.40])
        overrides = with_validation(tmp_path_factory.mktemp("chosen"), "chosen", **{"run.report": "true"})
        return train(load_config(TINY, overrides), progress=False)


@pytest.mark.slow
def test_the_best_epoch_is_delivered_and_evaluated_on_both_splits(chosen):
    result = chosen
    assert result.selection is not None and result.selection.best_epoch == 1
    run_dir = result.run_dir
    best = weights(run_dir / "checkpoints" / "best.safetensors")
    assert all(torch.equal(v, best[k]) for k, v in weights(run_dir / "checkpoints" / "model.safetensors").items())
    assert result.validation is not None
    assert [result.validation[k]["mAP"] for k in ("start", "best", "last")] == [0.30, 0.50, 0.40]
    assert result.last is not None and result.evaluation is not None and result.untrained is not None
    names = [row.name for row in result.rows(pretrained=True)]
    assert names == ["pretrained only (start)", "best: stage-2 epoch 1", "last: stage-2 epoch 2"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    validation = [r for r in records if r["stage"] == "validation"]
    assert [r["epoch"] for r in validation] == [0, 1, 2]
    assert {"mAP", "rank1", "mINP", "mean_cosine", "effective_rank", "top_direction_share"} <= set(validation[0])
    assert "spread" in result.evaluation and result.evaluation["spread"]["effective_rank"] > 0


@pytest.mark.slow
def test_patience_stops_stage_2_and_a_resumed_run_does_not_train_on(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.30, 0.40, 0.35, 0.20, 0.10])
    extra = {"stage2.epochs": 4, "stage2.milestones": "[4]", "eval.patience": 1}
    result = train(load_config(TINY, with_validation(tmp_path, "patient", **extra)), progress=False)
    assert result.selection is not None and result.selection.stopped_at == 2 and result.selection.best_epoch == 1
    last = read_checkpoint(result.run_dir / "checkpoints" / "last.safetensors")
    assert (last.meta["stage"], last.meta["epoch"]) == (2, 2)
    assert json.loads((result.run_dir / "eval.json").read_text())["selection"]["stopped_at"] == 2
    before = weights(result.run_dir / "checkpoints" / "last.safetensors")
    (result.run_dir / "eval.json").unlink()  # as if it had died before writing its results
    resumed = train(load_config(result.run_dir / "config.yaml"), resume=str(result.run_dir), progress=False)
    assert resumed.selection is not None and resumed.selection.stopped_at == 2
    after = weights(result.run_dir / "checkpoints" / "last.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing trained after the stop


@pytest.mark.slow
def test_validating_changes_nothing_in_how_training_goes(chosen):
    every = chosen  # eval.every=1
    assert load_config(every.run_dir / "config.yaml").eval.every == 1
    assert every.selection is not None and [e["epoch"] for e in every.selection.history] == [0, 1, 2]
    # The same data folder and settings, never validated after the start.
    never_overrides = with_validation(every.run_dir.parents[1], "never", **{"eval.every": 0})
    never = train(load_config(TINY, never_overrides), progress=False)
    a = weights(every.run_dir / "checkpoints" / "last.safetensors")
    b = weights(never.run_dir / "checkpoints" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert never.selection is not None and [e["epoch"] for e in never.selection.history] == [0, 2]


def _kill_after(monkeypatch: pytest.MonkeyPatch, at: tuple[int, int]) -> None:
    """Kill the run right after the checkpoint of (stage, epoch)."""
    real_save = run_module.Run.save

    def save_then_die(self, name, stage, epoch, optimizer=None):
        real_save(self, name, stage, epoch, optimizer)
        if name == "last" and (stage, epoch) == at:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(run_module.Run, "save", save_then_die)


def _kill_mid_epoch(monkeypatch: pytest.MonkeyPatch, stage: str, epoch: int) -> None:
    """Kill the run in the middle of an epoch, once it has logged a training record of it (the records of
    the steps after the last checkpoint are then in metrics.jsonl, and the resumed run trains them again)."""
    from svllreid.training.trainer import MetricsLog

    real_write = MetricsLog.write

    def write_then_die(self, record, step):
        real_write(self, record, step)
        if record.get("stage") == stage and record.get("epoch") == epoch and "loss" in record:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(MetricsLog, "write", write_then_die)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_is_exact_keeps_the_start_row_and_logs_every_step_once(tmp_path, monkeypatch):
    # Before: after --resume, eval.json lost its before-training row and metrics.jsonl repeated the steps
    # logged between the last checkpoint and the interruption. A resumed run also ends with the same weights
    # and chooses the same epoch as an uninterrupted one.
    extra: dict[str, object] = {"eval.before_training": "true", "stage2.epochs": 3, "stage2.milestones": "[3]"}
    reference = train(load_config(TINY, with_validation(tmp_path, "whole", **extra)), progress=False)
    for name in ("after-stage1-epoch1", "after-stage2-epoch1", "within-stage2-epoch2"):
        if name.startswith("within"):
            _kill_mid_epoch(monkeypatch, "stage2", 2)
        else:
            _kill_after(monkeypatch, (1, 1) if "stage1" in name else (2, 1))
        with pytest.raises(KeyboardInterrupt):
            train(load_config(TINY, with_validation(tmp_path, name, **extra)), progress=False)
        monkeypatch.undo()
        run_dir = tmp_path / "runs" / name
        resumed = train(load_config(run_dir / "config.yaml"), resume=str(run_dir), progress=False)
        got, want = (json.loads((d / "eval.json").read_text()) for d in (run_dir, reference.run_dir))
        assert set(got) == set(want) and "untrained" in got
        for key in ("final", "untrained", "last", "validation"):
            assert got.get(key) == want.get(key), (name, key)
        assert got["selection"]["history"] == want["selection"]["history"]
        steps = Counter((r["stage"], r["step"]) for r in _records(run_dir))
        assert max(steps.values()) == 1, f"{name}: steps logged twice: {[k for k, n in steps.items() if n > 1]}"
        assert steps.keys() == Counter((r["stage"], r["step"]) for r in _records(reference.run_dir)).keys()
        for checkpoint in ("model", "last"):
            expected = weights(reference.run_dir / "checkpoints" / f"{checkpoint}.safetensors")
            delivered = weights(resumed.run_dir / "checkpoints" / f"{checkpoint}.safetensors")
            assert expected.keys() == delivered.keys()
            assert all(torch.equal(expected[k], delivered[k]) for k in expected), (name, checkpoint)


@pytest.mark.slow
def test_a_run_that_fails_at_its_start_leaves_no_folder_and_can_be_run_again(tmp_path):
    # Before: the failed run left runs/<name>/config.yaml; the corrected rerun said "already exists ...
    # continue it with --resume", and --resume said "checkpoint not found".
    failing = small(tmp_path, "again", **{"stage2.ids_per_batch": 40})
    with pytest.raises(ConfigError, match="P×K sampling needs at least P=40 identities"):
        train(load_config(TINY, failing), progress=False)
    run_dir = tmp_path / "runs" / "again"
    assert not run_dir.exists()
    # A folder that an earlier run left before its first checkpoint (it died mid-epoch) is reused.
    (run_dir / "tensorboard").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("data: {}\n")
    (run_dir / "metrics.jsonl").write_text('{"stage": "stage1", "step": 1}\n')
    with pytest.raises(ValueError, match=r"holds no checkpoint to continue .* stopped before its first epoch ended"):
        train(load_config(TINY, small(tmp_path, "again")), resume=str(run_dir), progress=False)
    result = train(load_config(TINY, small(tmp_path, "again", **{"stage2.epochs": 1})), progress=False)
    assert result.evaluation is not None
    assert all(r.get("step") != 1 or r["stage"] != "stage1" or "loss" in r for r in _records(run_dir))
    with pytest.raises(ValueError, match=r"already exists; choose another run\.name"):  # now it holds results
        train(load_config(TINY, small(tmp_path, "again")), progress=False)


@pytest.mark.slow
def test_the_report_names_the_start_as_the_command_line_does_and_shows_the_choice(tmp_path, chosen):
    # Before: the report's table called a pretrained start "untrained", where the demo printed "pretrained only".
    plain = train(
        load_config(TINY, small(tmp_path, "plain", **{"eval.before_training": "true", "run.report": "true"})),
        progress=False,
    )
    html = (plain.run_dir / "report.html").read_text()
    assert "pretrained only (start)" in html and ">untrained<" not in html
    html = (chosen.run_dir / "report.html").read_text()
    for text in ("best: stage-2 epoch 1", "last: stage-2 epoch 2", "validation mAP", "test mean cosine", "Validation"):
        assert text in html, text
    assert (chosen.run_dir / "validation.png").stat().st_size > 5000
