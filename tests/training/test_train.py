"""Training runs end to end: the CLI, split stages, NaN stops, DDP on CPU (resume equality: test_model_selection)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch

from svllreid.cli import main
from svllreid.config import load_config
from svllreid.errors import CheckpointError, ConfigError, TrainingDiverged
from svllreid.inference.checkpoint import read_checkpoint
from svllreid.training.run import train
from tests.tiny_runs import TINY, small, weights

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)  # about a minute on an idle 2-core machine; generous for a busy one
def test_cli_end_to_end_beats_the_untrained_network(tmp_path, capsys):
    """The README's tiny config through the CLI: stage 1 -> stage 2 -> evaluation, in about a minute."""
    overrides = [
        f"data.root={tmp_path / 'synthetic'}",
        "data.options={ids: 32, cameras: 4, images_per_camera: 4, seed: 3}",
        "stage2.epochs=12",
        "stage2.milestones=[10]",
        # The tiny ResNet from random weights: the claim is that training learns (benchmarks/demo_figures.py
        # measures what the pretrained ViT start adds).
        "model.arch=svll-tiny-rn",
        "model.pretrained=none",
        "model.stride=null",
        "stage2.vis_ssl=true",
        f"run.output_dir={tmp_path / 'runs'}",
        "run.name=e2e",
        "run.report=false",  # the report of a training run has its own test (tests/test_tools.py)
    ]
    assert main(["train", str(TINY), *overrides, "--no-progress"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("results (camera protocol), in %:") :]
    assert "untrained (random), the start " in table and "\ntrained " in table
    run_dir = tmp_path / "runs" / "e2e"
    assert load_config(run_dir / "config.yaml").data.options["ids"] == 32
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records} == {"stage1", "stage2", "dynamics"}
    assert {"loss_i2t", "loss_t2i", "loss_lang_ssl"} <= set(records[0])
    last_step = [r for r in records if r["stage"] == "stage2"][-1]
    assert {"loss_id", "loss_triplet", "loss_i2t", "loss_vis_ssl", "lr", "images_per_s"} <= set(last_step)
    assert any((run_dir / "tensorboard").iterdir())
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {
        "last.safetensors",
        "stage1.safetensors",
        "model.safetensors",
    }
    result = json.loads((run_dir / "eval.json").read_text())
    trained, untrained = result["final"], result["untrained"]
    assert trained["protocol"] == "camera"
    # Measured: 0.05 untrained and 0.15 trained (random init, tiny network, 2 CPU cores).
    assert trained["mAP"] > max(2 * untrained["mAP"], untrained["mAP"] + 0.05), (trained["mAP"], untrained["mAP"])
    assert trained["rank1"] > untrained["rank1"]


@pytest.mark.slow
def test_stages_run_separately_and_checkpoints_are_checked(tmp_path, capsys):
    first = small(tmp_path, "s1")
    assert main(["train", str(TINY), "--stage", "1", *first, "--no-progress"]) == 0
    stage1 = tmp_path / "runs" / "s1" / "checkpoints" / "stage1.safetensors"
    assert read_checkpoint(stage1).meta["stage"] == 1
    second = small(tmp_path, "s2")
    assert main(["train", str(TINY), "--stage", "2", "--from", str(stage1), *second, "--no-progress"]) == 0
    assert (tmp_path / "runs" / "s2" / "eval.json").is_file()
    assert main(["train", str(TINY), "--stage", "2", *small(tmp_path, "s3"), "--no-progress"]) == 2
    assert "--stage 2 needs --from" in capsys.readouterr().err
    assert main(["train", str(TINY), "--stage", "1", *first, "--no-progress"]) == 2  # the name is taken
    assert "already exists; choose another run.name" in capsys.readouterr().err
    other = small(tmp_path, "other", **{"data.options": "{ids: 20, cameras: 3, images_per_camera: 3, seed: 1}"})
    other[0] = f"data.root={tmp_path / 'synthetic20'}"
    with pytest.raises(CheckpointError, match=r"made for another network \(num_classes: checkpoint 8 vs this run 10"):
        train(load_config(TINY, other), stages=(2,), init_from=str(stage1), progress=False)


