"""A training run: stage 1, stage 2 and the final evaluation, in a run directory.

This is the factory level: it reads the whole config and turns it into plain arguments for the
data layer, the model, the tasks and the trainer.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed

from svllreid.config import Config, SideInfo, config_to_dict, save_config
from svllreid.data.factory import build_dataset, build_image_caches, build_transforms, parse_dataset
from svllreid.data.loaders import ReIDImageDataset, build_test_loader, build_train_loader, set_loader_epoch
from svllreid.data.samplers import global_batch_error, pk_sampling_error
from svllreid.data.types import ReIDDataset
from svllreid.engine.checkpoint import (
    Checkpoint,
    load_model_state,
    load_optimizer_state,
    read_checkpoint,
    restore_rng,
    write_checkpoint,
)
from svllreid.engine.distributed import DistInfo, barrier, init_distributed, resolve_device, shutdown
from svllreid.engine.features import (
    ModelEvaluation,
    TestImages,
    evaluate_model,
    extract_features,
    projection_encoder,
)
from svllreid.engine.optim import build_adam, cosine_with_warmup, multistep_with_warmup
from svllreid.engine.options import eval_options, stage2_losses
from svllreid.engine.reporting import write_train_embedding, write_training_report
from svllreid.engine.tasks import ImageStageTask, PromptStageTask
from svllreid.engine.trainer import MetricsLog, StagePlan, Trainer
from svllreid.errors import CheckpointError, ConfigError
from svllreid.eval.summary import format_summary
from svllreid.fileio import atomic_write_text
from svllreid.models.factory import ModelSpec, create_model
from svllreid.models.reid_model import ReIDModel
from svllreid.precision import resolve_precision

log = logging.getLogger(__name__)

SSL_HEAD_PREFIXES = ("lang_projector.", "vis_projector.")


@dataclass
class RunResult:
    run_dir: Path
    model: ReIDModel | None = None
    evaluation: dict[str, Any] | None = None
    untrained: dict[str, Any] | None = None
    #: The final model on the validation split (``data.validation_ids``), when the dataset has one.
    validation: dict[str, Any] | None = None
    checkpoints: dict[str, Path] = field(default_factory=dict)
    #: The evaluations in full (ranked lists, features), for the report.
    final_details: ModelEvaluation | None = None
    #: ``report.html`` (None when it could not be written; the run's other files are complete).
    report: Path | None = None


def method_name(cfg: Config) -> str:
    """SVLL-ReID when either self-supervision branch is on, else CLIP-ReID."""
    return "SVLL-ReID" if (cfg.stage1.lang_ssl or cfg.stage2.vis_ssl) else "CLIP-ReID"


def effective_sie(mode: SideInfo, dataset: ReIDDataset) -> SideInfo:
    """The SIE mode to build: camera+view falls back to camera-only without viewpoint labels
    (METHOD.md 5, VeRi without its viewpoint files); other missing side information is an error."""
    if mode == "camera_view" and dataset.num_views == 0 and dataset.num_cameras > 0:
        log.info("%s has no viewpoint labels: SIE uses cameras only", dataset.name)
        return "camera"
    if mode in ("camera", "camera_view") and dataset.num_cameras == 0:
        raise ValueError(f"model.sie={mode} needs camera labels, but {dataset.name} has none; use model.sie=none")
    if mode in ("view", "camera_view") and dataset.num_views == 0:
        raise ValueError(f"model.sie={mode} needs viewpoint labels, but {dataset.name} has none")
    return mode


def build_model(cfg: Config, dataset: ReIDDataset) -> ReIDModel:
    """The network the config describes, sized for the dataset's identities, cameras and views."""
    return create_model(
        cfg.model.arch,
        num_classes=dataset.num_train_ids,
        num_cameras=dataset.num_cameras,
        num_views=dataset.num_views,
        image_size=cast(tuple[int, int], tuple(cfg.data.image_size)),  # [height, width] (checked by DataConfig)
        stride=cfg.model.stride,
        sie=effective_sie(cfg.model.sie, dataset),
        sie_coef=cfg.model.sie_coef,
        pretrained=cfg.model.pretrained,
        kind=dataset.kind,
        last_stride=cfg.model.last_stride,
        lang_ssl_head=cfg.stage1.lang_ssl,
        vis_ssl_head=cfg.stage2.vis_ssl,
        ssl_hidden_dim=cfg.model.ssl_hidden_dim,
        ssl_out_dim=cfg.model.ssl_out_dim,
        force_quick_gelu=cfg.model.force_quick_gelu,
        vis_ssl_bn_init=cfg.model.vis_ssl_bn_init,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_compatible(checkpoint: Checkpoint, spec: ModelSpec, dataset: ReIDDataset) -> None:
    """A checkpoint must describe the same network structure as this run builds."""
    differ = spec.structure_differences(checkpoint.meta.get("spec", {}))
    if differ:
        trained = checkpoint.meta.get("dataset", {}).get("name", "?")
        details = ", ".join(f"{k}: checkpoint {saved!r} vs this run {ours!r}" for k, (ours, saved) in differ.items())
        raise CheckpointError(
            f"{checkpoint.path} was made for another network ({details}; trained on {trained}, this run uses "
            f"{dataset.name}). Use a checkpoint of the same architecture and dataset, or start from CLIP weights "
            "(model.pretrained)"
        )


def load_weights_for_stage2(model: ReIDModel, checkpoint: Checkpoint) -> None:
    """Load a (stage-1) checkpoint; SSL heads the checkpoint lacks keep their initialisation."""
    state = checkpoint.group("model")
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(SSL_HEAD_PREFIXES)]
    unexpected = [k for k in state if k not in own and not k.startswith(SSL_HEAD_PREFIXES)]
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint.path} does not fit this model ({len(missing)} missing, {len(unexpected)} unexpected "
            f"tensors, e.g. {(missing + unexpected)[:3]})"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


class Run:
    """State of one training run (built by :func:`train`)."""

    def __init__(self, cfg: Config, run_dir: Path, dist: DistInfo, progress: bool = True):
        self.cfg = cfg
        self.run_dir = run_dir
        self.dist = dist
        self.device = resolve_device(cfg.run.device, dist)
        self.amp_dtype = resolve_precision(cfg.run.precision, self.device)
        dataset = build_dataset(cfg.data) if dist.is_main else None
        barrier(dist)  # the main process validates (and, for synthetic data, generates) first
        if dataset is None:  # the other processes parse it without repeating the check
            dataset = parse_dataset(cfg.data)
        self.dataset = dataset
        self.transforms = build_transforms(cfg.data)
        self.caches = build_image_caches(cfg.data, self.dataset)  # by resize filter
        self.model = build_model(cfg, self.dataset).to(self.device)
        self.metrics = MetricsLog(run_dir if dist.is_main else None)
        self.trainer = Trainer(
            self.device,
            amp_dtype=self.amp_dtype,
            dist=dist,
            metrics=self.metrics,
            log_every=cfg.run.log_every,
            progress=progress,
        )
        self.size = cast(tuple[int, int], tuple(cfg.data.image_size))  # [height, width] (checked by DataConfig)

    @property
    def global_batch(self) -> bool:
        """Whether the configured batches are those of all processes together (run.batch_semantics)."""
        return self.cfg.run.batch_semantics == "global"

    # --- checkpoints -------------------------------------------------------------------------------
    def meta(self, stage: int, epoch: int) -> dict[str, Any]:
        ds = self.dataset
        return {
            "spec": self.model.spec.to_dict(),
            # The activation is not in the spec (OpenAI weights switch QuickGELU on); inference needs it.
            "quick_gelu": bool(getattr(self.model.load_report, "quick_gelu", False)),
            "config": config_to_dict(self.cfg),
            "dataset": {"name": ds.name, "root": ds.root, "kind": ds.kind, "num_train_ids": ds.num_train_ids},
            "stage": stage,
            "epoch": epoch,
            "global_step": self.trainer.global_step,
        }

    def checkpoint_path(self, name: str) -> Path:
        return self.run_dir / "checkpoints" / f"{name}.safetensors"

    def save(self, name: str, stage: int, epoch: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        if self.dist.is_main:
            meta = self.meta(stage, epoch)
            write_checkpoint(
                self.checkpoint_path(name), self.model, meta, optimizer=optimizer, with_rng=optimizer is not None
            )

    # --- stage 1 -----------------------------------------------------------------------------------
    def cached_image_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """f_proj of every training image: frozen encoder, test transform, no SIE."""
        ds = self.dataset
        interpolation = self.transforms.test_interpolation
        cache = self.caches.get(interpolation)
        images = ReIDImageDataset(ds.train, self.transforms.test, self.size, cache=cache, interpolation=interpolation)
        loader = build_test_loader(images, self.cfg.eval.batch_size, self.cfg.data.num_workers)
        self.model.eval()
        feats = extract_features(projection_encoder(self.model), loader, self.device, amp_dtype=self.amp_dtype)
        labels = torch.tensor([s.pid for s in ds.train], dtype=torch.long, device=self.device)
        return feats, labels

    def stage1(self, start_epoch: int = 1, resume_from: Checkpoint | None = None) -> None:
        c = self.cfg.stage1
        trainable = self.model.prepare_stage(1, c.train_lang_projector)
        features, labels = self.cached_image_features()
        task = PromptStageTask(
            self.model,
            features,
            labels,
            lang_ssl_weight=c.lang_ssl_weight if c.lang_ssl else 0.0,
            prompt_mask=c.prompt_mask,
            prompt_mask_prob=c.prompt_mask_prob,
            global_batch=self.global_batch,
        )
        optimizer = build_adam(trainable, lr=c.lr, weight_decay=c.weight_decay)
        if resume_from is not None:
            load_optimizer_state(optimizer, resume_from)
            restore_rng(resume_from)
        schedule = cosine_with_warmup(
            c.epochs, warmup_epochs=c.warmup_epochs, warmup_lr=c.warmup_lr, min_lr=c.min_lr, base_lr=c.lr
        )
        unused = c.lang_ssl and c.train_lang_projector  # batches with one identity skip the projector
        plan = StagePlan("stage1", c.epochs, schedule, find_unused_parameters=unused)
        seed = self.cfg.run.seed

        def batches(epoch: int):
            return list(task.batches(epoch, c.batch_size, seed, rank=self.dist.rank, world_size=self.dist.world_size))

        self.trainer.fit(
            task,
            optimizer,
            plan,
            batches,
            start_epoch=start_epoch,
            on_epoch_end=lambda e: self.save("last", 1, e, optimizer),
        )
        if task.skipped_ssl_batches:
            skipped = task.skipped_ssl_batches
            log.info("stage 1: language SSL skipped in %d batches with fewer than 2 identities", skipped)
        self.save("stage1", 1, c.epochs)

    # --- stage 2 -----------------------------------------------------------------------------------
    @torch.no_grad()
    def text_features(self) -> torch.Tensor:
        self.model.eval()
        ids = torch.arange(self.model.num_classes, device=self.device)
        return torch.cat([self.model.encode_text(chunk).float() for chunk in ids.split(256)])

    def stage2(self, start_epoch: int = 1, resume_from: Checkpoint | None = None) -> None:
        c = self.cfg.stage2
        trainable = self.model.prepare_stage(2)
        text = self.text_features()
        task = ImageStageTask(
            self.model,
            text,
            stage2_losses(c),
            single_pass=c.single_pass,
            views_update_bn_stats=c.views_update_bn_stats,
            global_batch=self.global_batch,
        )
        if c.vis_ssl and c.single_pass and not task.single_pass:
            log.info("stage 2: the encoder has BatchNorm, so the image and its two views use separate passes")
        optimizer = build_adam(trainable, lr=c.lr, weight_decay=c.weight_decay, bias_lr_factor=c.bias_lr_factor)
        if resume_from is not None:
            load_optimizer_state(optimizer, resume_from)
            restore_rng(resume_from)
        schedule = multistep_with_warmup(c.milestones, c.gamma, c.warmup_epochs, c.warmup_factor)
        plan = StagePlan("stage2", c.epochs, schedule, c.grad_clip)
        view = self.transforms.view if c.vis_ssl else None
        interpolation = self.transforms.train_interpolation
        train_set = ReIDImageDataset(
            self.dataset.train,
            self.transforms.train,
            self.size,
            view_transform=view,
            cache=self.caches.get(interpolation),
            interpolation=interpolation,
        )
        seed = self.cfg.run.seed
        loader = build_train_loader(
            train_set,
            ids_per_batch=c.ids_per_batch,
            images_per_id=c.images_per_id,
            seed=seed,
            num_workers=self.cfg.data.num_workers,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            pin_memory=self.device.type == "cuda",
            global_batch=self.global_batch,
        )

        def batches(epoch: int):
            set_loader_epoch(loader, epoch, seed, self.dist.rank)
            return loader

        self.trainer.fit(
            task,
            optimizer,
            plan,
            batches,
            start_epoch=start_epoch,
            on_epoch_end=lambda e: self.save("last", 2, e, optimizer),
        )

    # --- evaluation --------------------------------------------------------------------------------
    def evaluate(self, split: str = "test") -> ModelEvaluation:
        """The model on the dataset's test splits, or (``split="validation"``) on its validation split."""
        dataset = self.dataset.validation_dataset() if split == "validation" else self.dataset
        if dataset is None:
            raise ValueError(f"{self.dataset.name} has no validation split (data.validation_ids)")
        interpolation = self.transforms.test_interpolation
        images = TestImages(self.transforms.test, self.size, interpolation, self.caches.get(interpolation))
        options = eval_options(self.cfg.eval, num_workers=self.cfg.data.num_workers, amp_dtype=self.amp_dtype)
        return evaluate_model(self.model, dataset, images=images, device=self.device, options=options)

    def write_report(self, result: RunResult, seconds: float) -> Path | None:
        """``report.html`` and its figures. A failure here is logged, not raised: the checkpoints and
        eval.json of the finished run are already written."""
        cfg, ds = self.cfg, self.dataset
        method = method_name(cfg)
        weights = f"weights {cfg.model.pretrained}" if cfg.model.pretrained else "randomly initialised (no weights)"
        facts = {
            "dataset": f"{ds.name} ({ds.root}): {ds.num_train_ids} training identities",
            "network": f"{cfg.model.arch} at {self.size[0]}×{self.size[1]}, {weights}",
            "method": f"{method} (language SSL {'on' if cfg.stage1.lang_ssl else 'off'}, "
            f"vision SSL {'on' if cfg.stage2.vis_ssl else 'off'}); "
            f"stage 1 {cfg.stage1.epochs} epochs, stage 2 {cfg.stage2.epochs} epochs",
            "device": f"{self.device}, precision {cfg.run.precision}",
            "time": f"{seconds:.0f} s",
            "run directory": str(self.run_dir),
        }
        try:
            embedding = write_train_embedding(
                self.model,
                ds.train,
                transform=self.transforms.test,
                image_size=self.size,
                device=self.device,
                path=self.run_dir / "embedding.png",
                interpolation=self.transforms.test_interpolation,
                names=ds.train_names,
            )
            assert result.final_details is not None  # train() evaluates before it writes the report
            files = write_training_report(
                self.run_dir, facts=facts, final=result.final_details, untrained=result.untrained, embedding=embedding
            )
        except Exception:  # the run itself succeeded; say why its report is missing
            log.exception("could not write the report of %s (checkpoints and eval.json are complete)", self.run_dir)
            return None
        return files["report"]


def evaluate_random_init(cfg: Config, dataset: ReIDDataset) -> dict[str, Any]:
    """The test-set summary of the configured network with random weights (``model.pretrained`` ignored):
    the floor a pretrained start and training are measured against."""
    import dataclasses

    seed_everything(cfg.run.seed)
    random_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None))
    device = resolve_device(cfg.run.device, DistInfo())
    model = build_model(random_cfg, dataset).to(device)
    transforms = build_transforms(cfg.data)
    size = cast(tuple[int, int], tuple(cfg.data.image_size))  # [height, width] (checked by DataConfig)
    images = TestImages(transforms.test, size, transforms.test_interpolation)
    # The options of the final evaluation, but neither re-ranking nor ranked lists: a floor to compare with.
    options = eval_options(
        cfg.eval,
        num_workers=cfg.data.num_workers,
        amp_dtype=resolve_precision(cfg.run.precision, device),
        rerank=False,
        topk=0,
    )
    return evaluate_model(model, dataset, images=images, device=device, options=options).summary


