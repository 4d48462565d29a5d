"""Language-image pretraining: the task, its weights file, exact resume and the two commands."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import load_file

import svllreid
from svllreid.cli import main
from svllreid.config import load_config
from svllreid.data.synthesis import generate_synthetic
from svllreid.errors import PretrainedError
from svllreid.models.pretrained import build_clip
from svllreid.pretraining.pretrain import pretrain
from svllreid.training.tasks import ContrastiveTask

ARCH = "svll-tiny-vit"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "svll_synth_vit.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small captioned world: 24 identities, 16 to train on, 8 held out."""
    root = tmp_path_factory.mktemp("captions") / "world"
    generate_synthetic(root, num_ids=24, num_cameras=3, images_per_camera=2, seed=21, workers=1, train_ids=16)
    return root


def tiny_config(world: Path, out: Path, *extra: str):
    return load_config(
        CONFIG,
        [
            f"data.root={world}",
            "pretrain.epochs=2",
            "pretrain.batch_size=16",
            "pretrain.warmup_epochs=1",
            f"run.output_dir={out}",
            "run.name=pre",
            "run.log_every=2",
            "run.device=cpu",
            "eval.batch_size=64",
            *extra,
        ],
    )


def fixed_batch(world: Path, size: int = 24) -> dict[str, torch.Tensor]:
    from svllreid.data.datasets import load_caption_dataset
    from svllreid.data.loaders import read_resized

    pairs = load_caption_dataset("synthetic_captions", str(world)).split("train")[:size]
    images = torch.stack([read_resized(p.path, (64, 32)).float() / 127.5 - 1 for p in pairs])
    return {"image": images, "tokens": open_clip.get_tokenizer(ARCH)([p.caption for p in pairs])}


