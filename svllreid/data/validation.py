"""A validation split carved from the training identities, for choosing settings and checkpoints
without the test set.

:func:`carve_validation` holds some training identities out: they leave the training set and form
a split of their own where every image is a query against the others, kept beside the dataset's test
splits as :attr:`~svllreid.data.types.ReIDDataset.validation`. :func:`auto_validation_ids`
says how many to hold out when the config asks for ``auto``. Pure Python, like the parsers.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict

from svllreid.data.queries import queried_identities, query_needs
from svllreid.data.types import EvalSplit, ReIDDataset, Sample, relabel, relabelled_names

__all__ = ["auto_validation_ids", "carve_validation"]

#: ``data.validation_ids=auto``: the share of the training identities held out, and its bounds. Below
#: AUTO_MIN_TRAIN training identities there is too little to hold anything out, and no validation split.
AUTO_FRACTION, AUTO_MIN_IDS, AUTO_MAX_IDS, AUTO_MIN_TRAIN = 0.2, 4, 300, 12


def auto_validation_ids(dataset: ReIDDataset) -> tuple[int, str]:
    """How many training identities ``data.validation_ids=auto`` holds out of ``dataset``, and why.

    A fifth of the identities that can be queried (:func:`~svllreid.data.queries.can_be_queried`),
    at least 4 and at most 300; none when fewer than 12 identities train, since a validation split
    would then take what training needs.
    """
    total = dataset.num_train_ids
    usable = len(queried_identities(dataset.train, dataset.has_cameras))
    if total < AUTO_MIN_TRAIN or usable < AUTO_MIN_IDS:
        return 0, (
            f"no validation split: {total} training identities ({usable} with {query_needs(dataset.has_cameras)}) "
            "are too few to hold some out (set data.validation_ids=N to force one)"
        )
    count = max(AUTO_MIN_IDS, min(AUTO_MAX_IDS, round(AUTO_FRACTION * usable), total - 2))
    return count, f"data.validation_ids=auto: {count}, a fifth of the {usable} training identities a query can find"


def carve_validation(dataset: ReIDDataset, num_ids: int, seed: int = 0) -> ReIDDataset:
    """``dataset`` with ``num_ids`` random training identities moved to a validation split.

    The returned dataset trains on the other identities (relabelled 0..N-1) and keeps its test splits;
    the held-out identities form :attr:`~svllreid.data.types.ReIDDataset.validation`, where each image is
    a query against all the others. Only identities that can be queried (images from two cameras; two
    images without cameras, :mod:`svllreid.data.queries`) are held out, so every query has a match.

    Raises:
        ValueError: ``num_ids`` is not in 1..(training identities - 2), or more than can be queried.
    """
    by_pid: dict[int, list[Sample]] = defaultdict(list)
    for sample in dataset.train:
        by_pid[sample.pid].append(sample)
    total = len(by_pid)
    if not 1 <= num_ids <= total - 2:
        raise ValueError(
            f"data.validation_ids must be in 1..{total - 2} for {dataset.name}'s {total} training identities "
            f"(at least two must stay for training); got {num_ids}"
        )
    usable = queried_identities(dataset.train, dataset.has_cameras)
    if num_ids > len(usable):
        raise ValueError(
            f"data.validation_ids={num_ids}, but only {len(usable)} of {dataset.name}'s {total} training identities "
            f"have {query_needs(dataset.has_cameras)}, which a validation query needs; hold out at most {len(usable)}"
        )
    held = set(random.Random(seed).sample(usable, num_ids))
    # Every held-out image is a query against all the others: many more queries than one per camera, so the
    # small splits of a user's own data choose with less noise. Evaluation leaves out each query's own image
    # (and, under the camera protocol, its identity's images from its own camera).
    images = sorted((s for s in dataset.train if s.pid in held), key=lambda s: s.path)
    kept = [s for s in dataset.train if s.pid not in held]
    train_names = {pid: dataset.identity_name(pid, train=True) for pid in by_pid}
    note = (
        f"validation: {num_ids} of {total} training identities held out (seed {seed}); each of their "
        f"{len(images)} images is a query against the others"
    )
    return dataclasses.replace(
        dataset,
        train=relabel(kept),
        notes=[*dataset.notes, note],
        train_names=relabelled_names(kept, train_names),
        validation=EvalSplit("validation", images, images),
        validation_names={pid: train_names[pid] for pid in held},  # the held-out samples keep their training pid
    )
