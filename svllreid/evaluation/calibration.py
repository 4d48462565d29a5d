"""``svllreid calibrate``: choose a model's same-identity threshold on held-out labelled identities.

The threshold is chosen on a validation split (``data.validation_ids``: training identities the model
never trained on), never on the test split: at a target false positive rate (or true positive rate)
over the split's query–gallery pairs (:mod:`svllreid.metrics.verification`). The test split's rates at
the same threshold are then measured, to show how it transfers. The features are made as searches,
servers and exports make them: without camera side information, flipped only when asked.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svllreid.config import AUTO
from svllreid.data.datasets import load_dataset
from svllreid.data.factory import build_dataset
from svllreid.data.types import ReIDDataset
from svllreid.errors import CalibrationError, DatasetError
from svllreid.evaluation.model_eval import EvalOptions, evaluate_model, split_pair_scores
from svllreid.inference.calibration import Calibration, sidecar_path
from svllreid.inference.features import TestImages
from svllreid.inference.model_folder import is_hub_name
from svllreid.inference.trained import TrainedModel
from svllreid.metrics.verification import OperatingPoint, PairScores
from svllreid.precision import resolve_precision

__all__ = ["CalibrationRun", "calibrate_model", "check_target", "default_sidecar"]

log = logging.getLogger(__name__)

#: How a rate is shown in messages.
_PCT = "{:.4g}%"


@dataclass
class CalibrationRun:
    """What :func:`calibrate_model` chose and measured."""

    calibration: Calibration
    validation: OperatingPoint
    test: OperatingPoint | None
    dataset: ReIDDataset
    validation_ids: int
    notes: list[str] = dataclasses.field(default_factory=list)


def check_target(fpr: float | None, tpr: float | None) -> tuple[str, float]:
    """The target (``"fpr"`` or ``"tpr"``, its value) from the options, checked before any work.

    Raises:
        CalibrationError: both given, or a rate outside its range.
    """
    if fpr is not None and tpr is not None:
        raise CalibrationError("give --fpr or --tpr, not both: the threshold fixes one of the two rates")
    if tpr is not None:
        if not (isinstance(tpr, float | int) and 0.0 < tpr <= 1.0):
            raise CalibrationError(f"--tpr is a true positive rate in (0, 1], e.g. 0.9; got {tpr}")
        return "tpr", float(tpr)
    fpr = 1e-3 if fpr is None else fpr
    if not (isinstance(fpr, float | int) and math.isfinite(fpr) and 0.0 < fpr < 1.0):
        raise CalibrationError(f"--fpr is a false positive rate in (0, 1), e.g. 1e-3; got {fpr}")
    return "fpr", float(fpr)


def default_sidecar(trained: TrainedModel) -> Path:
    """Where the calibration of ``trained`` goes by default: beside its checkpoint file.

    Raises:
        CalibrationError: a model from the Hugging Face Hub (its cached files are not ours to change).
    """
    if trained.checkpoint.meta.get("model_folder", {}).get("hub"):
        raise CalibrationError(
            f"{trained.checkpoint.name} comes from the Hugging Face Hub; write its calibration elsewhere with "
            "--out FILE.calibration.json (or into an index with --index)"
        )
    return sidecar_path(trained.checkpoint.path)


def _same_dataset(trained: TrainedModel, dataset: str | None, root: str | None) -> bool:
    data = trained.config.data
    if dataset is not None and dataset != data.dataset:
        return False
    return root is None or Path(root).resolve() == Path(str(data.root)).resolve()


def _fingerprints(dataset: ReIDDataset, count: int = 64) -> set[str]:
    """SHA-256 of the bytes of the first ``count`` training images (by path): equal for copies of the data."""
    paths = sorted(s.path for s in dataset.train)[:count]
    return {hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths if Path(p).is_file()}


def _trained_on_these_images(trained: TrainedModel, data: ReIDDataset) -> bool | None:
    """Whether ``data`` holds the training images of ``trained`` (a copy at another root, say): True or
    False by the images' bytes, None where the training set is not on this machine to compare."""
    cfg = trained.config.data
    try:
        original = load_dataset(cfg.dataset, cfg.root, **cfg.options)
    except (DatasetError, OSError, ValueError):
        return None
    return bool(_fingerprints(original) & _fingerprints(data))