def test_a_pretraining_step_lowers_the_contrastive_loss(world: Path):
    torch.manual_seed(0)
    clip, _ = build_clip(ARCH)
    clip.train()
    task = ContrastiveTask(clip)
    batch = fixed_batch(world)
    optimizer = torch.optim.AdamW(clip.parameters(), lr=1e-4)
    before = task(batch)["contrastive"]
    for _ in range(3):
        loss = task(batch)["contrastive"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = task(batch)["contrastive"].item()
    assert after < before.item() - 0.05
    assert all(p.grad is not None for p in clip.parameters())  # every weight trains, the logit scale too


def test_task_text_features_equal_open_clips_full_context(world: Path):
    torch.manual_seed(1)
    clip, _ = build_clip(ARCH)
    task = ContrastiveTask(clip).eval()
    tokens = fixed_batch(world, 6)["tokens"]
    with torch.no_grad():
        truncated = task.text(task.text.embed_tokens(tokens), tokens.argmax(dim=1))
        full = clip.encode_text(tokens)
    torch.testing.assert_close(truncated, full, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def finished(world: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("runs")
    return pretrain(tiny_config(world, out), progress=False)


@pytest.mark.slow
def test_pretrain_writes_weights_that_open_clip_and_svllreid_load(finished):
    weights = finished.weights
    assert weights is not None and weights.is_file()
    saved = load_file(str(weights))
    reference = open_clip.create_model(ARCH, pretrained=str(weights))
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(value, saved[key].to(value.dtype))
    model = svllreid.create_model(ARCH, num_classes=3, image_size=(64, 32), stride=8, pretrained=str(weights))
    assert model.load_report.kind == "state-dict"
    torch.testing.assert_close(model.text_encoder.text_projection, saved["text_projection"].float())
    # before / after evaluations, the report and the run's files
    assert finished.before is not None and finished.after is not None
    assert set(finished.after) >= {"R@1", "R@5", "R@10", "mAP", "mINP", "captions", "images"}
    run = finished.run_dir
    assert json.loads((run / "eval.json").read_text())["after"] == finished.after
    assert (run / "report.html").is_file() and (run / "losses.png").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and all(r["stage"] == "pretrain" and "loss_contrastive" in r for r in records)


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_pretrain_resume_is_exact_on_cpu(world: Path, tmp_path: Path, finished, monkeypatch: pytest.MonkeyPatch):
    import svllreid.pretraining.pretrain as module

    original = module.write_checkpoint

    def write_then_stop(path, model, meta, *args, **kwargs):
        written = original(path, model, meta, *args, **kwargs)
        if meta["epoch"] == 1:
            raise Interrupted  # the machine went down after epoch 1's checkpoint
        return written

    monkeypatch.setattr(module, "write_checkpoint", write_then_stop)
    with pytest.raises(Interrupted):
        pretrain(tiny_config(world, tmp_path), progress=False)
    monkeypatch.setattr(module, "write_checkpoint", original)
    run_dir = tmp_path / "pre"
    assert not (run_dir / "clip.safetensors").exists()
    resumed = pretrain(load_config(run_dir / "config.yaml"), resume=str(run_dir), progress=False)
    straight, again = load_file(str(finished.weights)), load_file(str(resumed.weights))
    assert straight.keys() == again.keys()
    for key in straight:
        torch.testing.assert_close(again[key], straight[key], atol=0, rtol=0, msg=key)
    assert resumed.steps == finished.steps
    assert resumed.before == finished.before  # kept from the interrupted run's eval.json
    assert resumed.after == finished.after


def test_pretrain_refuses_an_image_size_the_architecture_was_not_built_for(world: Path, tmp_path: Path):
    with pytest.raises(ValueError, match=r"built for 64×32 images but data.image_size is \[128, 64\]"):
        pretrain(tiny_config(world, tmp_path, "data.image_size=[128,64]"), progress=False)


@pytest.mark.slow
def test_pretrain_and_eval_text_commands(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    args = [
        "pretrain",
        str(CONFIG),
        f"data.root={world}",
        "pretrain.epochs=1",
        "pretrain.batch_size=16",
        f"run.output_dir={tmp_path}",
        "run.name=cli",
        "run.device=cpu",
        "run.report=false",
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "text-to-image retrieval on the test split" in out and "before" in out and "after" in out
    run = tmp_path / "cli"
    assert main(["eval-text", "--checkpoint", str(run), "--dataset", "synthetic_captions", "--root", str(world),
                 "--json", "--no-progress"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    expected = json.loads((run / "eval.json").read_text())["after"]
    for key in ("R@1", "R@5", "R@10", "mAP", "mINP"):
        assert result[key] == pytest.approx(expected[key], abs=1e-6)
    assert result["model"].startswith(f"CLIP {ARCH}")
    # The same weights named as a CLIP file give the same numbers.
    assert main(["eval-text", "--arch", ARCH, "--pretrained", str(run / "clip.safetensors"), "--dataset",
                 "synthetic_captions", "--root", str(world), "--json", "--no-progress"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["mAP"] == pytest.approx(result["mAP"], abs=1e-6)


def test_eval_text_of_a_pretraining_checkpoint_file_points_to_its_weights(finished, capsys):
    last = finished.run_dir / "checkpoints" / "last.safetensors"
    assert main(["eval-text", "--checkpoint", str(last), "--dataset", "synthetic_captions"]) == 2
    assert "is a pretraining checkpoint" in capsys.readouterr().err


def test_eval_text_errors_are_explained(world: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["eval-text", "--dataset", "synthetic_captions", "--root", str(world)]) == 2
    assert "pass either --checkpoint" in capsys.readouterr().err
    assert main(["eval-text", "--pretrained", "x.safetensors", "--dataset", "synthetic_captions"]) == 2
    assert "--pretrained needs --arch" in capsys.readouterr().err
    assert main(["eval-text", "--arch", ARCH, "--pretrained", "none", "--dataset", "market1501", "--root", "."]) == 2
    assert "needs a captions" in capsys.readouterr().err


def test_shipped_tag_is_refused_for_another_architecture():
    with pytest.raises(PretrainedError, match="exist for svll-tiny-vit only"):
        build_clip("svll-tiny-rn", "svll-synth")


def test_a_run_of_one_kind_is_not_resumed_as_the_other(finished, capsys: pytest.CaptureFixture[str]):
    assert main(["train", "--resume", str(finished.run_dir)]) == 2
    assert "is a pretrain checkpoint; continue it with svllreid pretrain --resume" in capsys.readouterr().err