def test_nan_loss_stops_with_step_and_term_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from svllreid.training.tasks import ImageStageTask

    real_forward = ImageStageTask.forward
    calls = {"n": 0}

    def poisoned(self, batch):
        terms = real_forward(self, batch)
        calls["n"] += 1
        if calls["n"] == 3:
            terms["triplet"] = terms["triplet"] * float("nan")
        return terms

    monkeypatch.setattr(ImageStageTask, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"stage2, epoch 1, step \d+: loss term 'triplet' is nan"):
        train(load_config(TINY, small(tmp_path, "nan")), progress=False)
    last = read_checkpoint(tmp_path / "runs" / "nan")
    assert (last.meta["stage"], last.meta["epoch"]) == (1, 2)  # the last good checkpoint survives


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DDP_SEMANTICS = ("global", "per_process")


def _ddp_worker(rank: int, world: int, runs: list[tuple[int, list[str], str]]) -> None:
    """One process of the group: each run in turn (one process start for all of them)."""
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1"}
    )
    torch.set_num_threads(1)
    for port, overrides, out in runs:
        os.environ["MASTER_PORT"] = str(port)
        result = train(load_config(TINY, overrides), progress=False)
        # Parameters only: BatchNorm running statistics are per process (DDP broadcasts rank 0's before each step).
        torch.save({k: v.detach().clone() for k, v in result.model.named_parameters()}, Path(out) / f"rank{rank}.pt")


def ddp_run_plan(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Path], list[tuple[int, list[str], str]]]:
    """A 2-process gloo run of each batch semantics: each run's folder, and :func:`_ddp_worker`'s runs."""
    folders = {semantics: tmp_path_factory.mktemp(f"ddp-{semantics}") for semantics in DDP_SEMANTICS}
    runs = []
    for semantics, folder in folders.items():
        # The global run also chooses its checkpoint on a validation split: the main process decides, and
        # every process returns the network it delivers.
        extra = {"data.validation_ids": 2, "eval.patience": 1} if semantics == "global" else {}
        overrides = small(folder, "ddp", **{"run.batch_semantics": semantics, **extra})
        load_config(TINY, overrides)  # fail fast on a bad override, before spawning
        runs.append((_free_port(), overrides, str(folder)))
    return folders, runs


@pytest.fixture(scope="module")
def ddp_runs(ddp_launch) -> dict[str, Path]:
    """The runs of :func:`ddp_run_plan`, made by the folder's DDP launch (tests/training/conftest.py)."""
    return ddp_launch.runs


@pytest.mark.slow
@pytest.mark.parametrize("semantics", DDP_SEMANTICS)
def test_ddp_on_cpu_with_two_processes(ddp_runs, semantics):
    tmp_path = ddp_runs[semantics]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in rank0:  # different shares of the data, identical weights: gradients were synchronised
        assert torch.equal(rank0[key], rank1[key]), key
    run_dir = tmp_path / "runs" / "ddp"
    assert (run_dir / "eval.json").is_file()
    saved = weights(run_dir / "checkpoints" / "model.safetensors")
    assert torch.equal(saved["prompt_learner.cls_ctx"], rank0["prompt_learner.cls_ctx"])
    for key in rank0:  # every process holds the delivered network (the best on validation, or the last)
        assert torch.equal(saved[key], rank0[key]), key
    if semantics == "global":
        assert "selection" in json.loads((run_dir / "eval.json").read_text())


def test_too_few_identities_for_pk_is_refused_before_stage_1(tmp_path) -> None:
    cfg = load_config(TINY, small(tmp_path, "pk", **{"stage2.ids_per_batch": 40}))
    with pytest.raises(ConfigError, match="P×K sampling needs at least P=40 identities; the training set has 8"):
        train(cfg, progress=False)
    assert not (tmp_path / "runs" / "pk" / "checkpoints" / "stage1.safetensors").exists()  # stage 1 never ran
