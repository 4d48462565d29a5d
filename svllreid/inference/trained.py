"""A trained network for inference: read a checkpoint, rebuild its network, and keep the input
size and pixel statistics it was trained with."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from svllreid.config import Config, Interpolation, config_from_dict
from svllreid.data.loaders import Transform
from svllreid.distributed import DistInfo, resolve_device
from svllreid.errors import CheckpointError
from svllreid.inference.checkpoint import (
    DIGEST_KEY,
    PRETRAIN_TASK,
    Checkpoint,
    load_model_state,
    read_checkpoint,
    resolve_checkpoint,
    state_digest,
)
from svllreid.inference.model_folder import is_hub_name
from svllreid.inference.query_encoder import (
    QueryEncoder,
    cache_file,
    compile_query_encoder,
    encoder_cache_enabled,
    load_query_encoder,
    store_query_encoder,
)

if TYPE_CHECKING:  # the network's modules import open_clip (seconds): only what rebuilds one imports them
    from svllreid.models.factory import ModelSpec
    from svllreid.models.reid_model import ReIDModel

__all__ = [
    "TrainedModel",
    "from_pretrained",
    "load_index_model",
    "load_trained_model",
    "query_flip",
    "require_same_features",
]

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A network in eval mode on ``device``, with the checkpoint and config it came from."""

    model: ReIDModel
    checkpoint: Checkpoint
    config: Config
    device: torch.device

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    @property
    def image_size(self) -> tuple[int, int]:
        return (int(self.spec.image_size[0]), int(self.spec.image_size[1]))

    @property
    def transform(self) -> Transform:
        """The test transform of training (images arrive resized by :attr:`interpolation`), normalised."""
        from svllreid.data.factory import build_transforms  # torchvision

        # replace() runs DataConfig.__post_init__, which checks the choice
        data = dataclasses.replace(self.config.data, test_interpolation=cast(Interpolation, self.interpolation))
        return build_transforms(data).test

    @property
    def interpolation(self) -> str:
        """The test pipeline's resize filter. Checkpoints written before it was an option evaluated
        with bicubic resizing, so they keep it (their recorded results stay reproducible)."""
        saved = self.checkpoint.meta.get("config", {}).get("data", {})
        return str(saved.get("test_interpolation", "bicubic"))

    @property
    def trained_on(self) -> str:
        return str(self.checkpoint.meta.get("dataset", {}).get("name", "?"))

    def identity(self) -> dict[str, Any]:
        """What identifies the network that makes the features (stored with feature files and indexes):
        its checkpoint, structure, training set and a digest of the weights."""
        return {
            "checkpoint": self.checkpoint.name,
            "spec": self.spec.to_dict(),
            "trained_on": self.trained_on,
            "weights_sha256": self.weights_digest(),
        }

    def index_meta(self, *, flip: bool, images: str | Path) -> dict[str, Any]:
        """What an index of this network's features of the gallery ``images`` stores about how they were
        made: :meth:`identity`, the flip setting (queries are then encoded the same way), the folder, and
        the width of f_proj, the features' last columns, for text queries (:meth:`GalleryIndex.search_text`)."""
        return {
            **self.identity(),
            "flip": bool(flip),
            "images": str(Path(images).resolve()),
            "text_dim": self.text_dim,
        }

    @property
    def text_support(self) -> str:
        """What the text side can encode: ``free-text`` (descriptions and the learned prompts; every model
        trained here), ``prompts`` (the learned prompts only: converted without CLIP's token embedding) or
        ``none`` (a converted baseline without prompts)."""
        return str(self.checkpoint.meta.get("text", "free-text"))

    def require_free_text(self) -> None:
        """Raise unless the text side encodes descriptions.

        Raises:
            CheckpointError: a converted model without CLIP's token embedding, or without a text side.
        """
        support = self.text_support
        if support == "free-text":
            return
        source = self.checkpoint.meta.get("converted", {}).get("from", "another codebase")
        if support == "prompts":
            raise CheckpointError(
                f"{self.checkpoint.name} was converted from a {source} checkpoint without CLIP's token embedding, "
                "which searching by description needs (the authors' files do not hold it). Convert it again with "
                f"the CLIP it was trained from: svllreid convert --from {source} FILE.pth --clip-weights openai "
                "(or a CLIP weights file) --out DIR --overwrite"
            )
        raise CheckpointError(
            f"{self.checkpoint.name} is a {source} baseline without prompts or text encoder: it searches by photo only"
        )

    @property
    def feature_dim(self) -> int:
        """The width of the features the network gives (f12 and f_proj)."""
        return int(self.model.feature_dim)

    @property
    def text_dim(self) -> int:
        """The width of f_proj and of the text encoder's features."""
        return int(self.model.text_encoder.output_dim)

    def check_same_features(self, identity: Mapping[str, Any], index: str, *, checkpoint: str | None = None) -> None:
        """Check that this network makes the features of an index (``identity``: what :meth:`identity`
        stored with it; ``index`` and ``checkpoint`` name the two for the message, the latter as the user
        gave it): the same network with the same heads (:meth:`ModelSpec.structure_differences`) and the
        same weights (:meth:`weights_digest`).

        Raises:
            CheckpointError: another network or other weights; the features are not comparable.
        """
        saved_spec = identity.get("spec")
        require_same_features(
            identity,
            index,
            shown=checkpoint or str(self.checkpoint.path),
            differences=self.spec.structure_differences(saved_spec, every_field=True) if saved_spec else (),
            weights_sha256=self.weights_digest,
            kind="checkpoint",
        )

    def weights_digest(self) -> str:
        """SHA-256 of the model tensors (names, shapes, bytes): equal for copies of the same weights."""
        return state_digest(self.model.state_dict())

    def cache_query_encoder(self) -> Path | None:
        """Compile :meth:`query_encoder` into the cache, unless a sound entry for this network is there
        already (one that :func:`load_query_encoder` would use; a damaged or foreign one is replaced); the
        file, or None (not compiled, or the cache is off or cannot be written: searches then only start
        slower)."""
        digest = self.checkpoint.meta.get(DIGEST_KEY)
        if not digest or not encoder_cache_enabled():
            return None
        existing = cache_file(str(digest))
        if existing.is_file() and load_query_encoder(self.checkpoint.path, self.identity()) is not None:
            return existing
        encoder = self.query_encoder()
        return store_query_encoder(encoder, str(digest)) if encoder is not None else None

    def query_encoder(self) -> QueryEncoder | None:
        """This network's image branch compiled for fast searches (see :mod:`svllreid.inference.query_encoder`),
        or None where it cannot be (off the CPU, or a network the tracer cannot take)."""
        if self.device.type != "cpu":
            return None
        return compile_query_encoder(
            self.model,
            image_size=self.image_size,
            interpolation=self.interpolation,
            mean=self.config.data.pixel_mean,
            std=self.config.data.pixel_std,
            identity=self.identity(),
        )

    def describe(self) -> str:
        s, meta = self.spec, self.checkpoint.meta
        converted = meta.get("converted")
        made = (
            f"converted from the {converted.get('from')} file {converted.get('file')}"
            if converted
            else f"stage {meta.get('stage', '?')}, epoch {meta.get('epoch', '?')}"
        )
        size = f"{s.image_size[0]}×{s.image_size[1]}"
        return f"{s.arch} {size} trained on {self.trained_on} ({made}) from {self.checkpoint.name}"


