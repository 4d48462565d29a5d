"""A compiled query encoder: a checkpoint's test-time image branch as TorchScript, kept in the cache, so
that ``svllreid search`` encodes its queries without importing open_clip or torchvision.

Rebuilding the network of a checkpoint needs open_clip, which imports torchvision and timm: seconds of
start-up for a search that then encodes one image in milliseconds. ``index build`` on the CPU (and the
first CPU search with a checkpoint) therefore trace the network, with every camera and view unknown, into
a TorchScript module and save it under ``$SVLLREID_CACHE/query-encoders``, keyed by the checkpoint's
content digest (:data:`svllreid.inference.checkpoint.DIGEST_KEY`), the torch version and svllreid's. A later
search reads the checkpoint's header only and loads that module with torch alone. It uses the module
only if the network identity recorded when it was compiled (spec and weights digest, from the verified
checkpoint) equals the index's, and its tensors still match the CRC-32 recorded with them (a damaged
file is caught; CRC-32 rather than SHA-256 because it reads ViT-B/16's 344 MB in 0.06 s instead of 0.2 s,
a tenth of a search's start-up, and the cache is the user's own, not a security boundary). Anything else (no entry,
another torch or svllreid, another network, a damaged file, a GPU) falls back to the full rebuild, which
then compiles the entry again; the two give the same features to float rounding (the traced graph runs
the same operations; measured differences are below 1e-7, and compiling refuses more than 1e-6).

``SVLLREID_ENCODER_CACHE=0`` turns the cache off. TorchScript is deprecated upstream in favour of
``torch.export``, whose loader imports torch's compiler stack (about two seconds, what this module
exists to avoid); should TorchScript go, searches take the full path.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from svllreid.fileio import atomic_write, cache_dir
from svllreid.inference.checkpoint import DIGEST_KEY, read_checkpoint_meta
from svllreid.inference.image_branch import CompiledImageBranch, ImageBranch, quiet_tracing
from svllreid.version import __version__

__all__ = [
    "FORMAT",
    "TRACE_TOLERANCE",
    "VERSION",
    "QueryEncoder",
    "cache_file",
    "compile_query_encoder",
    "encoder_cache_enabled",
    "load_query_encoder",
    "store_query_encoder",
    "tensors_crc32",
]

log = logging.getLogger(__name__)

FORMAT = "svllreid-query-encoder"
VERSION = 2  # 2: tensors checked by CRC-32
#: Largest difference between the traced and the eager features accepted when compiling.
TRACE_TOLERANCE = 1e-6
_META_FILE = "svllreid.json"


class _ScriptedImagePath(nn.Module):
    """A loaded TorchScript image branch with the ``encode_image`` signature of a ReID model."""

    def __init__(self, script: torch.jit.ScriptModule):
        super().__init__()
        self.script = script

    def encode_image(
        self, images: torch.Tensor, camids: torch.Tensor | None = None, viewids: torch.Tensor | None = None
    ) -> torch.Tensor:
        # Traced with unknown cameras and views: the ids are not used. Without the JIT's optimising
        # passes: a search runs the module a few times, and the first optimised run costs more than
        # they would save (measured: 45 ms against 10 ms for one query of the tiny ViT).
        with torch.jit.optimized_execution(False):
            return self.script(images)


@dataclass(kw_only=True)
class QueryEncoder(CompiledImageBranch):
    """The image branch of a checkpoint on the CPU, traced with cameras and views unknown: what ``search``
    needs of a trained model. ``network`` is the whole network's identity, which an index's features are
    checked against.

    Attributes:
        tensors, tensors_crc32: the names of the traced module's tensors and their checksum
            (:func:`tensors_crc32`), checked when the file is loaded.
    """

    tensors: list[str]
    tensors_crc32: int

    def facts(self) -> dict[str, Any]:
        """The file's metadata: format, torch version, preprocessing and identity."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "torch": torch.__version__,
            "svllreid": __version__,
            "image_size": list(self.image_size),
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "identity": self.network,
            "tensors": self.tensors,
            "tensors_crc32": self.tensors_crc32,
        }


def tensors_crc32(state: Mapping[str, torch.Tensor]) -> int:
    """CRC-32 of tensors' names, shapes, dtypes and bytes, in name order (read in place, no copy)."""
    crc = 0
    for name, tensor in sorted(state.items()):
        crc = zlib.crc32(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode(), crc)
        crc = zlib.crc32(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().data, crc)
    return crc


def encoder_cache_enabled() -> bool:
    """False where ``SVLLREID_ENCODER_CACHE=0``."""
    return os.environ.get("SVLLREID_ENCODER_CACHE", "1") != "0"


