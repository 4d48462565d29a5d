"""Stage 2's dynamics: the gradient alignment leaves the step unchanged and measures what it says; the
identity spread; the probe set; a run logs both and its report draws them; occluded data trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import svllreid
from svllreid.cli import main
from svllreid.data.types import Sample
from svllreid.training.dynamics import gradient_alignment, identity_spread, probe_samples
from svllreid.training.tasks import ImageStageTask, Stage2Losses
from tests.tiny_runs import TINY, small
from tests.training.test_tasks import make_batch


def _task() -> tuple[ImageStageTask, list[torch.nn.Parameter]]:
    torch.manual_seed(0)
    model = svllreid.create_model(
        "svll-tiny-vit", 4, num_cameras=3, image_size=(64, 32), sie="camera", vis_ssl_head=True, ssl_hidden_dim=32
    ).train()
    model.prepare_stage(2)
    task = ImageStageTask(model, torch.randn(4, 64), Stage2Losses(vis_ssl_weight=0.8))
    return task, [p for p in model.image_encoder.parameters() if p.requires_grad]


def test_gradient_alignment_measures_the_two_gradients_and_leaves_the_step_unchanged():
    task, encoder = _task()
    batch = make_batch()
    state = {k: v.clone() for k, v in task.model.state_dict().items()}
    terms = task(batch)
    alignment = gradient_alignment(terms, encoder)
    assert all(p.grad is None for p in encoder)  # nothing accumulated
    sum(terms.values()).backward()
    probed = [p.grad.clone() for p in encoder]
    # The same step without the probe: the same gradients.
    task.model.load_state_dict(state)
    task.model.zero_grad(set_to_none=True)
    sum(task(batch).values()).backward()
    for a, p in zip(probed, encoder, strict=True):
        torch.testing.assert_close(a, p.grad)
    # What it measures, computed directly from the two losses' gradients.
    task.model.zero_grad(set_to_none=True)
    terms = task(batch)
    ssl = torch.autograd.grad(terms["vis_ssl"], encoder, retain_graph=True, allow_unused=True)
    main_loss = terms["id"] + terms["triplet"] + terms["i2t"]
    rest = torch.autograd.grad(main_loss, encoder, allow_unused=True)
    both = [(s, m) for s, m in zip(ssl, rest, strict=True) if s is not None and m is not None]
    a, b = torch.cat([s.flatten() for s, _ in both]), torch.cat([m.flatten() for _, m in both])
    assert alignment is not None
    assert alignment["grad_cosine"] == pytest.approx(float(a @ b / (a.norm() * b.norm())), rel=1e-4)
    assert alignment["grad_norm_ratio"] == pytest.approx(float(a.norm() / b.norm()), rel=1e-4)
    assert gradient_alignment({"id": terms["id"]}, encoder) is None  # no vision SSL term: nothing to measure


def test_identity_spread_within_and_between():
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    spread = identity_spread(features, torch.tensor([0, 0, 1, 1]))
    assert spread["within"] == pytest.approx(0.0, abs=1e-6) and spread["between"] == pytest.approx(1.0)
    tilted = torch.tensor([[1.0, 0.2], [1.0, -0.2], [0.2, 1.0], [-0.2, 1.0]])
    spread = identity_spread(tilted, torch.tensor([0, 0, 1, 1]))
    assert 0 < spread["within"] < 0.05 and spread["ratio"] == pytest.approx(spread["within"] / spread["between"])


def test_probe_set_is_fixed_and_skips_single_images():
    train = [Sample(f"/x/{pid}_{i}.jpg", pid, 0, 0) for pid in range(20) for i in range(3 if pid else 1)]
    probe = probe_samples(list(reversed(train)), ids=4, per_id=2)
    assert [s.pid for s in probe] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert probe == probe_samples(train, ids=4, per_id=2)


@pytest.mark.slow
def test_a_run_on_occluded_data_logs_its_dynamics_and_draws_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))
    overrides = small(
        tmp_path,
        "dyn",
        **{
            "data.root": "",
            "data.options": "{ids: 16, cameras: 3, images_per_camera: 3, seed: 1, occluded_queries: [0.2, 0.5]}",
            "stage1.epochs": 1,
            "stage2.vis_ssl": "true",
            "stage2.probe_gradients": "true",
            "run.report": "true",
        },
    )
    assert main(["train", str(TINY), *overrides, "--no-progress"]) == 0
    run_dir = tmp_path / "runs" / "dyn"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    dynamics = [r for r in records if r["stage"] == "dynamics"]
    assert [r["epoch"] for r in dynamics] == [0, 1, 2]
    assert "grad_cosine" not in dynamics[0] and -1 <= dynamics[1]["grad_cosine"] <= 1
    assert all(r["spread_within"] >= 0 and r["spread_between"] > 0 for r in dynamics)
    assert (run_dir / "dynamics.png").is_file()
    report = (run_dir / "report.html").read_text()
    assert "Dynamics" in report and "probe set" in report
    occluded = json.loads((run_dir / "eval.json").read_text())["final"]
    # eval --dataset on the holistic set of the same identities
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(run_dir),
                "--dataset",
                "synthetic",
                "-o",
                "ids=16",
                "-o",
                "cameras=3",
                "-o",
                "images_per_camera=3",
                "-o",
                "seed=1",
                "--out",
                str(tmp_path / "holistic"),
            ]
        )
        == 0
    )
    # Without options, eval takes the training ones: the occluded queries again, the same figures.
    assert main(["eval", "--checkpoint", str(run_dir), "--out", str(tmp_path / "same"), "--no-report"]) == 0
    again = json.loads((Path(tmp_path / "same") / "eval.json").read_text())["result"]
    assert again["mAP"] == pytest.approx(occluded["mAP"], abs=1e-6)
    holistic = json.loads((Path(tmp_path / "holistic") / "eval.json").read_text())["result"]
    assert holistic["mAP"] != occluded["mAP"]  # the same model on other queries
    assert (Path(tmp_path / "holistic") / "report.html").is_file()


def test_feature_extraction_records_no_gradients_for_a_model_being_trained():
    from svllreid.inference.features import extract_features, f12_encoder

    task, _ = _task()  # prepare_stage(2): the encoder's parameters require gradients
    batch = make_batch()
    loader = [{"image": batch["image"], "camid": batch["camid"], "viewid": batch["viewid"]}]

    class Loader(list):
        dataset = batch["image"]

    feats = extract_features(f12_encoder(task.model), Loader(loader), torch.device("cpu"))
    assert feats.shape == (8, 128) and not feats.requires_grad and feats.grad_fn is None


def test_a_resumed_run_keeps_the_dynamics_its_checkpoint_logged_and_no_other(tmp_path):
    from svllreid.training.trainer import MetricsLog

    lines = [
        {"stage": "stage1", "epoch": 2, "step": 10, "loss": 1.0},
        {"stage": "dynamics", "epoch": 0, "step": 10, "spread_within": 0.1},  # after the stage-1 checkpoint
        {"stage": "stage2", "epoch": 1, "step": 12, "loss": 1.0},
    ]
    for dynamics, kept in (((), 1), ([0], 2)):
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        MetricsLog(tmp_path, resume_step=10, dynamics=dynamics).close()
        records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert len(records) == kept and records[0]["stage"] == "stage1"
