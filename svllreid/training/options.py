"""The training options of a ``stage2`` config section, built here and only here (as torchreid's
``*_kwargs(cfg)`` functions), so that the tasks below never read a config."""

from __future__ import annotations

from svllreid.config import Stage2Config
from svllreid.training.tasks import Stage2Losses

__all__ = ["stage2_losses"]


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