def require_same_features(
    index_identity: Mapping[str, Any],
    index: str,
    *,
    shown: str,
    differences: Iterable[str],
    weights_sha256: Callable[[], str],
    kind: str,
) -> None:
    """The one rule, whichever runtime encodes the queries, for whether a network (``shown``, a
    ``kind``: "checkpoint" or "model") makes the features of an index: no spec field ``differences``
    from the network that built ``index``, and the same weights digest (``weights_sha256`` is called
    only if the index records one).

    Raises:
        CheckpointError: another network or other weights; the features are not comparable.
    """
    differ = sorted(differences)
    if differ:
        raise CheckpointError(
            f"{shown} is another network than the one that built {index} (differs in {', '.join(differ)}); its "
            f"features are not comparable: search with the index's own {kind} or rebuild the index"
        )
    saved_digest = index_identity.get("weights_sha256")
    if saved_digest and saved_digest != weights_sha256():
        raise CheckpointError(
            f"{shown} has other weights than the model that built {index} (same architecture, different "
            f"training); its features are not comparable: search with the index's own {kind} or rebuild the index"
        )


def _assumed_quick_gelu(config: Config) -> bool:
    """QuickGELU as :func:`svllreid.models.pretrained.build_clip` chose it: forced, or for OpenAI weights
    (their TorchScript ``.pt`` archives or the ``openai`` tag)."""
    if config.model.force_quick_gelu is not None:
        return bool(config.model.force_quick_gelu)
    source = str(config.model.pretrained or "")
    return source == "openai" or source.endswith(".pt")