def check_batch_semantics(cfg: Config, dist: DistInfo) -> None:
    """Global batches must divide evenly among the processes; say so before any work is done."""
    if cfg.run.batch_semantics != "global" or not dist.enabled:
        return
    sizes = [
        ("stage1.batch_size", cfg.stage1.batch_size, "features"),
        ("stage2.ids_per_batch", cfg.stage2.ids_per_batch, "identities"),
    ]
    for key, size, what in sizes:
        if size % dist.world_size:
            raise ValueError(global_batch_error(key, size, dist.world_size, what))


#: How to continue a run of each kind (checkpoints record theirs as ``task``; ReID ones have none).
RESUME_COMMANDS = {"reid": "svllreid train --resume", "pretrain": "svllreid pretrain --resume"}


def prepare_run_dir(cfg: Config, dist: DistInfo, resume: str | None, task: str) -> tuple[Checkpoint | None, Path]:
    """The checkpoint to resume (of this ``task``: ``reid`` or ``pretrain``) and the run directory, made
    and holding ``config.yaml`` on the main process; a new run refuses an existing directory."""
    resume_ckpt = read_checkpoint(resume) if resume else None
    if resume_ckpt is not None:
        found = resume_ckpt.meta.get("task", "reid")
        if found != task:
            raise ValueError(f"{resume_ckpt.path} is a {found} checkpoint; continue it with {RESUME_COMMANDS[found]}")
        assert resume is not None  # resume_ckpt was read from it
        run_dir = Path(resume).expanduser() if Path(resume).is_dir() else resume_ckpt.path.parent.parent
    else:
        run_dir = new_run_dir(cfg, dist)
    if dist.is_main:
        if resume_ckpt is None and run_dir.exists():
            raise ValueError(
                f"run directory {run_dir} already exists; choose another run.name, delete it, or continue "
                f"it with --resume {run_dir}"
            )
        run_dir.mkdir(parents=True, exist_ok=resume_ckpt is not None)
        save_config(cfg, run_dir)
    return resume_ckpt, run_dir


