"""A training run: stage 1, stage 2 and the final evaluation, in a run directory.

This is the factory level: it reads the whole config and turns it into plain arguments for the
data layer, the model, the tasks and the trainer.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed

from svllreid.config import Config, SideInfo, config_to_dict
from svllreid.data.factory import build_image_caches, build_transforms
from svllreid.data.loaders import ReIDImageDataset, build_test_loader, build_train_loader, set_loader_epoch
from svllreid.data.samplers import global_batch_error, pk_sampling_error
from svllreid.data.types import ReIDDataset, Sample
from svllreid.distributed import (
    DistInfo,
    barrier,
    broadcast_flag,
    broadcast_state,
    init_distributed,
    resolve_device,
    shutdown,
)
from svllreid.errors import CheckpointError, ConfigError
from svllreid.evaluation.model_eval import ModelEvaluation, evaluate_model
from svllreid.evaluation.options import eval_options
from svllreid.evaluation.reporting import write_train_embedding, write_training_report
from svllreid.evaluation.results import ResultRow, format_results, result_rows
from svllreid.evaluation.selection import SELECTION_METRIC, Selection
from svllreid.fileio import atomic_write_text
from svllreid.inference.checkpoint import (
    Checkpoint,
    load_model_state,
    load_optimizer_state,
    read_checkpoint,
    restore_rng,
    write_checkpoint,
)
from svllreid.inference.features import TestImages, extract_features, f12_encoder, projection_encoder
from svllreid.metrics.spread import collapse_warning
from svllreid.metrics.summary import format_summary, verification_record
from svllreid.models.factory import ModelSpec, create_model
from svllreid.models.reid_model import ReIDModel
from svllreid.precision import resolve_precision
from svllreid.training.dataprep import PreparedData, prepare_data
from svllreid.training.dynamics import gradient_alignment, identity_spread, probe_samples
from svllreid.training.optim import build_adam, cosine_with_warmup, multistep_with_warmup
from svllreid.training.options import stage2_losses
from svllreid.training.run_setup import (
    build_trainer,
    check_resume_task,
    prepare_run_dir,
    seed_everything,
    training_device,
)
from svllreid.training.tasks import ImageStageTask, PromptStageTask
from svllreid.training.trainer import MetricsLog, StagePlan

__all__ = [
    "SSL_HEAD_PREFIXES",
    "Run",
    "RunResult",
    "StartPoint",
    "build_model",
    "check_batch_semantics",
    "check_compatible",
    "deliver",
    "effective_sie",
    "evaluate_random_init",
    "finish",
    "load_weights_for_stage2",
    "method_name",
    "restore",
    "run_stages",
    "spread_warnings",
    "train",
]

log = logging.getLogger(__name__)

SSL_HEAD_PREFIXES = ("lang_projector.", "vis_projector.")


@dataclass
class RunResult:
    """What a training run measured and wrote.

    With a validation split, the run delivers the best of the start and its evaluated epochs on it
    (``model.safetensors``); without one, its last epoch.
    """

    run_dir: Path
    model: ReIDModel | None = None
    #: The delivered model on the test set.
    evaluation: dict[str, Any] | None = None
    #: The start (the network before stage 2 changed its image encoder) on the test set.
    untrained: dict[str, Any] | None = None
    #: The last epoch's model on the test set (with a validation split; else it is ``evaluation``).
    last: dict[str, Any] | None = None
    #: With a validation split: ``{"start", "best", "last"}`` summaries on it.
    validation: dict[str, dict[str, Any]] | None = None
    #: With a validation split: what was measured on it and which epoch was chosen.
    selection: Selection | None = None
    #: The settings chosen from the data (``auto``), each in a sentence.
    choices: list[str] = field(default_factory=list)
    checkpoints: dict[str, Path] = field(default_factory=dict)

    #: The evaluations in full (ranked lists, features), for the report.
    final_details: ModelEvaluation | None = None
    #: ``report.html`` (None when it could not be written; the run's other files are complete).
    report: Path | None = None

    def rows(self, *, pretrained: bool, random: dict[str, Any] | None = None) -> list[ResultRow]:
        """The run's networks as rows of the results table (:func:`svllreid.evaluation.results.result_rows`)."""
        return result_rows(
            pretrained=pretrained,
            start=self.untrained,
            trained=self.evaluation,
            last=self.last,
            validation=self.validation,
            selection=self.selection,
            random=random,
        )

    def results_text(self, *, pretrained: bool, random: dict[str, Any] | None = None) -> list[str]:
        """The lines a command prints of the finished run: its results table (:meth:`rows`), what the
        validation split chose, and any collapse warning."""
        lines = format_results(self.rows(pretrained=pretrained, random=random)).splitlines()
        if self.selection is not None:
            lines.append(f"{self.selection.verdict()}; model.safetensors holds it")
        return lines + [f"warning: {warning}" for warning in spread_warnings(self)]


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
        image_size=cfg.data.size,
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

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        dist: DistInfo,
        dataset: ReIDDataset,
        *,
        progress: bool = True,
        resumed: Checkpoint | None = None,
    ):
        """``cfg`` with its ``auto`` settings settled and ``dataset`` as :func:`prepare_data` made them;
        ``resumed``: the checkpoint a resumed run continues (its logs are cut back to it)."""
        self.cfg = cfg
        self._config_dict: tuple[Config, dict[str, Any]] | None = None  # see config_dict()
        self.run_dir = run_dir
        self.dist = dist
        self.device, self.amp_dtype = training_device(cfg, dist)
        self.dataset = dataset
        self.transforms = build_transforms(cfg.data)
        self.caches = build_image_caches(cfg.data, self.dataset)  # by resize filter
        self.model = build_model(cfg, self.dataset).to(self.device)
        resume_step, validated, dynamics = None, [], []
        if resumed is not None:
            resume_step = int(resumed.meta.get("global_step", 0))
            validated = [entry["epoch"] for entry in (resumed.meta.get("selection") or {}).get("history", [])]
            if resumed.meta.get("stage") == 2:  # it logged the dynamics of the start and its epochs
                dynamics = list(range(int(resumed.meta.get("epoch", 0)) + 1))
        self.metrics = MetricsLog(
            run_dir if dist.is_main else None, resume_step=resume_step, validated=validated, dynamics=dynamics
        )
        #: The start on the test set, and the validation bookkeeping (None without a validation split).
        self.start: dict[str, Any] | None = None
        self.selection: Selection | None = None
        if dataset.validation is not None:
            self.selection = Selection(every=cfg.eval.every, patience=cfg.eval.patience)
        self.trainer = build_trainer(
            cfg, device=self.device, amp_dtype=self.amp_dtype, dist=dist, metrics=self.metrics, progress=progress
        )
        self.size = cfg.data.size

    @property
    def global_batch(self) -> bool:
        """Whether the configured batches are those of all processes together (run.batch_semantics)."""
        return self.cfg.run.batch_semantics == "global"

    # --- checkpoints -------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """``config_to_dict(self.cfg)``, made once per config: every checkpoint holds it, and OmegaConf takes
        tens of milliseconds to build it (a third of a tiny run's checkpoint writes)."""
        if self._config_dict is None or self._config_dict[0] is not self.cfg:
            self._config_dict = (self.cfg, config_to_dict(self.cfg))
        return self._config_dict[1]

    def meta(self, stage: int, epoch: int) -> dict[str, Any]:
        ds = self.dataset
        return {
            "spec": self.model.spec.to_dict(),
            # The activation is not in the spec (OpenAI weights switch QuickGELU on); inference needs it.
            "quick_gelu": bool(getattr(self.model.load_report, "quick_gelu", False)),
            "config": self.config_dict(),
            "dataset": {"name": ds.name, "root": ds.root, "kind": ds.kind, "num_train_ids": ds.num_train_ids},
            "stage": stage,
            "epoch": epoch,
            "global_step": self.trainer.global_step,
            # What a resumed run needs to report and choose as an uninterrupted one would.
            "start_evaluation": self.start,
            "selection": self.selection.state() if self.selection is not None else None,
        }

    def checkpoint_path(self, name: str) -> Path:
        return self.run_dir / "checkpoints" / f"{name}.safetensors"

    def save(self, name: str, stage: int, epoch: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        if self.dist.is_main:
            meta = self.meta(stage, epoch)
            write_checkpoint(
                self.checkpoint_path(name), self.model, meta, optimizer=optimizer, with_rng=optimizer is not None
            )

    def test_loader(self, samples: list[Sample], num_workers: int) -> Any:
        """Training images through the test transform (from the image cache), in order."""
        interpolation = self.transforms.test_interpolation
        cache = self.caches.get(interpolation)
        images = ReIDImageDataset(samples, self.transforms.test, self.size, cache=cache, interpolation=interpolation)
        return build_test_loader(images, self.cfg.eval.batch_size, num_workers)

    # --- stage 1 -----------------------------------------------------------------------------------
    def cached_image_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """f_proj of every training image: frozen encoder, test transform, no SIE."""
        ds = self.dataset
        loader = self.test_loader(ds.train, self.cfg.data.num_workers)
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

        if self.selection is not None and not self.selection.history:
            self.validate(0)  # the start, before stage 2 changes the image encoder: the best until beaten
        probe = probe_samples(self.dataset.train) if c.probe_spread else []
        if probe and start_epoch == 1:
            self.log_dynamics(0, None, probe)
        alignments: dict[int, dict[str, float] | None] = {}
        encoder = [p for p in self.model.image_encoder.parameters() if p.requires_grad]

        def first_step(epoch: int, terms: dict[str, torch.Tensor]) -> None:
            started = time.perf_counter()
            alignment = gradient_alignment(terms, encoder)
            # What the two extra backward passes cost, to set against the epoch's time (stage2.probe_gradients).
            alignments[epoch] = (
                None if alignment is None else {**alignment, "grad_probe_s": time.perf_counter() - started}
            )

        probe_gradients = c.probe_gradients and c.vis_ssl and c.vis_ssl_weight > 0
        if probe_gradients and self.dist.enabled:
            log.info("stage2.probe_gradients: not measured under DDP (autograd.grad bypasses its reducer)")
            probe_gradients = False

        epoch_started = [time.perf_counter()]

        def end_of_epoch(epoch: int) -> bool:
            if probe or alignments:
                alignment = alignments.pop(epoch, None)
                if alignment is not None:
                    alignment["epoch_s"] = time.perf_counter() - epoch_started[0]
                self.log_dynamics(epoch, alignment, probe)
            stop = self.validate(epoch) if self.selection is not None and self.selection.due(epoch, c.epochs) else False
            self.save("last", 2, epoch, optimizer)  # after the evaluation: a resumed run knows its result
            epoch_started[0] = time.perf_counter()
            return stop

        self.trainer.fit(
            task,
            optimizer,
            plan,
            batches,
            start_epoch=start_epoch,
            on_epoch_end=end_of_epoch,
            on_first_step=first_step if probe_gradients else None,
        )

    def log_dynamics(self, epoch: int, alignment: dict[str, float] | None, probe: list[Sample]) -> None:
        """A ``dynamics`` record of stage-2 ``epoch`` (0: the start) in metrics.jsonl and TensorBoard: the
        gradient alignment of its first batch (when measured) and the probe set's identity spread."""
        if not self.dist.is_main:
            return
        if alignment is None and not probe:
            return
        record: dict[str, Any] = {"stage": "dynamics", "epoch": epoch, "step": self.trainer.global_step}
        record.update(alignment or {})
        if probe:
            loader = self.test_loader(probe, 0)
            was_training = self.model.training
            self.model.eval()
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), torch.no_grad():
                feats = extract_features(f12_encoder(self.model), loader, self.device, amp_dtype=self.amp_dtype)
            self.model.train(was_training)
            pids = torch.tensor([s.pid for s in probe])
            record.update({f"spread_{k}": v for k, v in identity_spread(feats.cpu(), pids).items()})
        self.metrics.write(record, self.trainer.global_step)

    def validate(self, epoch: int) -> bool:
        """Evaluate the validation split after stage-2 ``epoch`` (0: the start), keep a new best as
        ``best.safetensors``, and say whether training should stop (``eval.patience``; the same answer
        on every process)."""
        selection = self.selection
        assert selection is not None  # only runs with a validation split validate
        stop = False
        if self.dist.is_main:
            # The evaluation's loader draws from the global generator: fork it, so that validating changes
            # nothing in how training continues (a run trains the same whatever eval.every is).
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                summary = self.evaluate("validation").summary
                if self.start is None and epoch == 0 and self.cfg.eval.test:  # started from a stage-1 checkpoint
                    self.start = self.evaluate().summary
            improved = selection.record(epoch, summary)
            spread = summary.get("spread", {})
            record = {
                "stage": "validation",
                "epoch": epoch,
                "step": self.trainer.global_step,
                **{key: float(summary[key]) for key in ("mAP", "rank1", "mINP") if summary.get(key) is not None},
                **{key: float(value) for key, value in spread.items() if key != "images"},
                **verification_record(summary),  # TensorBoard draws each as validation/<key>
            }
            self.metrics.write(record, self.trainer.global_step)
            log.info(
                "validation after stage-2 epoch %d: %s%s",
                epoch,
                format_summary(summary),
                " (new best)" if improved and epoch else "",
            )
            if improved:
                self.save("best", 2, epoch)
            stop = selection.should_stop()
            if stop:
                selection.stopped_at = epoch
                log.info(
                    "stopping stage 2 after epoch %d: %d validation evaluations without a new best (eval.patience)",
                    epoch,
                    selection.stale,
                )
        return broadcast_flag(stop, self.dist)

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
            **({"chosen from the data": "; ".join(result.choices)} if result.choices else {}),
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
                self.run_dir,
                facts=facts,
                final=result.final_details,
                rows=result.rows(pretrained=bool(cfg.model.pretrained)),
                embedding=embedding,
                selection=result.selection,
                warnings=spread_warnings(result),
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
    size = cfg.data.size
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


def restore(run: Run, *, stages: tuple[int, ...], resumed: Checkpoint | None, init_from: str | None) -> StartPoint:
    """Load what the run starts from: a resumed run's weights, step, start evaluation and validation
    history, or a stage-1 checkpoint's weights (``init_from``), or else nothing; a fresh run evaluates
    its start on the test set when asked (``eval.before_training``) or when it has a validation split."""
    if resumed is not None:
        check_compatible(resumed, run.model.spec, run.dataset)
        load_model_state(run.model, resumed)
        run.trainer.global_step = int(resumed.meta.get("global_step", 0))
        run.start = resumed.meta.get("start_evaluation")
        saved = resumed.meta.get("selection")
        if run.selection is not None and saved:
            run.selection = Selection.from_state(saved, every=run.cfg.eval.every, patience=run.cfg.eval.patience)
        stage, epoch = int(resumed.meta["stage"]), int(resumed.meta["epoch"])
        log.info("resuming %s after stage %d epoch %d", run.run_dir, stage, epoch)
        first = {1: 1, 2: 1, stage: epoch + 1}
        if stage == 2 and run.selection is not None and run.selection.stopped_at is not None:
            first[2] = run.cfg.stage2.epochs + 1  # it had stopped early: nothing left to train
        return StartPoint(tuple(s for s in stages if s >= stage), first, resumed)
    if init_from:
        checkpoint = read_checkpoint(init_from)
        check_compatible(checkpoint, run.model.spec, run.dataset)
        load_weights_for_stage2(run.model, checkpoint)
        log.info("initialised from %s", checkpoint.path)
    elif run.cfg.eval.test and (run.cfg.eval.before_training or run.selection is not None) and run.dist.is_main:
        run.start = run.evaluate().summary  # only the summary: the features would stay in memory
        log.info("before training: %s", format_summary(run.start))
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


def deliver(run: Run, result: RunResult) -> None:
    """Evaluate the trained network on the test set and write ``model.safetensors``: with a validation
    split the best of the start and the evaluated epochs (the last one evaluated on the test set too),
    else the last epoch. Main process only."""
    cfg, selection = run.cfg, run.selection
    test = cfg.eval.test
    last_epoch = cfg.stage2.epochs
    if selection is None or selection.best_epoch is None:
        run.save("model", 2, last_epoch)
        result.final_details = run.evaluate() if test else None
        result.evaluation = result.final_details.summary if result.final_details else None
        return
    if selection.stopped_at is not None:
        last_epoch = selection.stopped_at
    last = run.evaluate() if test else None
    result.last = last.summary if last else None
    best = selection.best_epoch
    if best != last_epoch:  # the weights of the best evaluation replace the last epoch's
        load_model_state(run.model, read_checkpoint(run.checkpoint_path("best")))
    run.save("model", 2, best)
    if test:
        result.final_details = last if best == last_epoch else run.evaluate()
        result.evaluation = result.final_details.summary if result.final_details else None
    result.validation = {
        "start": selection.summary(0),
        "best": selection.summary(best),
        "last": selection.summary(selection.last_epoch if selection.last_epoch is not None else best),
    }
    log.info("%s", selection.verdict())


def spread_warnings(result: RunResult) -> list[str]:
    """Collapse warnings (:func:`svllreid.metrics.spread.collapse_warning`) for the delivered and the last
    model on the test set."""
    found = []
    for what, summary in (("the delivered model", result.evaluation), ("the last epoch's model", result.last)):
        if summary is not None and "spread" in summary:
            warning = collapse_warning(summary["spread"], f"{what} on the test set")
            if warning:
                found.append(warning)
    return found


def finish(run: Run, result: RunResult, stage2_ran: bool, started: float) -> None:
    """The delivered checkpoint, its evaluation, eval.json and report (after stage 2), and closed logs."""
    cfg, run_dir = run.cfg, run.run_dir
    result.untrained = run.start
    result.selection = run.selection
    if run.dist.is_main and stage2_ran:
        deliver(run, result)
    if stage2_ran and run.selection is not None:  # every process returns the delivered network
        broadcast_state(run.model, run.dist)
    if run.dist.is_main and stage2_ran:
        payload: dict[str, Any] = {"final": result.evaluation} if result.evaluation is not None else {}
        if result.untrained is not None:
            payload["untrained"] = result.untrained
        if result.last is not None:
            payload["last"] = result.last
        if result.validation is not None and run.selection is not None:
            payload["validation"] = result.validation
            payload["selection"] = {
                "metric": SELECTION_METRIC,
                "best_epoch": run.selection.best_epoch,
                "stopped_at": run.selection.stopped_at,
                "verdict": run.selection.verdict(),
                "history": [
                    {"epoch": e["epoch"], SELECTION_METRIC: e["summary"][SELECTION_METRIC]}
                    for e in run.selection.history
                ],
            }
        for warning in spread_warnings(result):
            log.warning("%s", warning)
        atomic_write_text(run_dir / "eval.json", json.dumps(payload, indent=2))
        if result.evaluation is not None:
            log.info("%s", format_summary(result.evaluation))
        run.metrics.close()  # the report reads metrics.jsonl
        if cfg.run.report and result.final_details is not None:
            result.report = run.write_report(result, time.perf_counter() - started)
    result.checkpoints = {p.stem: p for p in (run_dir / "checkpoints").glob("*.safetensors")}
    run.metrics.close()


def train(
    cfg: Config,
    *,
    stages: tuple[int, ...] = (1, 2),
    init_from: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    prepared: PreparedData | None = None,
) -> RunResult:
    """Run the configured training: stages 1 and 2 (or one of them) and the final evaluation.

    The dataset is read and checked, the ``auto`` settings settled from it and the batch checked against
    it before the run directory is made: a run that cannot start leaves nothing behind.

    Args:
        stages: ``(1, 2)``, ``(1,)`` or ``(2,)``.
        init_from: checkpoint whose weights start stage 2 (typically a run's ``stage1.safetensors``).
        resume: a run directory (or checkpoint) to continue exactly where it stopped.
        prepared: :func:`prepare_data` of ``cfg`` done already (one process), so it is not done twice.
    """
    started = time.perf_counter()
    dist = init_distributed(resolve_device(cfg.run.device, DistInfo()).type)
    try:
        check_batch_semantics(cfg, dist)
        if resume:  # another kind of run's checkpoint is refused before its data is read as ReID data
            check_resume_task(resume, "reid")
        prepared = prepared if prepared is not None and not dist.enabled else prepare_data(cfg, dist)
        cfg, dataset = prepared.cfg, prepared.dataset
        if 2 in stages:
            world, global_batch = dist.world_size, cfg.run.batch_semantics == "global"
            problem = pk_sampling_error(dataset.num_train_ids, cfg.stage2.ids_per_batch, world, global_batch)
            if problem:
                raise ConfigError(problem)
        resumed, run_dir = prepare_run_dir(cfg, dist, resume, "reid")
        seed_everything(cfg.run.seed + dist.rank)
        run = Run(cfg, run_dir, dist, dataset, progress=progress, resumed=resumed)
        result = RunResult(run_dir, run.model, choices=prepared.choices)
        start = restore(run, stages=stages, resumed=resumed, init_from=init_from)
        run_stages(run, start)
        finish(run, result, 2 in start.stages, started)
        barrier(dist)
        return result
    finally:
        shutdown(dist)
