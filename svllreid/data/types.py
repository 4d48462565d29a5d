"""The data layer's vocabulary: samples, evaluation splits and parsed datasets.

Everything here is pure Python so that dataset parsers can be used and tested without torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from svllreid.errors import DatasetError  # noqa: F401 (still importable from here)

__all__ = [
    "CAPTION_SPLITS",
    "UNKNOWN",
    "Caption",
    "CaptionDataset",
    "EvalSplit",
    "Kind",
    "Protocol",
    "ReIDDataset",
    "Sample",
    "caption_summary",
    "relabel",
    "relabelled_names",
    "split_summary",
]

#: Camera or view id of a sample whose camera / viewpoint is not known.
UNKNOWN = -1

Kind = Literal["person", "vehicle"]
Protocol = Literal["camera", "no-camera"]


class Sample(NamedTuple):
    """One image: absolute path, identity, 0-based camera id and 0-based viewpoint id.

    ``pid`` is relabelled to 0..N-1 for training samples; query and gallery samples keep the
    dataset's own identity numbers (0 is a distractor where the dataset has them).
    ``camid`` and ``viewid`` are :data:`UNKNOWN` (-1) where the dataset has no such label.
    """

    path: str
    pid: int
    camid: int
    viewid: int


@dataclass(frozen=True)
class EvalSplit:
    """One query/gallery pair to evaluate. Datasets with several (PKU's two camera directions,
    VehicleID's seeded trials) report the mean over their splits."""

    name: str
    query: list[Sample]
    gallery: list[Sample]


@dataclass
class ReIDDataset:
    """A parsed dataset: training samples and one or more evaluation splits.

    Attributes:
        name: registry name of the parser that produced it.
        root: the folder (or manifest file) it was read from.
        kind: ``"person"`` or ``"vehicle"``; selects the prompt template.
        train: training samples, identities relabelled 0..num_train_ids-1.
        splits: evaluation splits; ``splits[0]`` is the default query/gallery pair.
        protocol: ``"camera"`` (same-identity-same-camera gallery images are junk) or
            ``"no-camera"`` (only the query's own image is excluded).
        num_cameras: size of the camera-id space (0 when there are no cameras).
        num_views: size of the viewpoint-id space (0 when there are no viewpoint labels).
        notes: facts a user should know (images without a view label, auto-made splits, ...).
        train_names: the dataset's own name of each training identity, by relabelled pid (a folder's
            name, Market's number); :meth:`identity_name` reads it.
        test_names: the dataset's own name of a query/gallery pid where it differs from the number
            (identity folders named ``nyala-60``).
        validation: a query/gallery split of training identities held out from ``train``
            (:func:`svllreid.data.validation.carve_validation`), for choosing settings and checkpoints
            without the test splits; None when there is none. Its samples keep their training pid
            (before relabelling), named by ``validation_names``.
        occluded: paths of the images an occlusion option put an occluder on (``occluded_queries``).
        occlusion: with an ``occluded_queries`` option, its (low, high) coverage and seed; a validation split
            carved from such a dataset gets occluded queries too (:mod:`svllreid.data.occlusion`).
    """

    name: str
    root: str
    kind: Kind
    train: list[Sample]
    splits: list[EvalSplit]
    protocol: Protocol
    num_cameras: int
    num_views: int = 0
    notes: list[str] = field(default_factory=list)
    train_names: list[str] = field(default_factory=list)
    test_names: dict[int, str] = field(default_factory=dict)
    validation: EvalSplit | None = None
    validation_names: dict[int, str] = field(default_factory=dict)
    occluded: frozenset[str] = frozenset()
    occlusion: tuple[float, float, int] | None = None

    def validation_dataset(self) -> ReIDDataset | None:
        """This dataset with its validation split as the only evaluation split (None without one)."""
        if self.validation is None:
            return None
        return dataclasses.replace(
            self, splits=[self.validation], test_names=dict(self.validation_names), validation=None, validation_names={}
        )

    def identity_name(self, pid: int, *, train: bool = False) -> str:
        """How the user knows an identity: of a training sample (relabelled ``pid``) or of a query/gallery
        sample; the number itself where the dataset has no other name."""
        if train:
            return self.train_names[pid] if 0 <= pid < len(self.train_names) else str(pid)
        return self.test_names.get(pid, str(pid))

    @property
    def query(self) -> list[Sample]:
        return self.splits[0].query if self.splits else []

    @property
    def gallery(self) -> list[Sample]:
        return self.splits[0].gallery if self.splits else []

    @property
    def num_train_ids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def has_cameras(self) -> bool:
        return self.protocol == "camera"


def relabel(samples: list[Sample]) -> list[Sample]:
    """Map identities to 0..N-1 in order of their sorted original ids."""
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [s._replace(pid=mapping[s.pid]) for s in samples]


def relabelled_names(samples: list[Sample], names: Mapping[int, str] | None = None) -> list[str]:
    """The names of the identities that :func:`relabel` numbers 0..N-1, in that order: ``names[pid]``,
    else the original number (for :attr:`ReIDDataset.train_names`)."""
    names = names or {}
    return [names.get(pid, str(pid)) for pid in sorted({s.pid for s in samples})]


def split_summary(samples: list[Sample]) -> dict[str, int]:
    """Identities, images and cameras of one list of samples (unknown cameras not counted)."""
    return {
        "ids": len({s.pid for s in samples}),
        "images": len(samples),
        "cameras": len({s.camid for s in samples if s.camid != UNKNOWN}),
    }


#: Splits a caption dataset may have.
CAPTION_SPLITS = ("train", "val", "test")


class Caption(NamedTuple):
    """One (image, caption) pair: absolute image path, the caption, the identity (-1 unknown: the
    image is then its own identity) and the split (``train``, ``val`` or ``test``)."""

    path: str
    caption: str
    pid: int
    split: str


@dataclass
class CaptionDataset:
    """A parsed caption dataset: (image, caption) pairs of one or more splits. An image with several
    captions appears once per caption."""

    name: str
    root: str
    captions: list[Caption]
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Caption]:
        return [c for c in self.captions if c.split == name]

    @property
    def splits(self) -> list[str]:
        return [s for s in CAPTION_SPLITS if any(c.split == s for c in self.captions)]


def caption_summary(captions: list[Caption]) -> dict[str, int]:
    """Identities (known ones), images and captions of one list of pairs."""
    return {
        "ids": len({c.pid for c in captions if c.pid != UNKNOWN}),
        "images": len({c.path for c in captions}),
        "captions": len(captions),
    }