def new_run_dir(cfg: Config, dist: DistInfo) -> Path:
    """``run.output_dir/run.name`` (default ``<dataset>-<arch>-<time>``), the same on every process."""
    name = cfg.run.name or f"{cfg.data.dataset}-{cfg.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    holder = [str(Path(cfg.run.output_dir).expanduser() / name)]
    if dist.enabled:
        torch.distributed.broadcast_object_list(holder, src=0)
    return Path(holder[0])


@dataclass(frozen=True)
class StartPoint:
    """Where training starts: the stages still to run, the first epoch of each, and the checkpoint a
    resumed run continues from (None for a fresh run)."""

    stages: tuple[int, ...]
    first_epoch: dict[int, int]
    resumed: Checkpoint | None = None

    def resumes(self, stage: int) -> Checkpoint | None:
        """The checkpoint to restore the optimiser and random state of ``stage`` from, if any."""
        if self.resumed is not None and int(self.resumed.meta["stage"]) == stage:
            return self.resumed
        return None


def restore(
    run: Run, result: RunResult, *, stages: tuple[int, ...], resumed: Checkpoint | None, init_from: str | None
) -> StartPoint:
    """Load what the run starts from: a resumed run's weights and step, or a stage-1 checkpoint's
    weights (``init_from``), or else nothing (and the untrained network is evaluated when asked)."""
    if resumed is not None:
        check_compatible(resumed, run.model.spec, run.dataset)
        load_model_state(run.model, resumed)
        run.trainer.global_step = int(resumed.meta.get("global_step", 0))
        stage, epoch = int(resumed.meta["stage"]), int(resumed.meta["epoch"])
        log.info("resuming %s after stage %d epoch %d", run.run_dir, stage, epoch)
        first = {1: 1, 2: 1, stage: epoch + 1}
        return StartPoint(tuple(s for s in stages if s >= stage), first, resumed)
    if init_from:
        checkpoint = read_checkpoint(init_from)
        check_compatible(checkpoint, run.model.spec, run.dataset)
        load_weights_for_stage2(run.model, checkpoint)
        log.info("initialised from %s", checkpoint.path)
    elif run.cfg.eval.before_training and run.dist.is_main:
        result.untrained = run.evaluate().summary  # only the summary: the features would stay in memory
        log.info("before training: %s", format_summary(result.untrained))
    return StartPoint(stages, {1: 1, 2: 1})


