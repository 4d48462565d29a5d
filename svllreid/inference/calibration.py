"""A model's same-identity threshold: what ``svllreid calibrate`` chose, stored beside the checkpoint, in
an index or in an export, and the decision every place that shows scores makes with it.

A :class:`Calibration` says: two images show the same identity when the cosine similarity of their
features is at least :attr:`~Calibration.threshold`, chosen on held-out labelled identities to give a
false positive rate (or a true positive rate) named by :attr:`~Calibration.operating_point`. It belongs
to one network's weights (``weights_sha256``); used with features of other weights it is refused.

Where it is kept:

- beside a checkpoint: ``<checkpoint without .safetensors>.calibration.json`` (a run's
  ``checkpoints/model.calibration.json``; a model folder's ``model.calibration.json``);
- in an index: its metadata's ``calibration`` entry (``svllreid calibrate --index``);
- in exports: the ONNX file's metadata, TorchScript's extra files, BoxMOT's files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from svllreid.errors import CalibrationError
from svllreid.fileio import atomic_write_text

__all__ = [
    "FORMAT",
    "UNCALIBRATED",
    "Calibration",
    "calibration_for_index",
    "decision",
    "read_calibration",
    "sidecar_calibration",
    "sidecar_path",
    "write_calibration",
]

FORMAT = "svllreid-calibration"
VERSION = 1
#: What a search or a helper says of an uncalibrated model (instead of guessing a threshold).
UNCALIBRATED = (
    "uncalibrated: no same-identity threshold for this model; choose one on labelled held-out identities "
    "with `svllreid calibrate --checkpoint CKPT --dataset D --root R --fpr 1e-3`"
)


def _rate(value: float) -> str:
    """``1e-3`` for 0.001, ``0.9`` for 0.9: how a target rate is written."""
    if value < 0.01:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:g}"


@dataclass(frozen=True)
class Calibration:
    """A threshold on cosine similarity and where it came from (see the module docstring).

    Attributes:
        threshold: same identity when ``score >= threshold``.
        target: ``"fpr"`` or ``"tpr"``: what was fixed on the calibration set, at ``target_value``.
        weights_sha256: the weights whose features it was chosen on.
        validation: on the calibration set (held-out identities): ``dataset``, ``root``, ``identities``,
            ``tpr``, ``fpr``, ``positive_pairs``, ``negative_pairs``.
        test: the same rates at this threshold on the test split (how it transfers), or None.
        checkpoint: the model's name, for messages. flip: features with their flipped images' added.
    """

    threshold: float
    target: str
    target_value: float
    weights_sha256: str
    validation: dict[str, Any]
    test: dict[str, Any] | None = None
    checkpoint: str = ""
    flip: bool = False
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, int | float) or not math.isfinite(self.threshold):
            raise CalibrationError(f"a calibration's threshold must be a finite number, got {self.threshold!r}")
        if self.target not in ("fpr", "tpr"):
            raise CalibrationError(f"a calibration's target is 'fpr' or 'tpr', got {self.target!r}")

    @property
    def target_label(self) -> str:
        """The rate it holds on the calibration set: ``FPR 1e-3`` (or ``TPR 0.9``)."""
        return f"{self.target.upper()} {_rate(self.target_value)}"

    @property
    def operating_point(self) -> str:
        """In words: ``same identity at FPR 1e-3`` (or ``at TPR 0.9``), on the calibration set."""
        return f"same identity at {self.target_label}"

    def same_identity(self, score: float) -> bool:
        return bool(score >= self.threshold)

    def describe(self) -> str:
        """One line: the threshold, the operating point and the set it was chosen on."""
        v = self.validation
        where = f"{v.get('dataset', '?')} validation ({v.get('identities', '?')} held-out identities)"
        return (
            f"{self.operating_point}: cosine similarity >= {self.threshold:.4f} "
            f"(chosen on {where}: TPR {100 * float(v.get('tpr', 0)):.2f}%, FPR {100 * float(v.get('fpr', 0)):.4f}%)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Calibration:
        """Read what :meth:`to_dict` wrote; ``where`` names its source in messages.

        Raises:
            CalibrationError: not a calibration, a newer version, or missing or invalid fields.
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise CalibrationError(f"{where} is not an svllreid calibration (no format {FORMAT!r})")
        if not isinstance(data.get("version"), int) or data["version"] > VERSION:
            raise CalibrationError(
                f"{where} has calibration version {data.get('version')!r}, newer than this svllreid reads "
                f"({VERSION}); upgrade svllreid or calibrate again"
            )
        try:
            return cls(
                threshold=float(data["threshold"]),
                target=str(data["target"]),
                target_value=float(data["target_value"]),
                weights_sha256=str(data["weights_sha256"]),
                validation=dict(data["validation"]),
                test=dict(data["test"]) if data.get("test") is not None else None,
                checkpoint=str(data.get("checkpoint", "")),
                flip=bool(data.get("flip", False)),
                created=str(data.get("created", "")),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, CalibrationError):
                raise
            raise CalibrationError(
                f"{where} is a damaged calibration ({type(err).__name__}: {err}); calibrate again"
            ) from err

    def check_weights(self, weights_sha256: str | None, used_with: str) -> None:
        """Refuse a threshold chosen on other weights than those of ``used_with`` (an index, a model).

        Raises:
            CalibrationError: the digests differ.
        """
        if weights_sha256 and weights_sha256 != self.weights_sha256:
            raise CalibrationError(
                f"the same-identity threshold for {used_with} was chosen on the features of another network "
                f"(weights {self.weights_sha256[:12]}…, not {weights_sha256[:12]}…): its scores mean something else. "
                "Calibrate this model: svllreid calibrate --checkpoint CKPT --dataset D --root R"
            )

    def check_flip(self, flip: bool, used_with: str) -> None:
        """Refuse a threshold chosen on features with (without) their flipped images' added for features
        made the other way: the two score on different scales.

        Raises:
            CalibrationError: the settings differ.
        """
        if bool(flip) != self.flip:
            chosen, used = ("with", "without") if self.flip else ("without", "with")
            raise CalibrationError(
                f"the same-identity threshold for {used_with} was chosen on features {chosen} their flipped images' "
                f"added, and {used_with} makes them {used}: the scores differ. Calibrate "
                f"{'with' if flip else 'without'} --flip (or with --index INDEX, which follows the index)"
            )