def _calibration_data(
    trained: TrainedModel,
    dataset: str | None,
    root: str | None,
    options: dict[str, Any] | None,
    validation_ids: int | None,
) -> tuple[ReIDDataset, int, list[str]]:
    """The dataset with its validation split of identities the model did not train on, their number, and
    notes for the user.

    The model's own training set (the same name, root and options, or the same images elsewhere) only
    offers the identities it held out in training (``data.validation_ids``); another set offers
    ``validation_ids`` of its training identities.

    Raises:
        CalibrationError: the training set with no identity held out, another number of held-out
            identities asked of it, or a dataset with none to hold out.
    """
    data_cfg = trained.config.data
    notes: list[str] = []
    own = _same_dataset(trained, dataset, root) and (options is None or dict(options) == dict(data_cfg.options))
    named = dataset in (None, data_cfg.dataset)  # the training set's name: its root and options by default
    other = dataclasses.replace(
        data_cfg,
        dataset=dataset or data_cfg.dataset,
        root=root if root is not None else (data_cfg.root if named else ""),
        options=dict(options) if options is not None else (dict(data_cfg.options) if named else {}),
        check="quick",
    )
    if not own and other.dataset == data_cfg.dataset:  # the same dataset elsewhere? compare the images
        try:
            same = _trained_on_these_images(trained, load_dataset(other.dataset, other.root, **other.options))
        except (DatasetError, OSError, ValueError):
            same = False  # the build below gives the dataset's own message
        if same:
            own = True
            notes.append(
                f"{other.root or other.dataset} holds the images {trained.checkpoint.name} trained on (a copy of "
                f"{data_cfg.root or data_cfg.dataset}): only the identities it held out in training are used"
            )
        elif same is None:
            notes.append(
                f"{trained.checkpoint.name} was trained on {data_cfg.dataset} at {data_cfg.root or '(default root)'}, "
                "which is not on this machine to compare: make sure the identities held out here are not ones it "
                "trained on"
            )
    if own:
        cfg = dataclasses.replace(data_cfg, root=other.root, options=other.options, check="quick")
    else:
        cfg = dataclasses.replace(
            other, validation_ids=validation_ids if validation_ids is not None else AUTO, validation_seed=0
        )
    try:
        data = build_dataset(cfg)
    except ValueError as err:  # the carving's own message: how many identities could be held out
        if isinstance(err, DatasetError):
            raise
        raise CalibrationError(
            f"cannot hold identities of {cfg.dataset} out to calibrate on ({err}; there, data.validation_ids is "
            "--validation-ids). A calibration set needs identities with two images or more, from two cameras "
            "where there are cameras"
        ) from err
    if data.validation is None:
        if own:
            raise CalibrationError(
                f"{trained.checkpoint.name} trained on every training identity of {data.name} at {data.root} "
                "(data.validation_ids 0): none is held out to calibrate on, and the test split is never used "
                "for it. Calibrate on labelled identities the model never saw: another dataset or folder "
                "(--dataset/--root) with --validation-ids N of its training identities"
            )
        raise CalibrationError(
            f"{data.name} at {data.root}: no identities held out to calibrate on; pass --validation-ids N "
            "(training identities with two images or more, from two cameras where there are cameras)"
        )
    held = len({s.pid for s in data.validation.gallery})
    if own and validation_ids is not None and validation_ids != held:
        raise CalibrationError(
            f"{trained.checkpoint.name} trained with {held} of {data.name}'s training identities held out "
            f"(data.validation_ids); --validation-ids {validation_ids} would calibrate on other identities, some "
            "of which it trained on. Leave --validation-ids out to use the identities it held out"
        )
    return data, held, notes


def _round_up(value: float, digits: int = 3) -> float:
    """``value`` rounded up to ``digits`` significant digits (a suggested rate that is never too small)."""
    step = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    rounded = float(f"{math.ceil(value / step - 1e-9) * step:.{digits}g}")
    return rounded if rounded >= value else float(f"{rounded + step:.{digits}g}")


def _scores(trained: TrainedModel, data: ReIDDataset, options: EvalOptions) -> list[tuple[str, PairScores]]:
    images = TestImages(trained.transform, trained.image_size, trained.interpolation)
    evaluation = evaluate_model(trained.model, data, images=images, device=trained.device, options=options)
    return [(split.name, split_pair_scores(evaluation, split, data.has_cameras)) for split, _ in evaluation.splits]


def _pooled(points: list[OperatingPoint]) -> dict[str, Any]:
    """Rates over several splits' pairs together (PKU's two directions, VehicleID's trials), and on a
    binned split how many of the false accepts may lie below the threshold (0 when exact)."""
    tp, fp = sum(p.true_accepts for p in points), sum(p.false_accepts for p in points)
    pos, neg = sum(p.num_positive for p in points), sum(p.num_negative for p in points)
    return {
        "tpr": tp / pos,
        "fpr": fp / neg,
        "true_accepts": tp,
        "false_accepts": fp,
        "false_accepts_bound": sum(round(p.fpr_bound * p.num_negative) for p in points),
        "positive_pairs": pos,
        "negative_pairs": neg,
    }