def run_stages(run: Run, start: StartPoint) -> None:
    """Each remaining stage from its first epoch; a stage that had finished when a resumed run stopped
    only restores its random state, so that the next stage continues exactly."""
    for stage in start.stages:
        resume_from = start.resumes(stage)
        epochs = run.cfg.stage1.epochs if stage == 1 else run.cfg.stage2.epochs
        if start.first_epoch[stage] > epochs:
            if resume_from is not None:
                restore_rng(resume_from)
            continue
        (run.stage1 if stage == 1 else run.stage2)(start.first_epoch[stage], resume_from)


def finish(run: Run, result: RunResult, stage2_ran: bool, started: float) -> None:
    """The final checkpoint, evaluation, eval.json and report (after stage 2), and the closed logs."""
    cfg, run_dir = run.cfg, run.run_dir
    if stage2_ran:
        run.save("model", 2, cfg.stage2.epochs)
    result.checkpoints = {p.stem: p for p in (run_dir / "checkpoints").glob("*.safetensors")}
    if run.dist.is_main and stage2_ran:
        result.final_details = run.evaluate()
        result.evaluation = result.final_details.summary
        payload = {"final": result.evaluation}
        if result.untrained is not None:
            payload["untrained"] = result.untrained
        if run.dataset.validation is not None:
            result.validation = run.evaluate("validation").summary
            payload["validation"] = result.validation
            log.info("validation: %s", format_summary(result.validation))
        atomic_write_text(run_dir / "eval.json", json.dumps(payload, indent=2))
        log.info("%s", format_summary(result.evaluation))
        run.metrics.close()  # the report reads metrics.jsonl
        if cfg.run.report:
            result.report = run.write_report(result, time.perf_counter() - started)
    run.metrics.close()


