"""The config edge: the small frozen option objects of the engine, each built from its config section
here and only here (as torchreid's ``*_kwargs(cfg)`` functions), so that nothing below reads a config."""

from __future__ import annotations

import torch

from svllreid.config import EvalConfig, Stage2Config
from svllreid.engine.features import RANKED_LIST_LENGTH, EvalOptions
from svllreid.engine.tasks import Stage2Losses
from svllreid.eval.rerank import KReciprocal

__all__ = ["eval_options", "stage2_losses"]


def eval_options(
    cfg: EvalConfig,
    *,
    num_workers: int,
    amp_dtype: torch.dtype | None,
    rerank: bool | None = None,
    flip: bool | None = None,
    batch_size: int | None = None,
    topk: int = RANKED_LIST_LENGTH,
    side_info: bool = True,
) -> EvalOptions:
    """The evaluation options of an ``eval`` config section; ``rerank``, ``flip`` and ``batch_size``
    override the config's when given (the command line's switches)."""
    reranked = cfg.rerank if rerank is None else rerank
    return EvalOptions(
        batch_size=batch_size or cfg.batch_size,
        num_workers=num_workers,
        amp_dtype=amp_dtype,
        flip=cfg.flip if flip is None else flip,
        max_rank=cfg.max_rank,
        rerank=KReciprocal(cfg.rerank_k1, cfg.rerank_k2, cfg.rerank_lambda) if reranked else None,
        topk=topk,
        side_info=side_info,
    )


def stage2_losses(cfg: Stage2Config) -> Stage2Losses:
    """The loss weights and settings of a ``stage2`` config section (λ_V = 0 unless ``vis_ssl``)."""
    return Stage2Losses(
        id_weight=cfg.id_weight,
        triplet_weight=cfg.triplet_weight,
        i2t_weight=cfg.i2t_weight,
        label_smoothing=cfg.label_smoothing,
        triplet_margin=cfg.triplet_margin,
        triplet_normalize=cfg.triplet_normalize,
        vis_ssl_weight=cfg.vis_ssl_weight if cfg.vis_ssl else 0.0,
        ssl_temperature=cfg.ssl_temperature,
        ssl_exclude_same_id=cfg.ssl_exclude_same_id,
    )
