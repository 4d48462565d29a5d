"""A training run's data: the dataset parsed and checked, the settings chosen from it settled
(``data.validation_ids=auto``, ``data.image_size=auto``), and the validation split carved out, before
the run directory is made, so that a dataset or batch error leaves nothing behind."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from svllreid.config import Config
from svllreid.data.datasets import load_dataset
from svllreid.data.factory import carve_configured, load_checked_dataset, resolve_image_size
from svllreid.data.types import ReIDDataset
from svllreid.distributed import DistInfo, barrier

log = logging.getLogger(__name__)

__all__ = ["PreparedData", "prepare_data"]


@dataclass
class PreparedData:
    """The run's config with every ``auto`` setting settled, its dataset, and what was chosen and why."""

    cfg: Config
    dataset: ReIDDataset
    choices: list[str] = field(default_factory=list)


def prepare_data(cfg: Config, dist: DistInfo | None = None) -> PreparedData:
    """Parse the configured dataset (the main process also checks it, and generates synthetic data,
    before the others parse it), settle ``data.validation_ids`` and ``data.image_size`` from it, and
    carve the validation split. Every process reaches the same settings: they depend only on the files.

    Raises:
        DatasetError: the dataset cannot be parsed, fails its check, or (``image_size=auto``) has no
            readable training image.
    """
    dist = dist or DistInfo()
    data = cfg.data
    raw = load_checked_dataset(data) if dist.is_main else None
    barrier(dist)
    if raw is None:
        raw = load_dataset(data.dataset, data.root, **data.options)
    dataset, count, note = carve_configured(data, raw)
    data, size_note = resolve_image_size(dataclasses.replace(data, validation_ids=count), dataset)
    choices = [text for text in (note, size_note) if text]
    if dist.is_main:
        for text in [*dataset.notes, *choices]:
            log.info("%s: %s", dataset.name, text)
    return PreparedData(dataclasses.replace(cfg, data=data), dataset, choices)