def load_trained_model(path: str | Path, device: str = "auto") -> TrainedModel:
    """Rebuild the network of an svllreid checkpoint (a file or a run directory) for inference.

    Example:
        ``checkpoint`` is what ``svllreid train`` wrote (a run's ``checkpoints/model.safetensors``):

        >>> from svllreid.inference.trained import load_trained_model
        >>> trained = load_trained_model(checkpoint, device="cpu")
        >>> trained.spec.arch, trained.image_size, trained.interpolation
        ('svll-tiny-vit', (64, 32), 'bilinear')
        >>> trained.identity()["weights_sha256"] == trained.weights_digest()
        True

    Raises:
        CheckpointError: no checkpoint there, not an svllreid checkpoint, or tensors that do not fit.
    """
    from svllreid.models.factory import ModelSpec, create_model  # open_clip

    if is_hub_name(path):
        checkpoint = read_checkpoint(path)  # resolved once, and kept as the name pinned to its revision
    else:
        resolved = resolve_checkpoint(path)
        if resolved.suffix.lower() in (".onnx", ".xml"):
            kind = "an ONNX" if resolved.suffix.lower() == ".onnx" else "an OpenVINO"
            raise CheckpointError(f"{resolved} is {kind} export, not a checkpoint: pass it as --model {resolved}")
        checkpoint = read_checkpoint(resolved)
    meta = checkpoint.meta
    if meta.get("task") == PRETRAIN_TASK:
        raise CheckpointError(
            f"{checkpoint.path} is a language-image pretraining checkpoint (a CLIP), not a trained ReID model; "
            f"start a ReID run from it (svllreid train CONFIG model.pretrained={checkpoint.path}) and use that run"
        )
    if "spec" not in meta or "config" not in meta:
        raise CheckpointError(f"{checkpoint.path} lacks the model description (spec/config); rewrite it with svllreid")
    spec = ModelSpec.from_dict(meta["spec"])
    config = config_from_dict(meta["config"], f"the config saved in {checkpoint.path}")
    fields = spec.to_dict()
    fields["image_size"] = tuple(fields["image_size"])
    quick_gelu = meta.get("quick_gelu")
    if quick_gelu is None:  # written before checkpoints recorded it: infer as the training run did
        quick_gelu = _assumed_quick_gelu(config)
        log.warning(
            "%s does not record its activation (an older checkpoint); assuming %s",
            checkpoint.path,
            "QuickGELU (OpenAI weights)" if quick_gelu else "GELU",
        )
    model = create_model(**fields, pretrained=None, force_quick_gelu=quick_gelu)
    load_model_state(model, checkpoint)
    target = resolve_device(device, DistInfo())
    model.to(target).eval()
    return TrainedModel(model, checkpoint, config, target)


def from_pretrained(name: str | Path, device: str = "auto") -> TrainedModel:
    """A trained model from a model folder (``svllreid.save_pretrained``), an ``hf-hub:ORG/NAME[@REVISION]``
    name (through huggingface_hub's cache; offline with ``HF_HUB_OFFLINE=1``), a run directory or a
    checkpoint file. The same as :func:`load_trained_model`, which every command uses."""
    return load_trained_model(name, device)


def load_index_model(
    identity: Mapping[str, Any],
    index_path: str | Path,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    *,
    compiled: bool = True,
) -> TrainedModel | QueryEncoder:
    """The network that encodes queries for an index: ``checkpoint``, or else the one the index names,
    checked to make the index's features (:meth:`TrainedModel.check_same_features`).

    With ``compiled`` (on the CPU), the checkpoint's cached :class:`QueryEncoder` when there is one that
    makes the index's features: torch alone loads it, in a fraction of the time that rebuilding the
    network takes. Otherwise the network is rebuilt, and its compiled image branch cached for next time.

    Raises:
        CheckpointError: the index names no checkpoint and none is given, the named one is gone, or the
            network or its weights differ from the index's.
    """
    named = checkpoint or identity.get("checkpoint")
    if not named:
        raise CheckpointError(f"{index_path} does not name the checkpoint it was built with; pass --checkpoint CKPT")
    if not checkpoint and not is_hub_name(str(named)) and not Path(str(named)).exists():
        raise CheckpointError(
            f"{index_path} was built with {named}, which is not there any more; pass the same model's "
            "checkpoint with --checkpoint CKPT"
        )
    if compiled and resolve_device(device, DistInfo()).type == "cpu":
        with suppress(CheckpointError):  # a run folder without checkpoints: the full path explains it
            cached = load_query_encoder(resolve_checkpoint(str(named)), identity)
            if cached is not None:
                return cached
    trained = load_trained_model(str(named), device)
    trained.check_same_features(identity, str(index_path), checkpoint=str(named))
    if compiled:
        trained.cache_query_encoder()
    return trained


def query_flip(index_meta: Mapping[str, Any]) -> bool:
    """Whether queries for an index are encoded with flipped images too: as its gallery was."""
    return bool(index_meta.get("flip", False))
