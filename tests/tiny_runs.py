"""Seconds-long training runs for the tests: the README's tiny config on a small synthetic set."""

from __future__ import annotations

from pathlib import Path

import torch

from svllreid.inference.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "synthetic_tiny.yaml"


def small(tmp_path: Path, name: str, **extra: object) -> list[str]:
    """Overrides for a seconds-long run on a small synthetic set, with a tiny ViT and both SSL losses."""
    values = {
        "data.root": str(tmp_path / "synthetic"),
        "data.options": "{ids: 16, cameras: 3, images_per_camera: 3, seed: 1}",
        "data.num_workers": 0,
        "stage1.epochs": 2,
        "stage1.batch_size": 16,
        "stage2.epochs": 2,
        "stage2.ids_per_batch": 4,
        "stage2.images_per_id": 2,
        "stage2.warmup_epochs": 1,
        "stage2.milestones": "[2]",
        "stage2.vis_ssl": "true",
        "eval.before_training": "false",
        "run.output_dir": str(tmp_path / "runs"),
        "run.name": name,
        "run.log_every": 2,
        "run.report": "false",  # the report of a training run has its own test (tests/test_tools.py)
    } | extra
    return [f"{k}={v}" for k, v in values.items()]


def small_with(tmp_path: Path, name: str, arch: str, **extra: object) -> list[str]:
    """:func:`small` with another tiny network, one stage-1 epoch, the config's own losses and a report:
    the shipped svll-synth weights for the tiny ViT, random ones for the tiny ResNet."""
    vit = arch == "svll-tiny-vit"
    values: dict[str, object] = {
        "model.arch": arch,
        "model.pretrained": "svll-synth" if vit else "none",
        "model.stride": 8 if vit else "null",
        "stage1.epochs": 1,
        "stage2.vis_ssl": "false",
        "run.report": "true",
    }
    return small(tmp_path, name, **(values | extra))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).group("model")
