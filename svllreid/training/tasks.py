"""The training tasks: a batch in, a dict of named (weighted) losses out. The two ReID stages
(:class:`PromptStageTask`, :class:`ImageStageTask`) and language-image pretraining
(:class:`ContrastiveTask`).

Tasks are ``nn.Module``s that hold the model, so the one fit loop can wrap a task in
DistributedDataParallel and gradients of whatever the stage trains are synchronised.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import nn

from svllreid.data.samplers import global_batch_error
from svllreid.distributed import gather_with_grad
from svllreid.losses import cross_entropy_label_smooth, nt_xent_loss, supcon_loss, triplet_loss
from svllreid.models.image_encoders import ImageFeatures
from svllreid.models.prompts import FULL_LENGTH_AUGMENTS, PromptAugment, augment_prompts
from svllreid.models.reid_model import ReIDModel
from svllreid.models.text_encoder import TextEncoder
from svllreid.precision import at_least_fp32, without_autocast

__all__ = [
    "MAX_LOGIT_SCALE",
    "ContrastiveTask",
    "ImageStageTask",
    "PromptStageTask",
    "Stage2Losses",
    "has_batchnorm",
    "running_statistics_frozen",
]


class PromptStageTask(nn.Module):
    """Stage 1: learn identity words from cached image features (METHOD.md 3.2 and 4.1).

    Args:
        model: the ReID model (its text encoder is frozen; only the prompts, and optionally the
            language projector, train).
        features: ``[N, D]`` cached f_proj of every training image (test transform, no SIE).
        labels: ``[N]`` identities of those images.
        lang_ssl_weight: weight of the language self-supervision loss; 0 disables it.
        prompt_mask, prompt_mask_prob: augmentation making the two views of each prompt.
        global_batch: under DDP, this process's batch is its share of one global batch (see
            :meth:`batches`): the image-text losses gather every process's features and run over
            the global batch (exactly as one process would), and the language self-supervision
            runs on every process over the distinct identities of the global batch, each with its
            own random masks (so its projector's BatchNorm sees all of them, as on one process).
            False: every loss over this process's own batch. Without a process group both are the same.
    """

    def __init__(
        self,
        model: ReIDModel,
        features: torch.Tensor,
        labels: torch.Tensor,
        *,
        lang_ssl_weight: float = 0.0,
        prompt_mask: PromptAugment = "element",
        prompt_mask_prob: float = 0.5,
        ssl_temperature: float = 0.1,
        global_batch: bool = True,
    ):
        super().__init__()
        if lang_ssl_weight > 0 and model.lang_projector is None:
            raise ValueError("language self-supervision needs a model built with lang_ssl_head=True")
        self.model = model
        # Plain attributes, not buffers: identical on every process, so DDP need not broadcast them.
        self.features = features
        self.labels = labels
        self.lang_ssl_weight = lang_ssl_weight
        self.prompt_mask = prompt_mask
        self.prompt_mask_prob = prompt_mask_prob
        self.ssl_temperature = ssl_temperature
        self.global_batch = global_batch
        self.skipped_ssl_batches = 0

    def batches(self, epoch: int, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1) -> Iterator[dict]:
        """Random batches of cached features; the order depends only on (seed, epoch).

        Under DDP all processes take the same number of batches. With :attr:`global_batch`,
        ``batch_size`` is the global batch: each process takes its 1/W slice of every batch one
        process would take (the last, shorter batch cut to a multiple of W), so the W slices of a
        step are that batch. Without it, each process takes ``batch_size`` at a time from a
        disjoint share of the features.

        Raises:
            ValueError: with ``global_batch``, a batch size that W processes cannot share evenly.
        """
        if self.global_batch and batch_size % world_size:
            raise ValueError(global_batch_error("stage1.batch_size", batch_size, world_size, "features"))
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(self.labels.shape[0], generator=generator).to(self.labels.device)
        if self.global_batch:
            for start in range(0, order.shape[0], batch_size):
                batch = order[start : start + batch_size]
                width = batch.shape[0] // world_size
                if width == 0:
                    break
                index = batch[rank * width : (rank + 1) * width]
                yield {"features": self.features[index], "pids": self.labels[index]}
            return
        share = order[rank::world_size]
        steps = order.shape[0] // world_size
        share = share[:steps]
        for start in range(0, steps, batch_size):
            index = share[start : start + batch_size]
            yield {"features": self.features[index], "pids": self.labels[index]}

    def language_ssl(self, pids: torch.Tensor) -> torch.Tensor | None:
        """NT-Xent between two augmented views of each distinct identity's prompt."""
        distinct = pids.unique()
        if distinct.shape[0] < 2:
            self.skipped_ssl_batches += 1
            return None
        # [U, 12, D]; [U, 77, D] for an augmentation that moves padding in (cut back to 12 afterwards:
        # the positions after the end token never reach it)
        full = self.prompt_mask in FULL_LENGTH_AUGMENTS
        prompts = self.model.prompt_learner(distinct, full=full)
        length = self.model.prompt_learner.length
        views = [augment_prompts(prompts, self.prompt_mask, self.prompt_mask_prob)[:, :length] for _ in range(2)]
        projector = self.model.lang_projector
        assert projector is not None  # language self-supervision runs with lang_ssl_weight > 0 (checked in __init__)
        z1, z2 = (projector(self.model.encode_prompts(view)) for view in views)  # [U, out] each
        return nt_xent_loss(z1, z2, temperature=self.ssl_temperature)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image, pids = batch["features"], batch["pids"]
        text = self.model.encode_text(pids)  # [B, D], duplicates included (the run's precision)
        if self.global_batch:  # [W·B, D]: the global batch, gradients back to each process's own rows
            image, text, pids = gather_with_grad(image), gather_with_grad(text), gather_with_grad(pids)
        losses = {"i2t": supcon_loss(image, text, pids, pids), "t2i": supcon_loss(text, image, pids, pids)}
        if self.lang_ssl_weight > 0:
            ssl = self.language_ssl(pids)
            if ssl is not None:
                losses["lang_ssl"] = self.lang_ssl_weight * ssl
        return losses


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@contextlib.contextmanager
def running_statistics_frozen(module: nn.Module) -> Iterator[None]:
    """Inside, ``module``'s BatchNorm layers still normalise a training batch with its own statistics
    but leave their running statistics (and batch counters) as they are.

    ``track_running_stats=False`` in training mode does exactly that: PyTorch then passes no running
    buffers to the kernel. It is set back on exit, also after an error.
    """
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True


@dataclass(frozen=True)
class Stage2Losses:
    """The weights and settings of stage 2's losses (METHOD.md 4.2); the run builds it from the
    ``stage2`` config section (:func:`svllreid.training.options.stage2_losses`).

    Attributes:
        id_weight, triplet_weight, i2t_weight: weights of the ID, triplet and image-to-text terms.
        label_smoothing: of the ID and image-to-text cross-entropies.
        triplet_margin: of the batch-hard triplet loss.
        triplet_normalize: the triplet loss on L2-normalised features (the reference: unnormalised).
        vis_ssl_weight: λ_V of the vision self-supervision (NT-Xent of two occluded views); 0 disables it.
        ssl_temperature: its temperature.
        ssl_exclude_same_id: leave other images of the same identity out of its negatives.
    """

    id_weight: float = 0.25
    triplet_weight: float = 1.0
    i2t_weight: float = 1.0
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    triplet_normalize: bool = False
    vis_ssl_weight: float = 0.0
    ssl_temperature: float = 0.1
    ssl_exclude_same_id: bool = False


class ImageStageTask(nn.Module):
    """Stage 2: fine-tune the image encoder (METHOD.md 3.3 and 4.2).

    Losses: label-smoothed ID cross-entropy on both BNNeck classifiers, batch-hard triplet on
    f11, f12 and f_proj, image-to-text cross-entropy against the identities' text features, and
    (SVLL) NT-Xent between two occluded views of each image.

    Args:
        model: the ReID model.
        text_features: ``[N, D]`` text features of all training identities (computed once).
        losses: the terms' weights and settings (default: :class:`Stage2Losses`' defaults).
        single_pass: encode the image and its two views in one batched pass. That is exact for
            encoders without BatchNorm (ViT); for BatchNorm encoders (ResNets) batch statistics
            would mix the three, so they always use separate passes.
        views_update_bn_stats: let the two occluded views' passes update the encoder's BatchNorm
            running statistics too. Off by default: they would pull the statistics used at test
            time toward occluded images (two updates of three per step come from views). The
            views are still normalised with their own batch statistics either way.
        global_batch: under DDP, this process's batch is its share of one global P×K batch: the
            NT-Xent gathers every process's projections, so its negatives are the whole global
            batch (the reference). The other losses stay per process, as in the reference: ID and
            image-to-text are means over images, so DDP's averaging makes them global; triplet
            mining looks for the hardest pairs within this process's P/W identities. False: the
            NT-Xent over this process's batch only. Without a process group both are the same.
    """

    def __init__(
        self,
        model: ReIDModel,
        text_features: torch.Tensor,
        losses: Stage2Losses | None = None,
        *,
        single_pass: bool = True,
        views_update_bn_stats: bool = False,
        global_batch: bool = True,
    ):
        super().__init__()
        losses = losses or Stage2Losses()
        if losses.vis_ssl_weight > 0 and model.vis_projector is None:
            raise ValueError("vision self-supervision needs a model built with vis_ssl_head=True")
        self.model = model
        self.text_features = text_features  # not a buffer: identical on every process (see PromptStageTask)
        self.losses = losses
        self.single_pass = single_pass and not has_batchnorm(model.image_encoder)
        self.views_update_bn_stats = views_update_bn_stats
        self.global_batch = global_batch

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[ImageFeatures, torch.Tensor | None, torch.Tensor | None]:
        """Features of the images (with SIE) and, for SVLL, the SSL features of their two views
        (without SIE: unknown ids -1 add no side embedding)."""
        images, camids, viewids = batch["image"], batch.get("camid"), batch.get("viewid")
        encode = self.model.image_features
        if self.losses.vis_ssl_weight <= 0:
            return encode(images, camids, viewids), None, None
        views = batch["views"]  # [B, 2, 3, H, W]
        size = images.shape[0]
        none = torch.full((size,), -1, dtype=torch.long, device=images.device)
        if self.single_pass:
            stacked = torch.cat([images, views[:, 0], views[:, 1]])  # [3B, 3, H, W]
            cams = torch.cat([camids, none, none]) if camids is not None else None
            views_ids = torch.cat([viewids, none, none]) if viewids is not None else None
            feats = encode(stacked, cams, views_ids)
            main = ImageFeatures(feats.f11[:size], feats.f12[:size], feats.f_proj[:size])
            return main, feats.f12[size : 2 * size], feats.f12[2 * size :]
        main = encode(images, camids, viewids)
        unknown_cams = none if camids is not None else None
        unknown_views = none if viewids is not None else None
        encoder = self.model.image_encoder
        with contextlib.nullcontext() if self.views_update_bn_stats else running_statistics_frozen(encoder):
            first = encode(views[:, 0], unknown_cams, unknown_views)
            second = encode(views[:, 1], unknown_cams, unknown_views)
        return main, first.f12, second.f12

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pids = batch["pid"]
        feats, view1, view2 = self.encode(batch)
        out = self.model.outputs(feats)
        eps = self.losses.label_smoothing
        # sum() of tensors is typed ``Tensor | Literal[0]`` (the start value, for nothing to sum)
        id_loss = cast(
            torch.Tensor, sum(cross_entropy_label_smooth(logits, pids, eps) for logits in (out.logits, out.logits_proj))
        )
        tri = cast(
            torch.Tensor,
            sum(
                triplet_loss(f, pids, self.losses.triplet_margin, normalize=self.losses.triplet_normalize)
                for f in (out.f11, out.f12, out.f_proj)
            ),
        )
        with without_autocast(out.f_proj):  # a metric loss: logits in fp32 (see svllreid.precision)
            i2t_logits = at_least_fp32(out.f_proj) @ at_least_fp32(self.text_features).T  # [B, N]
        i2t = cross_entropy_label_smooth(i2t_logits, pids, eps)
        losses = {
            "id": self.losses.id_weight * id_loss,
            "triplet": self.losses.triplet_weight * tri,
            "i2t": self.losses.i2t_weight * i2t,
        }
        if view1 is not None:
            projector = self.model.vis_projector
            assert projector is not None  # views come with vis_ssl_weight > 0 (checked in __init__)
            z1, z2 = projector(view1), projector(view2)  # each view's batch through the head on its own
            labels = pids if self.losses.ssl_exclude_same_id else None
            if self.global_batch:  # negatives from every process (gradients back to each one's own rows)
                z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
                labels = gather_with_grad(labels) if labels is not None else None
            ssl = nt_xent_loss(
                z1,
                z2,
                temperature=self.losses.ssl_temperature,
                labels=labels,
                exclude_same_label=self.losses.ssl_exclude_same_id,
            )
            losses["vis_ssl"] = self.losses.vis_ssl_weight * ssl
        return losses


#: CLIP caps its learnable temperature at a logit scale of 100.
MAX_LOGIT_SCALE = math.log(100.0)


class ContrastiveTask(nn.Module):
    """Language-image pretraining: CLIP's symmetric InfoNCE over a batch of (image, caption) pairs.

    Args:
        clip: an open_clip CLIP; every parameter trains.
        rank, world_size: this process in the DDP group. With ``global_batch``, every process's
            features are gathered (with gradients) so each pair's negatives are the whole global
            batch, as on one process; otherwise the loss is over this process's pairs only.
    """

    def __init__(self, clip: nn.Module, rank: int = 0, world_size: int = 1, global_batch: bool = True):
        super().__init__()
        self.clip: Any = clip  # an open_clip CLIP (untyped: its methods and logit_scale)
        # CLIP's own text tower on only the positions up to the batch's last end-of-text token: exact
        # (the mask is causal) and about 40% cheaper than all 77 for captions of ~45 tokens.
        self.text = TextEncoder(clip)
        gathered = global_batch and world_size > 1
        self.loss = ClipLoss(
            local_loss=False,
            gather_with_grad=gathered,
            rank=rank if gathered else 0,
            world_size=world_size if gathered else 1,
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = self.clip.encode_image(batch["image"], normalize=True)  # [B, D]
        tokens = batch["tokens"]  # [B, 77]
        text = self.text(self.text.embed_tokens(tokens), tokens.argmax(dim=1))  # [B, D]; EOT has the largest id
        text = F.normalize(text, dim=-1)
        with without_autocast(image):  # a metric loss: logits in fp32 (see svllreid.precision)
            scale = self.clip.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
            loss = self.loss(at_least_fp32(image), at_least_fp32(text), scale)
        return {"contrastive": loss}
