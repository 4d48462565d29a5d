"""A self-describing model folder, the way models are shared: ``model.safetensors`` (the network's tensors
under their own names), ``config.json`` (what rebuilds and feeds the network) and ``README.md`` (a model
card). :func:`svllreid.export.pretrained.save_pretrained` writes one; this module reads it, from a path or
from the Hugging Face Hub (``hf-hub:ORG/NAME[@REVISION]``, through huggingface_hub's own API and cache).

Reading never unpickles: JSON and safetensors only. ``config.json`` records a SHA-256 of the tensors,
checked on every read, so a damaged or partly copied folder is reported instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from svllreid.errors import CheckpointError
from svllreid.version import __version__

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "FOLDER_FILES",
    "FOLDER_FORMAT",
    "FOLDER_VERSION",
    "HUB_PREFIX",
    "WEIGHTS_FILE",
    "check_repo_id",
    "first_line",
    "is_hub_name",
    "is_model_folder",
    "read_folder_config",
    "read_model_folder",
    "resolve_hub_name",
    "weights_sha256",
]

FOLDER_FORMAT = "svllreid-model"
FOLDER_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
FOLDER_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)
#: A calibrated folder's same-identity threshold (``svllreid calibrate``): the sidecar of its weights file
#: (:func:`svllreid.inference.calibration.sidecar_path`), optional.
CALIBRATION_FILE = "model.calibration.json"
HUB_PREFIX = "hf-hub:"


def is_hub_name(name: str | Path) -> bool:
    return str(name).startswith(HUB_PREFIX)


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder that :func:`save_pretrained` wrote (judged by its ``config.json``)."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == FOLDER_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a network's tensors (names, shapes, dtypes, bytes, in name order): equal for copies of the
    same weights wherever they were loaded, and what feature files, indexes and evaluations record
    (:meth:`svllreid.inference.trained.TrainedModel.weights_digest`)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name for an empty one)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def check_repo_id(repo_id: str, shown: str) -> None:
    """Refuse a Hub repository name that is not ORG/NAME."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise CheckpointError(f"{shown}: a Hub model is named ORG/NAME (a user or organisation, then the model)")


def read_folder_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a model folder, checked for the files and format version this svllreid reads.

    Raises:
        CheckpointError: a missing file, a config that is not JSON, or a folder of a newer svllreid.
    """
    missing = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{folder} is an incomplete model folder: {' and '.join(missing)} missing (a model folder holds "
            f"{', '.join(FOLDER_FILES)}); copy or download the whole folder again"
        )
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not readable JSON ({err}); copy the folder again") from None
    if not isinstance(config, dict) or config.get("format") != FOLDER_FORMAT:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not an svllreid model config (format {FOLDER_FORMAT!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FOLDER_VERSION:
        made_by = config.get("svllreid_version", "a newer svllreid")
        raise CheckpointError(
            f"{folder} was written by svllreid {made_by} in model folder format v{version}; this svllreid "
            f"({__version__}) reads up to v{FOLDER_VERSION}. Upgrade: pip install -U svllreid"
        )
    return config


def read_model_folder(folder: str | Path) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    """The weights file, ``config.json`` and tensors (``model.``-prefixed, as in a checkpoint) of a folder.

    Raises:
        CheckpointError: an incomplete folder, a newer format, unreadable or damaged weights.
    """
    folder = Path(folder)
    config = read_folder_config(folder)
    weights = folder / WEIGHTS_FILE
    try:
        with safe_open(str(weights), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (no iterator)
    except Exception as err:
        raise CheckpointError(
            f"{weights} is not a readable safetensors file ({type(err).__name__}: {err}); copy or download the "
            "folder again"
        ) from None
    if weights_sha256(tensors) != config.get("weights_sha256"):
        raise CheckpointError(
            f"{weights} does not match the checksum in {CONFIG_FILE} (a damaged or partial copy, or weights "
            "replaced by hand); copy or download the folder again"
        )
    return weights, config, {f"model.{k}": v for k, v in tensors.items()}


def resolve_hub_name(name: str) -> Path:
    """The local folder of ``hf-hub:ORG/NAME[@REVISION]``, from huggingface_hub's cache or downloaded
    into it (weights as safetensors only). The folder's path ends in the commit it was resolved to.

    Raises:
        CheckpointError: a malformed name, or one not in the cache while offline (``HF_HUB_OFFLINE=1``), or a
            download that failed.
    """
    repo_id, _, revision = name[len(HUB_PREFIX) :].partition("@")
    check_repo_id(repo_id, f"{name} (hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION)")
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as err:  # pragma: no cover (a dependency of svllreid)
        raise CheckpointError(f"{name} needs huggingface_hub: pip install huggingface_hub ({err})") from None
    offline = bool(constants.HF_HUB_OFFLINE)
    where = f"revision {revision}" if revision else "its main revision"
    try:
        path = Path(
            snapshot_download(
                repo_id,
                revision=revision or None,
                # The folder's files and, where it was calibrated, its same-identity threshold.
                allow_patterns=[*FOLDER_FILES, CALIBRATION_FILE],
                local_files_only=offline,
            )
        )
    except LocalEntryNotFoundError:
        if offline:
            raise CheckpointError(
                f"{name} ({where}) is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is "
                f"set, so it cannot be downloaded. Download it once while online (unset HF_HUB_OFFLINE and run the "
                f"command again, or run: hf download {repo_id}), or pass a local model folder"
            ) from None
        raise CheckpointError(
            f"{name} ({where}) could not be downloaded (is the Hub reachable?) and is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); check your connection, or pass a local model folder"
        ) from None
    except Exception as err:  # a repository that does not exist, a private one without a token, HTTP errors
        raise CheckpointError(
            f"{name} cannot be fetched from the Hugging Face Hub ({type(err).__name__}: {first_line(err)}); check the "
            "name and your connection (a private model needs HF_TOKEN or 'hf auth login')"
        ) from None
    if not is_model_folder(path):
        raise CheckpointError(
            f"{name} ({where}) holds no svllreid model folder ({CONFIG_FILE} of format {FOLDER_FORMAT!r} and "
            f"{WEIGHTS_FILE}); svllreid loads models written by 'svllreid model save' or 'svllreid push'"
        )
    return path