def calibrate_model(
    trained: TrainedModel,
    *,
    dataset: str | None = None,
    root: str | None = None,
    options: dict[str, Any] | None = None,
    fpr: float | None = None,
    tpr: float | None = None,
    validation_ids: int | None = None,
    flip: bool = False,
    batch_size: int = 128,
    num_workers: int = 0,
    test: bool = True,
) -> CalibrationRun:
    """Choose ``trained``'s threshold on held-out identities at ``fpr`` (default 1e-3) or ``tpr``.

    Args:
        dataset, root, options: the labelled set (default: the model's training set, whose held-out
            identities, ``data.validation_ids``, it never trained on).
        validation_ids: identities of ``dataset``'s training split to hold out (another dataset than the
            training one; default ``auto``: a fifth for a user's own data).
        flip: features with their flipped images' added (as the index or extractor that will use it).
        test: also measure the test split's rates at the chosen threshold.

    Raises:
        CalibrationError: no identities to hold out, no pairs of both kinds, or an FPR below what the
            split's pairs resolve (the message gives the smallest resolvable one).
    """
    target, value = check_target(fpr, tpr)
    data, held, notes = _calibration_data(trained, dataset, root, options, validation_ids)
    assert data.validation is not None
    eval_options = EvalOptions(
        batch_size=batch_size,
        num_workers=num_workers,
        amp_dtype=resolve_precision("auto", trained.device),
        flip=flip,
        side_info=False,  # as searches and exports encode: cameras unknown
        verification=False,
    )
    validation_data = data.validation_dataset()
    assert validation_data is not None
    ((_, scores),) = _scores(trained, validation_data, eval_options)
    where = f"the validation split of {data.name} ({held} held-out identities)"
    if not scores.num_positive:
        raise CalibrationError(
            f"{where} has no two images of one identity (from two cameras where there are cameras): no "
            "same-identity pair to calibrate on; hold out more identities with --validation-ids N"
        )
    if not scores.num_negative:
        raise CalibrationError(f"{where} has one identity only: no different-identity pair to calibrate on")
    if target == "fpr" and value < scores.smallest_fpr():
        smallest = _round_up(scores.smallest_fpr())
        asked = f"--fpr {value:g}" + (" (the default)" if fpr is None else "")
        raise CalibrationError(
            f"{asked} is below what {where} resolves: its {scores.num_negative:,} different-identity pairs "
            f"resolve an FPR of 1/{scores.num_negative:,} (about {smallest:.3g}) at the smallest (one false accept). "
            f"Ask for --fpr {smallest:.3g} or more, or calibrate on more identities (another labelled set with "
            "a larger --validation-ids)"
        )
    point = scores.at_fpr(value) if target == "fpr" else scores.at_tpr(value)
    if not math.isfinite(point.threshold):
        raise CalibrationError(f"no threshold on {where} reaches {target.upper()} {value:g}")
    test_point = None
    test_rates = None
    if test and data.splits:
        measured = [
            (name, split.at_threshold(point.threshold))
            for name, split in _scores(trained, data, eval_options)
            if split.num_positive and split.num_negative
        ]
        if measured:
            points = [p for _, p in measured]
            test_rates = {"dataset": data.name, "splits": [name for name, _ in measured], **_pooled(points)}
            test_point = dataclasses.replace(
                points[0],
                tpr=test_rates["tpr"],
                fpr=test_rates["fpr"],
                true_accepts=test_rates["true_accepts"],
                false_accepts=test_rates["false_accepts"],
                num_positive=test_rates["positive_pairs"],
                num_negative=test_rates["negative_pairs"],
                fpr_bound=test_rates["false_accepts_bound"] / test_rates["negative_pairs"],
            )
    calibration = Calibration(
        threshold=point.threshold,
        target=target,
        target_value=value,
        weights_sha256=trained.weights_digest(),
        # No local paths: a calibration travels in exports and shared model folders.
        validation={"dataset": data.name, "identities": held, **_pooled([point])},
        test=test_rates,
        checkpoint=trained.checkpoint.name if is_hub_name(trained.checkpoint.name) else trained.checkpoint.path.name,
        flip=flip,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    return CalibrationRun(calibration, point, test_point, data, held, notes)