def cache_file(content_sha256: str) -> Path:
    """Where the compiled encoder of the checkpoint with this content digest is kept."""
    # svllreid's version too: a trace freezes the image branch's code, which a new version may change.
    name = f"{content_sha256[:32]}-torch{torch.__version__}-svllreid{__version__}.pt"
    return cache_dir() / "query-encoders" / name


def compile_query_encoder(
    model: nn.Module,
    *,
    image_size: Sequence[int],
    interpolation: str,
    mean: Sequence[float],
    std: Sequence[float],
    identity: Mapping[str, Any],
) -> QueryEncoder | None:
    """Trace ``model`` (eval mode, on the CPU) into a :class:`QueryEncoder`; None when the traced
    features of a batch of another size than the traced one differ from the eager ones by more than
    :data:`TRACE_TOLERANCE` (the network has shape-dependent Python code), or tracing fails."""
    height, width = int(image_size[0]), int(image_size[1])
    wrapper = ImageBranch(model).eval()
    generator = torch.Generator().manual_seed(0)
    example, check = (torch.randn(n, 3, height, width, generator=generator) for n in (2, 3))
    try:
        with quiet_tracing(), torch.no_grad():
            script = torch.jit.trace(wrapper, example, check_trace=False)
            gap = float((script(check) - wrapper(check)).abs().max())
    except Exception as err:
        log.info("the query encoder could not be traced (%s); searches rebuild the network", err)
        return None
    if not gap <= TRACE_TOLERANCE:
        log.info("the traced query encoder differs from the network by %.2g; searches rebuild the network", gap)
        return None
    image_state = wrapper.state_dict()
    return QueryEncoder(
        model=_ScriptedImagePath(script),
        image_size=(height, width),
        interpolation=interpolation,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        network=dict(identity),
        tensors=sorted(image_state),
        tensors_crc32=tensors_crc32(image_state),
    )


def store_query_encoder(encoder: QueryEncoder, content_sha256: str) -> Path | None:
    """Save a compiled encoder in the cache (atomically, without a flush to disk: a lost entry is only
    compiled again); None when the cache is off or cannot be written, which costs only speed."""
    if not encoder_cache_enabled() or not isinstance(encoder.model, _ScriptedImagePath):
        return None
    buffer = io.BytesIO()
    with quiet_tracing():
        torch.jit.save(encoder.model.script, buffer, _extra_files={_META_FILE: json.dumps(encoder.facts())})
    file = cache_file(content_sha256)
    with suppress(OSError):
        return atomic_write(file, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()), durable=False)
    return None


def load_query_encoder(checkpoint: str | Path, identity: Mapping[str, Any]) -> QueryEncoder | None:
    """The cached compiled encoder of ``checkpoint`` (a ``.safetensors`` file), if there is one for this
    torch and svllreid, compiled from a network with ``identity``'s ``spec`` and ``weights_sha256``, whose
    tensors still match their checksum; else None (the caller rebuilds the network, which also explains
    any problem with the checkpoint)."""
    if not encoder_cache_enabled():
        return None
    meta = read_checkpoint_meta(checkpoint)
    if meta is None or not meta.get(DIGEST_KEY):
        return None  # missing, not a checkpoint, or written before checkpoints had a digest
    file = cache_file(str(meta[DIGEST_KEY]))
    if not file.is_file():
        return None
    start = time.perf_counter()
    extra = {_META_FILE: ""}
    try:
        with quiet_tracing():
            script = torch.jit.load(str(file), map_location="cpu", _extra_files=extra)
        facts = json.loads(extra[_META_FILE])
    except Exception as err:
        log.info("ignoring the damaged query encoder %s (%s)", file, err)
        return None
    saved = facts.get("identity", {})
    if (
        facts.get("format") != FORMAT
        or facts.get("version") != VERSION
        or facts.get("torch") != torch.__version__
        or facts.get("svllreid") != __version__
        or saved.get("spec") != identity.get("spec")
        or saved.get("weights_sha256") != identity.get("weights_sha256")
    ):
        return None  # another network than the index's (its full rebuild says so), or another format
    state = script.state_dict()
    names = list(facts.get("tensors", []))
    intact = bool(names) and set(names) <= set(state)
    if not intact or tensors_crc32({k: state[k] for k in names}) != facts.get("tensors_crc32"):
        log.info("ignoring the query encoder %s: its tensors do not match their checksum", file)
        return None
    log.debug("loaded the query encoder %s in %.3f s", file, time.perf_counter() - start)
    return QueryEncoder(
        model=_ScriptedImagePath(script),
        image_size=(int(facts["image_size"][0]), int(facts["image_size"][1])),
        interpolation=str(facts["interpolation"]),
        mean=tuple(float(v) for v in facts["mean"]),
        std=tuple(float(v) for v in facts["std"]),
        network={**saved, "checkpoint": str(checkpoint)},
        tensors=names,
        tensors_crc32=int(facts["tensors_crc32"]),
    )
