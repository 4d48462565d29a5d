"""Feature extraction split over the processes of a torchrun launch: what ``extract`` and ``index build``
do under ``torchrun --nproc-per-node N -m svllreid ...``.

Each process takes a contiguous share of the image list (:func:`svllreid.distributed.share`) and writes
its features atomically to a shard file in a folder next to the output (``OUT.shards/``); the main
process then merges the shards in rank order. The rows, their order and the unreadable files are those
of a single process, and the features equal its features to float tolerance.

A shard's name and contents carry the number of processes and the run's fingerprint
(:class:`RunFingerprint`: the image list, the network and its weights, flip, preprocessing, precision).
A launch started again after a crash therefore reuses the shards its own run wrote, and refuses a shard
of another run rather than merging features that do not belong together.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from svllreid.distributed import DistInfo, all_gather_objects, require_same_everywhere, run_everywhere, run_on_main
from svllreid.distributed import share as rank_share
from svllreid.errors import OutputError
from svllreid.fileio import atomic_write_bytes
from svllreid.inference.features import FileFeatures, extract_model_features
from svllreid.inference.model_protocol import FeatureModel
from svllreid.precision import resolve_precision

__all__ = [
    "SHARD_FORMAT",
    "RunFingerprint",
    "ShardPlan",
    "ShardedFeatures",
    "extract_sharded",
    "image_list_digest",
    "shard_folder",
]

T = TypeVar("T")

#: The format tag every shard file stores (a later layout gets another).
SHARD_FORMAT = "svllreid-feature-shard/1"


def image_list_digest(paths: Sequence[str]) -> str:
    """SHA-256 of an image list in its order (the order decides which process extracts which file)."""
    return hashlib.sha256("\n".join(paths).encode("utf-8")).hexdigest()


def shard_folder(out: str | Path) -> Path:
    """Where the shards of the output file ``out`` are written: ``OUT.shards/`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def _preprocessing(model: FeatureModel) -> str:
    """The input size, the resize filter and a digest of the normalisation: the transform applied to a
    fixed probe image, so that any change of mean, std or pipeline shows, whatever the transform is."""
    height, width = model.image_size
    probe = (torch.arange(3 * height * width) * 37 % 256).to(torch.uint8).reshape(3, height, width)
    pixels = model.transform(probe).to(torch.float32).contiguous().numpy()
    return f"{height}×{width} {model.interpolation}, normalisation {hashlib.sha256(pixels.tobytes()).hexdigest()[:12]}"


@dataclass(frozen=True)
class RunFingerprint:
    """What the features of an extraction depend on: runs with equal fingerprints make equal shards.

    Attributes:
        images, num_images: :func:`image_list_digest` of the image list, and its length.
        network: SHA-256 of the model's :meth:`~svllreid.inference.model_protocol.FeatureModel.identity`
            (its structure, training set and weights digest).
        network_name: the checkpoint or model file, for the messages.
        flip: whether the flipped images' features are added.
        preprocessing: the input size, the resize filter and the normalisation.
        precision: the autocast dtype on the model's device (``float32``: none).
    """

    images: str
    num_images: int
    network: str
    network_name: str
    flip: bool
    preprocessing: str
    precision: str

    @classmethod
    def of(cls, model: FeatureModel, paths: Sequence[str], *, flip: bool) -> RunFingerprint:
        identity = model.identity()
        dtype = resolve_precision("auto", model.device)
        return cls(
            images=image_list_digest(paths),
            num_images=len(paths),
            network=hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest(),
            network_name=str(identity.get("checkpoint") or identity.get("model_file") or "?"),
            flip=bool(flip),
            preprocessing=_preprocessing(model),
            precision="float32" if dtype is None else str(dtype).removeprefix("torch."),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunFingerprint:
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def digest(self) -> str:
        """16 hex digits of SHA-256 over every field: part of each shard's file name."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: RunFingerprint) -> list[str]:
        """What ``other`` (another run's) differs in, in words: ``"flip (on here, off there)"``."""
        found = []
        if (self.images, self.num_images) != (other.images, other.num_images):
            counts = (
                f"{self.num_images} images here, {other.num_images} there"
                if self.num_images != other.num_images
                else "as many images, but other files or another order"
            )
            found.append(f"the image list ({counts})")
        if self.network != other.network:
            found.append(f"the network or its weights ({self.network_name} here, {other.network_name} there)")
        if self.flip != other.flip:
            found.append(f"flip ({'on' if self.flip else 'off'} here, {'on' if other.flip else 'off'} there)")
        if self.preprocessing != other.preprocessing:
            found.append(f"the preprocessing ({self.preprocessing} here, {other.preprocessing} there)")
        if self.precision != other.precision:
            found.append(f"the precision ({self.precision} here, {other.precision} there)")
        return found


@dataclass(frozen=True)
class ShardPlan:
    """The shards of one run split over ``world_size`` processes: their folder and file names.

    Attributes:
        out: the output file the shards are merged into.
        paths: the whole image list, in order; rank ``r`` extracts ``paths[self.share(r)]``.
    """

    out: Path
    paths: tuple[str, ...]
    fingerprint: RunFingerprint
    world_size: int

    @property
    def folder(self) -> Path:
        return shard_folder(self.out)

    def share(self, rank: int) -> slice:
        return rank_share(len(self.paths), DistInfo(rank=rank, world_size=self.world_size))

    def file(self, rank: int) -> Path:
        """``rank``'s shard: named by rank, number of processes and fingerprint, so that no other run's
        shard has its name."""
        return self.folder / f"rank{rank:03d}-of-{self.world_size:03d}-{self.fingerprint.digest()}.npz"

    def write(self, rank: int, features: FileFeatures) -> Path:
        """Write ``rank``'s shard atomically (a crash leaves it whole or absent)."""
        meta = {
            "format": SHARD_FORMAT,
            "rank": rank,
            "world_size": self.world_size,
            "fingerprint": asdict(self.fingerprint),
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            feats=features.feats.numpy().astype(np.float32, copy=False),
            paths=np.array(features.paths, dtype=str),
            unreadable=np.array(features.unreadable, dtype=str),
            meta=np.array(json.dumps(meta)),
        )
        return atomic_write_bytes(self.file(rank), buffer.getvalue())

    def read(self, rank: int) -> FileFeatures:
        """``rank``'s shard, checked to be this run's and to hold exactly its share of the images.

        Raises:
            OutputError: the file is damaged, or is another run's, or holds other images.
        """
        path = self.file(rank)
        arrays, meta = _read_shard_file(path)
        problems = []
        if meta.get("rank") != rank or meta.get("world_size") != self.world_size:
            problems.append(f"it says it is rank {meta.get('rank')} of {meta.get('world_size')}")
        stored = _stored_fingerprint(meta)
        if stored is None:
            problems.append("it records no fingerprint of its run")
        else:
            problems += self.fingerprint.differences(stored)
        readable, unreadable = arrays["paths"].tolist(), arrays["unreadable"].tolist()
        expected = list(self.paths[self.share(rank)])
        skipped = set(unreadable)
        if not problems and (
            readable != [p for p in expected if p not in skipped] or unreadable != [p for p in expected if p in skipped]
        ):
            problems.append(f"it does not hold rank {rank}'s {len(expected)} images in order")
        feats = arrays["feats"]
        if not problems and (feats.ndim != 2 or feats.shape[0] != len(readable)):
            problems.append(f"its features have the shape {feats.shape} for {len(readable)} images")
        if problems:
            raise OutputError(
                f"{path} does not belong to this run: {'; '.join(problems)}. Delete it (the run then extracts "
                f"its images again), or pass another --out"
            )
        return FileFeatures(torch.from_numpy(np.ascontiguousarray(feats)), readable, unreadable, 0.0)

    def check_folder(self) -> None:
        """Refuse a shard of another run in :attr:`folder`: another image list, network, flip,
        preprocessing, precision or number of processes. Temporary files of a write cut short are
        not shards (hidden names; removed with the folder).

        Raises:
            OutputError: which files, what differs, and what to do.
        """
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise OutputError(
                f"{folder} is a file; the shards of {self.out.name} go there: move it, or pass another --out"
            )
        if not folder.is_dir():
            return
        ours = {self.file(rank).name for rank in range(self.world_size)}
        foreign = sorted(p for p in folder.iterdir() if p.name not in ours and not p.name.startswith("."))
        if not foreign:
            return
        described = [f"{p.name}: {self._foreign_difference(p)}" for p in foreign[:3]]
        more = f"\n  ... and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise OutputError(
            f"{folder} holds {len(foreign)} shard(s) of another run, which this run would not resume from:\n  "
            + "\n  ".join(described)
            + more
            + f"\nDelete {folder} to start afresh, pass another --out, or run the other run's command again "
            "to finish it"
        )

    def _foreign_difference(self, path: Path) -> str:
        try:
            _, meta = _read_shard_file(path)
        except OutputError as err:
            return str(err)
        stored = _stored_fingerprint(meta)
        if stored is None:
            return "not a shard of this svllreid version (no fingerprint)"
        found = self.fingerprint.differences(stored)
        world = meta.get("world_size")
        if world != self.world_size:
            found.append(f"the number of processes ({self.world_size} here, {world} there)")
        return "made with another " + "; ".join(found) if found else "made by this run, under another name"


def _read_shard_file(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A shard's arrays and its metadata.

    Raises:
        OutputError: not a readable shard file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise OutputError(f"{path} is not a readable shard ({err}); delete it, or pass another --out") from err
    if (
        not isinstance(meta, dict)
        or meta.get("format") != SHARD_FORMAT
        or not {"paths", "unreadable", "feats"} <= set(arrays)
    ):
        raise OutputError(f"{path} is not a shard of this svllreid version; delete it, or pass another --out")
    return arrays, meta


def _stored_fingerprint(meta: dict[str, Any]) -> RunFingerprint | None:
    try:
        return RunFingerprint.from_dict(meta["fingerprint"])
    except (KeyError, TypeError):
        return None


@dataclass
class ShardedFeatures:
    """The merged features of a sharded extraction (a single process's :class:`FileFeatures`; ``seconds``
    from the first process's start to the merge), and how they were made."""

    features: FileFeatures
    processes: int
    reused: list[int]
    folder: Path

    def describe(self) -> str:
        """``"2 processes; the shard of rank 1 reused from OUT.shards"``, for the throughput line (the
        images/s then count the reused images too)."""
        if not self.reused:
            return f"{self.processes} processes"
        ranks = ", ".join(map(str, self.reused))
        which = f"shards of ranks {ranks}" if len(self.reused) > 1 else f"shard of rank {ranks}"
        return f"{self.processes} processes; the {which} reused from {self.folder}"


def extract_sharded(
    model: FeatureModel,
    paths: Sequence[str],
    *,
    out: str | Path,
    info: DistInfo,
    then: Callable[[ShardedFeatures], T],
    batch_size: int = 64,
    num_workers: int = 0,
    flip: bool = False,
    progress: bool = True,
) -> T | None:
    """Extract the features of ``paths`` split over the processes of a launch, every process calling this.

    1. Every process checks that all of them list the same images in the same order (before any work).
    2. A shard of another run in ``OUT.shards/`` is refused; a process whose own shard is there already
       (an earlier launch of this run was cut short) reuses it.
    3. Every other process extracts its share and writes its shard atomically.
    4. The main process merges the shards in rank order, calls ``then`` with the result (to write the
       output: it sees what a single process would have extracted) and removes the shard folder.

    An error on any process stops every process (:func:`svllreid.distributed.run_everywhere`); the shards
    written so far stay for the next launch. Several machines need ``out`` on a file system they share.

    Args:
        progress: a progress bar on the main process (of its own share).

    Returns:
        ``then``'s result on the main process, None on the others (once the main process is done).
    """
    plan = run_everywhere(
        lambda: ShardPlan(Path(out), tuple(paths), RunFingerprint.of(model, paths, flip=flip), info.world_size), info
    )
    require_same_everywhere(
        f"{len(paths)} images (list digest {plan.fingerprint.images[:12]})",
        info,
        what="image lists",
        fix="Every process must list the same files in the same order: on several machines, give --images a "
        "folder or list file that shows every machine the same paths (a shared file system)",
    )

    def check() -> bool:
        if info.is_main:
            plan.check_folder()
        if not plan.file(info.rank).exists():
            return False
        plan.read(info.rank)  # a shard of this run, whole: reused
        return True

    reuse = run_everywhere(check, info)
    reused = [rank for rank, flag in enumerate(all_gather_objects(reuse, info)) if flag]
    started = time.perf_counter()

    def extract() -> None:
        if reuse:
            return
        mine = list(plan.paths[plan.share(info.rank)])
        features = extract_model_features(
            model, mine, batch_size=batch_size, num_workers=num_workers, flip=flip, progress=progress and info.is_main
        )
        plan.write(info.rank, features)

    run_everywhere(extract, info)  # also the barrier before the merge

    def merge() -> T:
        merged = _merge(plan, started)
        result = then(ShardedFeatures(merged, info.world_size, reused, plan.folder))
        shutil.rmtree(plan.folder, ignore_errors=True)
        return result

    return run_on_main(merge, info)


def _merge(plan: ShardPlan, started: float) -> FileFeatures:
    """Every rank's shard, in rank order, as one :class:`FileFeatures`.

    Raises:
        OutputError: a shard missing (the processes of several machines wrote to different disks) or
            not this run's.
    """
    parts = []
    for rank in range(plan.world_size):
        if not plan.file(rank).is_file():
            raise OutputError(
                f"rank {rank} wrote its shard {plan.file(rank)}, but the main process does not find it: with "
                "several machines, --out must be on a file system that all of them share"
            )
        parts.append(plan.read(rank))
    dims = {part.feats.shape[1] for part in parts if part.paths}
    if len(dims) > 1:
        raise OutputError(f"the shards in {plan.folder} hold features of {sorted(dims)} dimensions; delete them")
    dim = dims.pop() if dims else 0
    feats = torch.cat([part.feats.reshape(len(part.paths), dim) for part in parts])
    return FileFeatures(
        feats,
        [p for part in parts for p in part.paths],
        [p for part in parts for p in part.unreadable],
        time.perf_counter() - started,
    )