def sidecar_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint file's calibration is kept: beside it, ``NAME.calibration.json``."""
    path = Path(checkpoint)
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    return path.with_name(f"{stem}.calibration.json")


def write_calibration(path: str | Path, calibration: Calibration) -> Path:
    """Write ``calibration`` as JSON, atomically (an earlier file stays intact if this fails)."""
    return atomic_write_text(Path(path), calibration.to_json())


def read_calibration(path: str | Path) -> Calibration:
    """The calibration in a JSON file.

    Raises:
        CalibrationError: missing, not JSON, or not a calibration.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CalibrationError(f"no calibration at {path}; make one with `svllreid calibrate`") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CalibrationError(f"{path} is not a readable calibration ({err}); calibrate again") from err
    return Calibration.from_dict(data, str(path))


def sidecar_calibration(
    checkpoint: str | Path, weights_sha256: str | None, used_with: str, *, flip: bool = False
) -> Calibration | None:
    """The calibration beside a checkpoint file, checked to be of ``weights_sha256`` and ``flip``; None:
    the checkpoint is uncalibrated.

    Raises:
        CalibrationError: a damaged sidecar, or one of other weights or another flip setting.
    """
    sidecar = sidecar_path(checkpoint)
    if not sidecar.is_file():
        return None
    calibration = read_calibration(sidecar)
    calibration.check_weights(weights_sha256, used_with)
    calibration.check_flip(flip, used_with)
    return calibration


def calibration_for_index(
    meta: Mapping[str, Any], index: str, checkpoint: str | Path | None = None
) -> Calibration | None:
    """The threshold that applies to an index's scores: the one stored in it, else the one beside the
    checkpoint that encodes its queries (``checkpoint``, else the one it names: a file, a run directory,
    a model folder or an ``hf-hub:`` name in the local cache); None: uncalibrated.

    Raises:
        CalibrationError: a stored or sidecar threshold chosen on other weights than the index's or with
            another flip setting, or a damaged one.
    """
    from svllreid.errors import CheckpointError
    from svllreid.inference.checkpoint import resolve_checkpoint

    digest = meta.get("weights_sha256")
    flip = bool(meta.get("flip", False))
    stored = meta.get("calibration")
    if stored is not None:
        calibration = Calibration.from_dict(stored, f"the calibration stored in {index}")
        calibration.check_weights(digest, index)
        calibration.check_flip(flip, index)
        return calibration
    source = checkpoint if checkpoint is not None else meta.get("checkpoint")
    if not source:
        return None
    try:
        path = resolve_checkpoint(str(source))
    except CheckpointError:  # the checkpoint is not here: the search says so when it loads it
        return None
    return sidecar_calibration(path, str(digest) if digest else None, index, flip=flip)


def decision(calibration: Calibration | None) -> dict[str, Any]:
    """What a search answer says about its scores: the threshold and operating point, or that there is none."""
    if calibration is None:
        return {"calibrated": False, "message": UNCALIBRATED}
    return {
        "calibrated": True,
        "threshold": calibration.threshold,
        "operating_point": calibration.operating_point,
        "rule": f"same identity when cosine similarity >= {calibration.threshold:.4f}",
    }