def train(
    cfg: Config,
    *,
    stages: tuple[int, ...] = (1, 2),
    init_from: str | None = None,
    resume: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Run the configured training: stages 1 and 2 (or one of them) and the final evaluation.

    Args:
        stages: ``(1, 2)``, ``(1,)`` or ``(2,)``.
        init_from: checkpoint whose weights start stage 2 (typically a run's ``stage1.safetensors``).
        resume: a run directory (or checkpoint) to continue exactly where it stopped.
    """
    started = time.perf_counter()
    dist = init_distributed(resolve_device(cfg.run.device, DistInfo()).type)
    try:
        check_batch_semantics(cfg, dist)
        resumed, run_dir = prepare_run_dir(cfg, dist, resume, "reid")
        seed_everything(cfg.run.seed + dist.rank)
        run = Run(cfg, run_dir, dist, progress)
        result = RunResult(run_dir, run.model)
        if 2 in stages:  # before stage 1 runs, not after it
            world, global_batch = dist.world_size, cfg.run.batch_semantics == "global"
            problem = pk_sampling_error(run.dataset.num_train_ids, cfg.stage2.ids_per_batch, world, global_batch)
            if problem:
                raise ConfigError(problem)
        start = restore(run, result, stages=stages, resumed=resumed, init_from=init_from)
        run_stages(run, start)
        finish(run, result, 2 in start.stages, started)
        barrier(dist)
        return result
    finally:
        shutdown(dist)
