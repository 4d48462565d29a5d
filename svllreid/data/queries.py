"""Which held-out images become queries: the one rule for automatic test splits and validation splits,
and the check that drops the queries of a given split that nothing in its gallery can answer.

Under the camera protocol a gallery image of the query's identity counts only if another camera took
it (same-identity-same-camera images are junk). So a query needs a gallery image of its identity from
another camera; without cameras it needs another image of its identity. The rules:

- An identity *can be queried* when it has images from at least two cameras (at least two images
  without cameras). Identities that cannot stay out of automatic test and validation splits: they
  train instead, where every image is useful.
- Each queried identity gives one random query per camera (one without cameras), as long as every
  query keeps a gallery image from another camera. An identity with one photo per camera (an animal's
  left and right flank) gives one query and one gallery image, not two queries and an empty gallery.

Pure Python, like the parsers.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping

from svllreid.data.types import UNKNOWN, EvalSplit, Sample

__all__ = ["can_be_queried", "drop_unanswerable_queries", "pick_queries", "queried_identities", "query_needs"]


def _by_camera(samples: Iterable[Sample], has_cameras: bool) -> dict[int, list[Sample]]:
    groups: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.camid if has_cameras else UNKNOWN].append(sample)
    return groups


def query_needs(has_cameras: bool) -> str:
    """What an identity needs to be queried, in words (for messages)."""
    return "images from two cameras" if has_cameras else "two or more images"


def can_be_queried(samples: Iterable[Sample], has_cameras: bool) -> bool:
    """Whether an identity with these images can give a query that its gallery answers."""
    groups = _by_camera(samples, has_cameras)
    return len(groups) >= 2 if has_cameras else sum(len(images) for images in groups.values()) >= 2


def queried_identities(samples: Iterable[Sample], has_cameras: bool) -> list[int]:
    """The identities of ``samples`` that :func:`can_be_queried`, sorted."""
    by_pid: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_pid[sample.pid].append(sample)
    return sorted(pid for pid, images in by_pid.items() if can_be_queried(images, has_cameras))


def _answered(counts: Mapping[int, int], chosen: Iterable[int]) -> bool:
    """Every camera in ``chosen`` keeps a gallery image in some other camera after one image of each
    chosen camera became a query."""
    picked = set(chosen)
    left = {cam: count - (cam in picked) for cam, count in counts.items()}
    return all(any(n > 0 for other, n in left.items() if other != cam) for cam in picked)


def pick_queries(
    by_pid: Mapping[int, list[Sample]], *, has_cameras: bool, rng: random.Random
) -> tuple[list[Sample], list[Sample]]:
    """Query and gallery images of held-out identities (see the module's rules).

    Identities that cannot be queried put all their images in the gallery. The picks depend only on
    ``rng`` and the samples (identities, cameras and images are visited in sorted order).
    """
    query: list[Sample] = []
    gallery: list[Sample] = []
    for pid in sorted(by_pid):
        groups = _by_camera(sorted(by_pid[pid], key=lambda s: s.path), has_cameras)
        picks: dict[int, int] = {}
        if not has_cameras:  # one query, if another image is left to answer it
            if len(groups[UNKNOWN]) >= 2:
                picks[UNKNOWN] = rng.randrange(len(groups[UNKNOWN]))
        else:
            counts = {cam: len(images) for cam, images in groups.items()}
            order = sorted(groups)
            rng.shuffle(order)  # where only one camera can give the query, which one is random too
            for cam in order:
                if _answered(counts, [*picks, cam]):
                    picks[cam] = rng.randrange(len(groups[cam]))
        for cam in sorted(groups):
            for i, sample in enumerate(groups[cam]):
                (query if picks.get(cam) == i else gallery).append(sample)
    return query, gallery


def drop_unanswerable_queries(split: EvalSplit, has_cameras: bool) -> tuple[EvalSplit, list[Sample]]:
    """``split`` without the queries that no gallery image of their identity can answer (none at all, or
    under the camera protocol none from another camera), and the queries dropped."""
    cameras_of: dict[int, set[int]] = defaultdict(set)
    for sample in split.gallery:
        cameras_of[sample.pid].add(sample.camid)

    def answerable(query: Sample) -> bool:
        cameras = cameras_of.get(query.pid, set())
        return bool(cameras - {query.camid}) if has_cameras else bool(cameras)

    kept = [q for q in split.query if answerable(q)]
    dropped = [q for q in split.query if not answerable(q)]
    return EvalSplit(split.name, kept, split.gallery), dropped
