"""``svllreid eval``: evaluate a trained checkpoint on any supported dataset and write its results."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svllreid.data.factory import build_dataset
from svllreid.data.types import ReIDDataset
from svllreid.distributed import DistInfo, run_everywhere, run_on_main
from svllreid.evaluation.model_eval import (
    EvalOptions,
    ModelEvaluation,
    evaluate_features,
    sample_features,
    unique_test_samples,
)
from svllreid.evaluation.options import eval_options
from svllreid.fileio import atomic_write_text
from svllreid.inference.features import TestImages
from svllreid.inference.onnx_backend import ExportedModel
from svllreid.inference.trained import TrainedModel, load_trained_model
from svllreid.precision import resolve_precision

__all__ = ["CheckpointEvaluation", "default_out_dir", "evaluate_checkpoint", "uses_side_info"]

log = logging.getLogger(__name__)


@dataclass
class CheckpointEvaluation:
    """What :func:`evaluate_checkpoint` measured and wrote."""

    out_dir: Path
    trained: TrainedModel
    dataset: ReIDDataset
    evaluation: ModelEvaluation
    side_info: bool
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    #: The exported file whose features were evaluated, described (None: the checkpoint's network in torch).
    model_file: str | None = None

    @property
    def summary(self) -> dict[str, Any]:
        return self.evaluation.summary


def uses_side_info(trained: TrainedModel, dataset: ReIDDataset) -> tuple[bool, str | None]:
    """Whether the model's SIE can take this dataset's cameras and views, and why not otherwise.

    SIE vectors belong to the cameras of the training set: on another dataset (camera 1 of Market is
    not camera 1 of Duke) or with ids beyond the table they are left out (every id passed as unknown).
    """
    spec = trained.spec
    if spec.sie is None:
        return False, None
    saved = trained.checkpoint.meta.get("dataset", {})
    same_root = Path(str(saved.get("root", ""))).resolve() == Path(dataset.root).resolve()
    if dataset.name != trained.trained_on or not same_root:
        return False, (
            f"the model's SIE was learnt on the cameras of {trained.trained_on} at {saved.get('root', '?')}; "
            f"on {dataset.name} at {dataset.root} it is left out"
        )
    if dataset.num_cameras > spec.num_cameras or dataset.num_views > spec.num_views:
        return False, (
            f"{dataset.name} has {dataset.num_cameras} cameras / {dataset.num_views} views but the SIE table "
            f"{spec.num_cameras} / {spec.num_views}; SIE is left out"
        )
    return True, None


def default_out_dir(
    trained: TrainedModel, dataset_name: str, rerank: bool, flip: bool, *, model_file: str | Path | None = None
) -> Path:
    """``<run>/eval/<dataset>[-rerank][-flip][-<exported file>]`` for a checkpoint inside a run directory,
    else ``eval/<dataset>...-<time>``; a folder that exists already gets the time too (nothing is
    overwritten)."""
    leaf = f"{dataset_name}{'-rerank' if rerank else ''}{'-flip' if flip else ''}"
    if model_file is not None:
        leaf += f"-{Path(model_file).name}"
    ckpt = trained.checkpoint.path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if ckpt.parent.name == "checkpoints" and (ckpt.parent.parent / "config.yaml").is_file():
        out = ckpt.parent.parent / "eval" / leaf
        return out if not out.exists() else out.with_name(f"{leaf}-{stamp}")
    return Path("eval") / f"{leaf}-{stamp}"


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    dataset: str | None = None,
    root: str | None = None,
    options: dict[str, Any] | None = None,
    rerank: bool = False,
    flip: bool = False,
    out_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = False,
    dist: DistInfo | None = None,
    model_file: str | Path | None = None,
) -> CheckpointEvaluation | None:
    """Evaluate a checkpoint on its own test set or, with ``dataset``, on another one (cross-domain).

    Writes ``eval.json`` to ``out_dir``; :func:`svllreid.evaluation.reporting.write_evaluation_report` adds the
    figures and ``report.html``.

    Args:
        checkpoint: a checkpoint file or a run directory.
        dataset, root, options: the dataset to evaluate on (default: the checkpoint's, with its root). Options
            None take the training options when the dataset is the training one; ``{}`` is no options (the
            same identities without, say, ``occluded_queries``).
        rerank: k-reciprocal re-ranking with the checkpoint's ``eval.rerank_*`` parameters.
        flip: add the features of flipped images.
        dist: the processes of a torchrun launch, every one calling this (with its own ``device``): they
            share the feature extraction, and the main process alone computes the metrics and writes them.
            None: this process alone.
        model_file: evaluate this exported file (ONNX, INT8 included, or OpenVINO) instead of the torch
            network: the checkpoint gives the dataset and the protocol, the file the features. The file
            must hold the checkpoint's network and weights.

    Raises:
        CheckpointError: ``model_file`` holds another network or other weights.

    Returns:
        The evaluation; None on the processes of a launch other than the main one.
    """
    info = dist or DistInfo()
    trained, runs, data, side_info, notes, evaluation_options = run_everywhere(
        lambda: _prepare(
            checkpoint,
            model_file=model_file,
            dataset=dataset,
            root=root,
            options=options,
            device=device,
            rerank=rerank,
            flip=flip,
            batch_size=batch_size,
            num_workers=num_workers,
        ),
        info,
    )
    if info.is_main:
        for text in notes:
            log.warning("%s", text)
    images = TestImages(runs.transform, runs.image_size, runs.interpolation)
    samples, _ = unique_test_samples(data)
    feats = sample_features(
        runs.model,
        samples,
        images=images,
        device=runs.device,
        options=evaluation_options,
        progress=progress,
        dist=info,
    )

    def finish() -> CheckpointEvaluation:
        evaluation = evaluate_features(feats, data, options=evaluation_options)
        if out_dir is None:
            out = default_out_dir(trained, data.name, rerank, flip, model_file=model_file)
        else:
            out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        exported = runs if isinstance(runs, ExportedModel) else None
        result = CheckpointEvaluation(
            out, trained, data, evaluation, side_info, notes, model_file=exported.describe() if exported else None
        )
        payload = {
            "checkpoint": trained.checkpoint.name,
            "model": runs.describe(),
            **({"model_file": str(exported.path), "precision": exported.facts.get("precision")} if exported else {}),
            "weights_sha256": trained.weights_digest(),  # which weights these results are of (model cards check it)
            "dataset": {"name": data.name, "root": data.root},
            "flip": flip,
            "rerank": rerank,
            "side_info": side_info,
            "notes": notes,
            "result": evaluation.summary,
        }
        result.files["json"] = out / "eval.json"
        atomic_write_text(result.files["json"], json.dumps(payload, indent=2))
        return result

    return run_on_main(finish, info)


def _prepare(
    checkpoint: str | Path,
    *,
    model_file: str | Path | None,
    dataset: str | None,
    root: str | None,
    options: dict[str, Any] | None,
    device: str,
    rerank: bool,
    flip: bool,
    batch_size: int | None,
    num_workers: int,
) -> tuple[TrainedModel, TrainedModel | ExportedModel, ReIDDataset, bool, list[str], EvalOptions]:
    """The network, what runs it (itself, or ``model_file`` checked to hold it), the dataset, whether SIE
    takes its cameras, the notes for the user, and the options: what every process of
    :func:`evaluate_checkpoint` reads alike."""
    trained = load_trained_model(checkpoint, "cpu" if model_file is not None else device)
    cfg = trained.config
    data_cfg = cfg.data
    same = dataset is None or dataset == data_cfg.dataset  # the training set's root and options still apply
    data_cfg = dataclasses.replace(
        data_cfg,
        dataset=dataset or data_cfg.dataset,
        root=root if root is not None else (data_cfg.root if same else ""),
        options=dict(options if options is not None else (data_cfg.options if same else {})),
        check="quick" if dataset is not None else data_cfg.check,
    )
    data = build_dataset(data_cfg)
    side_info, note = uses_side_info(trained, data)
    notes = [note] if note else []
    runs: TrainedModel | ExportedModel = trained
    if model_file is not None:
        from svllreid.inference.exported import load_exported_model

        runs = load_exported_model(model_file, device="cpu")
        runs.check_same_features(trained.identity(), str(trained.checkpoint.path))
        if side_info and not getattr(runs.model, "side_info", False):
            side_info = False
            notes.append(
                f"{Path(model_file).name} was exported without the side_info input: cameras are unknown to it "
                "(export with --side-info to give them)"
            )
    if data.kind != trained.spec.kind:
        notes.append(f"the model was trained on {trained.spec.kind} images and is evaluated on {data.kind} images")
    evaluation_options = eval_options(
        cfg.eval,
        num_workers=num_workers,
        amp_dtype=None if model_file is not None else resolve_precision("auto", trained.device),
        rerank=rerank,
        flip=flip,
        batch_size=batch_size,
        side_info=side_info,
    )
    return trained, runs, data, side_info, notes, evaluation_options
