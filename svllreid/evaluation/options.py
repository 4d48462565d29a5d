"""The evaluation options of an ``eval`` config section, built here and only here (as torchreid's
``*_kwargs(cfg)`` functions), so that nothing below reads a config."""

from __future__ import annotations

import torch

from svllreid.config import EvalConfig
from svllreid.evaluation.model_eval import RANKED_LIST_LENGTH, EvalOptions
from svllreid.metrics.rerank import KReciprocal

__all__ = ["eval_options"]


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
