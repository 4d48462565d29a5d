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
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svllreid.config import AUTO
from svllreid.data.factory import build_dataset
from svllreid.data.types import ReIDDataset
from svllreid.errors import CalibrationError, DatasetError
from svllreid.evaluation.model_eval import EvalOptions, evaluate_model, split_pair_scores
from svllreid.inference.calibration import Calibration, sidecar_path
from svllreid.inference.features import TestImages
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


def _calibration_data(
    trained: TrainedModel,
    dataset: str | None,
    root: str | None,
    options: dict[str, Any] | None,
    validation_ids: int | None,
) -> tuple[ReIDDataset, int]:
    """The dataset with its validation split of identities the model did not train on, and their number.

    Raises:
        CalibrationError: the training set with no identity held out, or a dataset with none to hold out.
    """
    data_cfg = trained.config.data
    # The training set itself (its options given again or left out): only its held-out identities are unseen.
    own = _same_dataset(trained, dataset, root) and (options is None or dict(options) == dict(data_cfg.options))
    if own:
        held = data_cfg.validation_ids
        if validation_ids is not None and held not in (AUTO, validation_ids):
            raise CalibrationError(
                f"{trained.checkpoint.name} trained with {held} of {data_cfg.dataset}'s training identities held out "
                f"(data.validation_ids); --validation-ids {validation_ids} would calibrate on identities it "
                "trained on. "
                "Leave --validation-ids out to use its own held-out identities"
            )
        cfg = dataclasses.replace(data_cfg, check="quick")
    else:
        cfg = dataclasses.replace(
            data_cfg,
            dataset=dataset or data_cfg.dataset,
            root=root if root is not None else "",
            options=dict(options or {}),
            validation_ids=validation_ids if validation_ids is not None else AUTO,
            validation_seed=0,
            check="quick",
        )
    try:
        data = build_dataset(cfg)
    except ValueError as err:  # the carving's own message: how many identities could be held out
        if isinstance(err, DatasetError):
            raise
        raise CalibrationError(
            f"cannot hold identities of {cfg.dataset} out to calibrate on: {err}. A calibration set needs "
            "identities with two images or more (from two cameras where there are cameras)"
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
    return data, len({s.pid for s in data.validation.gallery})


def _round_up(value: float, digits: int = 3) -> float:
    """``value`` rounded up to ``digits`` significant digits (a suggested rate that is never too small)."""
    step = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    rounded = float(f"{math.ceil(value / step - 1e-9) * step:.{digits}g}")
    return rounded if rounded >= value else float(f"{rounded + step:.{digits}g}")


def _scores(trained: TrainedModel, data: ReIDDataset, options: EvalOptions) -> list[PairScores]:
    images = TestImages(trained.transform, trained.image_size, trained.interpolation)
    evaluation = evaluate_model(trained.model, data, images=images, device=trained.device, options=options)
    return [split_pair_scores(evaluation, split, data.has_cameras) for split, _ in evaluation.splits]


def _pooled(points: list[OperatingPoint]) -> dict[str, Any]:
    """Rates over several splits' pairs together (PKU's two directions, VehicleID's trials)."""
    tp, fp = sum(p.true_accepts for p in points), sum(p.false_accepts for p in points)
    pos, neg = sum(p.num_positive for p in points), sum(p.num_negative for p in points)
    return {
        "tpr": tp / pos,
        "fpr": fp / neg,
        "true_accepts": tp,
        "false_accepts": fp,
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
    data, held = _calibration_data(trained, dataset, root, options, validation_ids)
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
    (scores,) = _scores(trained, validation_data, eval_options)
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
        raise CalibrationError(
            f"--fpr {value:g} is below what {where} resolves: its {scores.num_negative:,} different-identity pairs "
            f"resolve an FPR of 1/{scores.num_negative:,} (about {smallest:.3g}) at the smallest (one false accept). "
            f"Ask for --fpr {smallest:.3g} or more, or hold out more identities (--validation-ids)"
        )
    point = scores.at_fpr(value) if target == "fpr" else scores.at_tpr(value)
    if not math.isfinite(point.threshold):
        raise CalibrationError(f"no threshold on {where} reaches {target.upper()} {value:g}")
    test_point = None
    test_rates = None
    if test and data.splits:
        points = [s.at_threshold(point.threshold) for s in _scores(trained, data, eval_options) if s.num_positive]
        if points:
            test_rates = {"dataset": data.name, "splits": [s.name for s in data.splits], **_pooled(points)}
            test_point = (
                points[0]
                if len(points) == 1
                else dataclasses.replace(
                    points[0],
                    tpr=test_rates["tpr"],
                    fpr=test_rates["fpr"],
                    true_accepts=test_rates["true_accepts"],
                    false_accepts=test_rates["false_accepts"],
                    num_positive=test_rates["positive_pairs"],
                    num_negative=test_rates["negative_pairs"],
                )
            )
    calibration = Calibration(
        threshold=point.threshold,
        target=target,
        target_value=value,
        weights_sha256=trained.weights_digest(),
        validation={
            "dataset": data.name,
            "root": str(data.root),
            "identities": held,
            **_pooled([point]),
        },
        test=test_rates,
        checkpoint=trained.checkpoint.name,
        flip=flip,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    return CalibrationRun(calibration, point, test_point, data, held)
