"""Checkpoints: one safetensors file holding every tensor, with the rest as JSON metadata.

A checkpoint file holds the model's tensors (``model.*``), optionally the optimiser's state
(``optim.*``) and RNG states (``rng.*``), and a JSON header with the model spec, the config, the
training position and the package version. It is written to a temporary file that is renamed
over the target, so a crash at any moment leaves the previous checkpoint intact. Reading never
unpickles anything: safetensors and JSON only.

The header also holds a SHA-256 digest of everything else (the other header entries and every tensor's
name, dtype, shape and bytes), checked when the file is read, so that a corrupted file (a disk error, a
partial copy, bytes changed afterwards) is reported instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from svllreid.errors import CheckpointError
from svllreid.fileio import atomic_write_safetensors
from svllreid.inference.model_folder import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    is_hub_name,
    is_model_folder,
    read_folder_config,
    read_model_folder,
    resolve_hub_name,
    weights_sha256,
)
from svllreid.version import __version__

__all__ = [
    "DIGEST_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "META_KEY",
    "PRETRAIN_TASK",
    "RUN_CHECKPOINTS",
    "Checkpoint",
    "content_digest",
    "folder_checkpoint_meta",
    "load_model_state",
    "load_optimizer_state",
    "read_checkpoint",
    "read_checkpoint_meta",
    "resolve_checkpoint",
    "restore_rng",
    "state_digest",
    "write_checkpoint",
]

FORMAT = "svllreid-checkpoint"
FORMAT_VERSION = 1
META_KEY = "svllreid"
#: Header entry holding the content digest (:func:`content_digest`).
DIGEST_KEY = "content_sha256"
#: The ``task`` a language-image pretraining checkpoint records (a CLIP, not a ReID model).
PRETRAIN_TASK = "pretrain"
#: Checkpoints of a run directory, best first: the final weights, then the latest epoch.
RUN_CHECKPOINTS = ("model", "last")


def content_digest(header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a checkpoint's header (without the digest itself) and of every tensor's name, dtype,
    shape and bytes, in name order."""
    digest = hashlib.sha256()
    facts = {k: v for k, v in header.items() if k != DIGEST_KEY}
    digest.update(json.dumps(facts, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)  # in place, no copy
    return digest.hexdigest()


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` returns."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(repr=False)

    @property
    def name(self) -> str:
        """How to name the checkpoint to load it again: an ``hf-hub:`` name pinned to its revision, or the path."""
        return str(self.meta.get("model_folder", {}).get("hub") or self.path)

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors under ``prefix.`` with the prefix removed."""
        cut = len(prefix) + 1
        return {k[cut:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = cuda_state
    # The legacy state (the default) of the global MT19937 is always the tuple; numpy's stub also allows a dict.
    kind, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    return tensors, {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def restore_rng(checkpoint: Checkpoint) -> None:
    """Put the global RNGs (python, numpy, torch, CUDA) back where the checkpoint left them."""
    rng = checkpoint.meta.get("rng")
    if rng is None:
        raise CheckpointError(f"{checkpoint.path} holds no RNG state (not a resumable checkpoint)")
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(checkpoint.tensors["rng.torch"])
    cuda = sorted((k for k in checkpoint.tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([checkpoint.tensors[k] for k in cuda][: torch.cuda.device_count()])


def _unshared_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The contiguous CPU tensors that safetensors writes, sharing no memory: a tensor is copied only when it
    shares its storage with one before it or is a part of a larger one. Copying them all cost about two thirds
    of a tiny training run's checkpoint write (and, for a large network, its weights and optimiser state twice
    over in memory while the file was written)."""
    out: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, value in tensors.items():
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage()
        whole = tensor.data_ptr() == storage.data_ptr() and tensor.nbytes == storage.nbytes()
        if not whole or storage.data_ptr() in storages:
            tensor = tensor.clone()
        elif storage.data_ptr() != 0:
            storages.add(storage.data_ptr())
        out[name] = tensor
    return out


def write_checkpoint(
    path: str | Path,
    model: nn.Module,
    meta: dict[str, Any],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    with_rng: bool = False,
) -> Path:
    """Atomically write a checkpoint of ``model`` (and optimiser / RNG states) to ``path``.

    Args:
        meta: JSON-serialisable facts: model spec, config, stage, epoch, step, ...
    """
    path = Path(path)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "svllreid_version": __version__, **meta}
    if optimizer is not None:
        optim_tensors, header["optimizer"] = _optimizer_tensors(optimizer)
        tensors.update(optim_tensors)
    if with_rng:
        rng_tensors, header["rng"] = _rng_state()
        tensors.update(rng_tensors)
    tensors = _unshared_cpu(tensors)
    header[DIGEST_KEY] = content_digest(header, tensors)
    return atomic_write_safetensors(path, tensors, {META_KEY: json.dumps(header)})


def read_checkpoint(path: str | Path, *, verify: bool = True) -> Checkpoint:
    """Read a checkpoint written by :func:`write_checkpoint`, or a model folder (its weights and the header
    its ``config.json`` stands for; :mod:`svllreid.inference.model_folder`), from a path or an ``hf-hub:`` name.

    Args:
        verify: check the content digest (files written before checkpoints had one are read as they are);
            False skips it, for speed when the file is known to be sound.

    Raises:
        CheckpointError: missing file, not a safetensors file, not an svllreid checkpoint, or a file
            whose content no longer matches its digest.
    """
    hub = str(path) if is_hub_name(path) else None
    if hub is not None:
        path = resolve_checkpoint(hub)
    path = Path(path).expanduser()
    if path.is_dir() and (path / "checkpoints" / "last.safetensors").is_file():
        path = path / "checkpoints" / "last.safetensors"  # where a run resumes (and --from starts) from
    elif path.is_dir():
        path = resolve_checkpoint(path)
    if _in_model_folder(path):  # its own messages for a missing or damaged file
        weights, config, tensors = read_model_folder(path.parent)
        meta = folder_checkpoint_meta(config)
        if hub is not None:  # the name, pinned to the commit it resolved to (the snapshot folder's name)
            meta["model_folder"]["hub"] = f"{hub.split('@')[0]}@{path.parent.name}"
        return Checkpoint(weights, meta, tensors)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint ({type(err).__name__}: {err}); svllreid checkpoints "
            "are the .safetensors files in a run's checkpoints/ folder (CLIP weights go to model.pretrained)"
        ) from err
    if META_KEY not in header:
        raise CheckpointError(
            f"{path} is a safetensors file but not an svllreid checkpoint (no svllreid metadata); "
            "to start from CLIP weights pass them as model.pretrained instead"
        )
    meta = json.loads(header[META_KEY])
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        found = f"{meta.get('format')!r} v{meta.get('format_version')}"
        raise CheckpointError(f"{path}: unsupported checkpoint format {found}; made by a newer svllreid?")
    if verify and DIGEST_KEY in meta and meta[DIGEST_KEY] != content_digest(meta, tensors):
        raise CheckpointError(
            f"{path} is corrupt: its content no longer matches the digest written with it (a disk error, an "
            "incomplete copy, or bytes changed afterwards). Copy it again, use another checkpoint of the run "
            "(checkpoints/last.safetensors, stage1.safetensors) or train again"
        )
    return Checkpoint(path, meta, tensors)


def folder_checkpoint_meta(config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint header (as :func:`svllreid.inference.checkpoint.write_checkpoint` writes it) that a
    folder's config stands for."""
    training = config.get("training") or {}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "svllreid_version": config.get("svllreid_version"),
        "spec": config["architecture"],
        "quick_gelu": bool(config.get("quick_gelu", False)),
        "config": training.get("config") or {},
        "dataset": config.get("trained_on") or {},
        "stage": training.get("stage"),
        "epoch": training.get("epoch"),
        "text": config.get("text", "free-text"),
        "model_folder": {"name": config.get("name")},
    }
    if config.get("converted"):
        meta["converted"] = config["converted"]
    # The key of compiled query encoders (svllreid.inference.query_encoder): the weights and what feeds them.
    facts = json.dumps(config, sort_keys=True)
    meta[DIGEST_KEY] = hashlib.sha256(facts.encode()).hexdigest()
    return meta


def _in_model_folder(path: Path) -> bool:
    """Whether ``path`` is the weights file of a model folder (:mod:`svllreid.inference.model_folder`)."""
    return path.name == WEIGHTS_FILE and is_model_folder(path.parent)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file: ``path`` itself, the best checkpoint of a run directory (``model`` before
    ``last``), the weights of a model folder, or those of an ``hf-hub:ORG/NAME[@REVISION]`` model (from the
    Hugging Face cache, downloaded there if need be)."""
    if is_hub_name(path):
        return resolve_hub_name(str(path)) / WEIGHTS_FILE
    path = Path(path).expanduser()
    if path.is_dir() and is_model_folder(path):
        return path / WEIGHTS_FILE
    weights = path / WEIGHTS_FILE
    if (
        path.is_dir()
        and weights.is_file()
        and not (path / "checkpoints").is_dir()
        and not read_checkpoint_meta(weights)
    ):
        raise CheckpointError(
            f"{path} is an incomplete model folder: {CONFIG_FILE} missing (a model folder holds {WEIGHTS_FILE}, "
            f"{CONFIG_FILE} and README.md); copy or download the whole folder again"
        )
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        for name in RUN_CHECKPOINTS:
            if (folder / f"{name}.safetensors").is_file():
                return folder / f"{name}.safetensors"
        raise CheckpointError(
            f"no checkpoint in {path} (looked for {', '.join(n + '.safetensors' for n in RUN_CHECKPOINTS)} in "
            f"{folder}); pass a run directory of 'svllreid train' or one of its .safetensors files"
        )
    return path


def read_checkpoint_meta(path: str | Path) -> dict[str, Any] | None:
    """The JSON header of an svllreid checkpoint file, reading no tensor (milliseconds for any size);
    None for a file that is missing, unreadable or not an svllreid checkpoint. Not verified: what needs
    the tensors reads them with :func:`read_checkpoint`."""
    try:
        if _in_model_folder(Path(path)):
            return folder_checkpoint_meta(read_folder_config(Path(path).parent))
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        meta = json.loads(header[META_KEY])
    except Exception:
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a model's tensors (names, shapes, dtypes, bytes): equal for copies of the same weights,
    wherever they were loaded (an eager model, its TorchScript copy, a model folder's checksum)."""
    return weights_sha256(state)


def load_model_state(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's model tensors into ``model``; every key must match."""
    state = checkpoint.group("model")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in set(state) & set(expected) if state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", sorted(mismatched))):
            if keys:
                details.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise CheckpointError(f"{checkpoint.path} does not fit this model: {'; '.join(details)}")
    model.load_state_dict(state, strict=True)


def load_optimizer_state(optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
    """Restore an optimiser saved with :func:`write_checkpoint`."""
    saved = checkpoint.meta.get("optimizer")
    if saved is None:
        raise CheckpointError(f"{checkpoint.path} holds no optimiser state")
    state: dict[int, dict[str, Any]] = {}
    for key, value in checkpoint.group("optim").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups) or any(
        len(g["params"]) != len(h["params"]) for g, h in zip(groups, optimizer.param_groups, strict=True)
    ):
        raise CheckpointError(f"{checkpoint.path}: the saved optimiser has other parameter groups than this run")
    optimizer.load_state_dict({"state": state, "param_groups": groups})
