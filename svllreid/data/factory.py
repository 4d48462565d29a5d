"""Turn the ``data`` config section into datasets, transforms and image caches.

Together with the command line this is the only data code that reads a config object; everything
below takes plain arguments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from svllreid.config import DataConfig
from svllreid.data.check import check_loaded_dataset
from svllreid.data.datasets import load_dataset
from svllreid.data.loaders import ImageCache, Transform
from svllreid.data.transforms import build_ssl_view_transform, build_test_transform, build_train_transform
from svllreid.data.types import DatasetError, ReIDDataset

log = logging.getLogger(__name__)


def build_dataset(cfg: DataConfig) -> ReIDDataset:
    """Parse the configured dataset and run its start-of-training check (``cfg.check``).

    Raises:
        DatasetError: the dataset cannot be parsed or its check found errors (all listed).
    """
    dataset = load_dataset(cfg.dataset, cfg.root, **cfg.options)
    if cfg.check != "off":
        report = check_loaded_dataset(dataset, mode="full" if cfg.check == "full" else "quick")
        if not report.ok:
            raise DatasetError(
                f"dataset {dataset.name} at {dataset.root} failed its {cfg.check} check "
                f"(run 'svllreid data check --dataset {dataset.name} --root {dataset.root}' for the full report):",
                report.errors,
            )
        for warning in report.warnings:
            log.warning("%s: %s", dataset.name, warning)
    for note in dataset.notes:
        log.info("%s: %s", dataset.name, note)
    return dataset


@dataclass(frozen=True)
class Transforms:
    train: Transform
    test: Transform
    view: Transform


def build_transforms(cfg: DataConfig) -> Transforms:
    """The train, test and self-supervision-view transforms of the configured size and statistics."""
    size, mean, std = list(cfg.image_size), list(cfg.pixel_mean), list(cfg.pixel_std)
    return Transforms(
        train=build_train_transform(size, mean, std, cfg.padding, cfg.flip_prob, cfg.erasing_prob),
        test=build_test_transform(size, mean, std),
        view=build_ssl_view_transform(
            size, mean, std, cfg.padding, cfg.flip_prob, cfg.ssl_erasing_prob, cfg.ssl_erasing_area
        ),
    )


def build_image_cache(cfg: DataConfig, dataset: ReIDDataset) -> ImageCache | None:
    """A shared cache over every image of the dataset when ``cfg.cache_images`` is on."""
    if not cfg.cache_images:
        return None
    paths = [s.path for s in dataset.train]
    for split in dataset.splits:
        paths += [s.path for s in split.query + split.gallery]
    return ImageCache(paths, cfg.image_size)
