"""A validation split carved from the training identities, for choosing settings without the test set.

:func:`carve_validation` holds some training identities out: they leave the training set and form
a query/gallery split of their own (one query per identity and camera, the rest gallery), which
replaces the dataset's evaluation splits. Pure Python, like the parsers.
"""

from __future__ import annotations

import random
from collections import defaultdict

from svllreid.data.types import EvalSplit, ReIDDataset, Sample, relabel, relabelled_names

__all__ = ["carve_validation"]


def carve_validation(dataset: ReIDDataset, num_ids: int, seed: int = 0) -> ReIDDataset:
    """``dataset`` with ``num_ids`` random training identities moved to a validation split.

    The returned dataset trains on the other identities (relabelled 0..N-1) and evaluates on the
    held-out ones only: its test splits are gone, so nothing chosen with it has seen the test set.

    Raises:
        ValueError: ``num_ids`` is not in 1..(training identities - 2).
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
    held = set(random.Random(seed).sample(sorted(by_pid), num_ids))
    query: list[Sample] = []
    gallery: list[Sample] = []
    for pid in sorted(held):
        seen_cameras: set[int] = set()
        for sample in sorted(by_pid[pid], key=lambda s: s.path):
            # One query per camera (per identity without cameras), the rest gallery, as for folder datasets.
            key = sample.camid if dataset.has_cameras else -1
            if key in seen_cameras:
                gallery.append(sample)
            else:
                seen_cameras.add(key)
                query.append(sample)
    kept = [s for s in dataset.train if s.pid not in held]
    train_names = {pid: dataset.identity_name(pid, train=True) for pid in by_pid}
    note = (
        f"validation: {num_ids} of {total} training identities held out (seed {seed}) as query {len(query)} / "
        f"gallery {len(gallery)} images; the test splits are not used"
    )
    return ReIDDataset(
        dataset.name,
        dataset.root,
        dataset.kind,
        relabel(kept),
        [EvalSplit("validation", query, gallery)],
        dataset.protocol,
        dataset.num_cameras,
        dataset.num_views,
        [*dataset.notes, note],
        train_names=relabelled_names(kept, train_names),
        test_names={pid: train_names[pid] for pid in held},  # the held-out samples keep their training pid
    )
