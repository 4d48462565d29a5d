"""Turn the ``data`` config section into datasets, transforms and image caches.

Together with the command line this is the only data code that reads a config object; everything
below takes plain arguments.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from svllreid.config import AUTO, DataConfig
from svllreid.data.check import check_loaded_dataset
from svllreid.data.datasets import get_dataset_entry, load_dataset
from svllreid.data.loaders import ImageCache, Transform
from svllreid.data.occlusion import occlude_queries, occluded_split
from svllreid.data.shapes import choose_input_size, median_shape
from svllreid.data.transforms import build_ssl_view_transform, build_test_transform, build_train_transform
from svllreid.data.types import ReIDDataset
from svllreid.data.validation import auto_validation_ids, carve_validation
from svllreid.errors import DatasetError

__all__ = [
    "TRAIN_INTERPOLATION",
    "Transforms",
    "build_dataset",
    "build_image_caches",
    "build_transforms",
    "carve_configured",
    "load_checked_dataset",
    "resolve_image_size",
    "validation_count",
]

log = logging.getLogger(__name__)


def validation_count(cfg: DataConfig, dataset: ReIDDataset) -> tuple[int, str | None]:
    """How many training identities ``data.validation_ids`` holds out of ``dataset``, and, for ``auto``,
    the sentence that says so (``auto``: :func:`svllreid.data.validation.auto_validation_ids` for a
    user's own data, none for the paper's benchmarks and synthetic data)."""
    if cfg.validation_ids != AUTO:
        return int(cfg.validation_ids), None
    if not get_dataset_entry(cfg.dataset).own_data:
        return 0, None
    return auto_validation_ids(dataset)


def carve_configured(cfg: DataConfig, dataset: ReIDDataset) -> tuple[ReIDDataset, int, str | None]:
    """``dataset`` with the validation split ``data.validation_ids`` asks for, the number of identities
    held out, and (for ``auto``) the sentence that says how many and why (:func:`validation_count`)."""
    count, note = validation_count(cfg, dataset)
    if not count:
        return dataset, count, note
    carved = carve_validation(dataset, count, cfg.validation_seed)
    if dataset.occlusion is not None and carved.validation is not None:
        # Settings chosen for occluded queries are chosen on occluded queries: the held-out images get
        # occluded copies as queries, against their originals (a query's own original, same identity and
        # camera, is junk under the camera protocol), with occluding people cut from the identities that
        # still train. The copies cover a share of the crop, as for photos, also for drawn people.
        if not dataset.has_cameras:  # a query's own original would count as a match, at distance ~0
            raise DatasetError(
                f"{dataset.name}: occluded validation queries need cameras (their originals are then junk)"
            )
        low, high, seed = dataset.occlusion
        split = carved.validation
        queries, records = occlude_queries(
            split.query,
            (low, high),
            seed,
            [s.path for s in carved.train],
            label=f"{dataset.name}-validation",
            root=dataset.root,
        )
        carved = dataclasses.replace(
            carved, validation=occluded_split(split, queries), occluded=carved.occluded | frozenset(records)
        )
    return carved, count, note


def _carved(cfg: DataConfig, dataset: ReIDDataset) -> ReIDDataset:
    carved, _, note = carve_configured(cfg, dataset)
    if note:
        log.info("%s: %s", dataset.name, note)
    return carved


def build_dataset(cfg: DataConfig) -> ReIDDataset:
    """Parse the configured dataset, run its start-of-training check (``cfg.check``) and carve its
    validation split (``data.validation_ids``).

    Raises:
        DatasetError: the dataset cannot be parsed or its check found errors (all listed).
    """
    dataset = _carved(cfg, load_checked_dataset(cfg))
    for note in dataset.notes:
        log.info("%s: %s", dataset.name, note)
    return dataset


def load_checked_dataset(cfg: DataConfig) -> ReIDDataset:
    """Parse the configured dataset and run its start-of-training check (``cfg.check``); no validation
    split is carved.

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
    return dataset


def resolve_image_size(cfg: DataConfig, dataset: ReIDDataset) -> tuple[DataConfig, str | None]:
    """``cfg`` with ``image_size=auto`` settled from the training images' median shape
    (:func:`svllreid.data.shapes.choose_input_size` within ``image_area`` pixels), and the sentence that
    says what was chosen and why; a size given as numbers is returned as it is, with None.

    Raises:
        DatasetError: ``auto``, but no training image could be read.
    """
    if cfg.image_size != AUTO:
        return cfg, None
    shape = median_shape([s.path for s in dataset.train])
    if shape is None:
        raise DatasetError(
            f"data.image_size=auto reads the training images' shape, but none of {dataset.name}'s could be read; "
            "run 'svllreid data check', or set data.image_size=[height,width]"
        )
    height, width, count = shape
    size = choose_input_size(height, width, cfg.image_area)
    note = (
        f"data.image_size=auto: {size[0]}×{size[1]} (height×width), the median shape of {count} training images "
        f"({height:g}×{width:g}) at about {cfg.image_area} pixels (data.image_area); data.image_size=[H,W] sets it"
    )
    return dataclasses.replace(cfg, image_size=list(size)), note


#: The training pipelines' resize (the reference's: bicubic).
TRAIN_INTERPOLATION = "bicubic"


@dataclass(frozen=True)
class Transforms:
    """The three pipelines, and how images are resized to the input size before each (the loaders
    resize when they read an image; see :func:`svllreid.data.loaders.read_resized`)."""

    train: Transform
    test: Transform
    view: Transform
    test_interpolation: str
    train_interpolation: str = TRAIN_INTERPOLATION


def build_transforms(cfg: DataConfig) -> Transforms:
    """The train, test and self-supervision-view transforms of the configured size and statistics."""
    size, mean, std = list(cfg.size), list(cfg.pixel_mean), list(cfg.pixel_std)
    return Transforms(
        train=build_train_transform(
            size, mean=mean, std=std, padding=cfg.padding, flip_prob=cfg.flip_prob, erasing_prob=cfg.erasing_prob
        ),
        test=build_test_transform(size, mean, std, cfg.test_interpolation),
        view=build_ssl_view_transform(
            size,
            mean=mean,
            std=std,
            padding=cfg.padding,
            flip_prob=cfg.flip_prob,
            erasing_prob=cfg.ssl_erasing_prob,
            erasing_area=cfg.ssl_erasing_area,
        ),
        test_interpolation=cfg.test_interpolation,
    )


def build_image_caches(cfg: DataConfig, dataset: ReIDDataset) -> dict[str, ImageCache]:
    """Shared caches of decoded images when ``cfg.cache_images`` is on, one per resize filter: the
    training images resized for training, and every image (training images too, for stage 1's
    features) resized for testing. One cache holds everything when the two filters agree."""
    if not cfg.cache_images:
        return {}
    train = [s.path for s in dataset.train]
    test = list(train)
    for split in [*dataset.splits, *([dataset.validation] if dataset.validation else [])]:
        test += [s.path for s in split.query + split.gallery]
    if cfg.test_interpolation == TRAIN_INTERPOLATION:
        return {TRAIN_INTERPOLATION: ImageCache(test, cfg.size, TRAIN_INTERPOLATION)}
    return {
        TRAIN_INTERPOLATION: ImageCache(train, cfg.size, TRAIN_INTERPOLATION),
        cfg.test_interpolation: ImageCache(test, cfg.size, cfg.test_interpolation),
    }
