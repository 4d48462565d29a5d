"""The state dict that the CLIP-ReID and SVLL-ReID authors' ``make_model`` saves, and reading one safely.

Learnt from their model definitions (github.com/Syliz517/CLIP-ReID and github.com/BinWangGzhu/SVLL-ReID,
``model/make_model*.py`` and ``model/clip/model.py``); nothing of their code is used here. Their network
holds, under these names:

- ``image_encoder.*``: CLIP's vision tower under OpenAI's key names, its positional embedding resized to
  the ReID token grid (the patch stride is not saved, only the grid it makes);
- ``cv_embed``: the SIE table, one row per camera, view, or (camera, view) pair;
- ``bottleneck.*`` / ``bottleneck_proj.*`` and ``classifier.weight`` / ``classifier_proj.weight``: the
  BNNecks and bias-free ID classifiers on f12 and f_proj;
- ``prompt_learner.cls_ctx`` ``[ids, 4, 512]`` with the template's ``token_prefix`` ``[1, 5, 512]`` and
  ``token_suffix`` ``[1, 68, 512]`` (the CLIP-ReID and SVLL-ReID networks; their baselines have no text side);
- ``text_encoder.transformer.*``, ``.positional_embedding``, ``.ln_final.*``, ``.text_projection``: CLIP's
  text tower without its token embedding;
- SVLL-ReID only: ``image_mlp.*`` and ``text_mlp.*``, the SimCLR projectors (``layer1``, ``bn1``,
  ``layer2``, ``bn2``, ``layer3``), or ``image_mlp.{linear1,bn1,layer2}``, a SimSiam predictor.

A file saved from several GPUs has ``module.`` before every key. Their files hold fp32 tensors (their
``convert_weights`` casts CLIP's layers to fp32, whatever its name says); an fp16 file converts as well.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from svllreid.errors import ConversionError

__all__ = [
    "ACCEPTED",
    "SOURCES",
    "TEMPLATE_KEYS",
    "from_authors_names",
    "identify_foreign",
    "read_authors_file",
    "to_authors_names",
]

#: ``svllreid convert --from`` choices.
SOURCES = ("clip-reid", "svll-reid")
#: What ``convert`` accepts, for messages.
ACCEPTED = (
    "the state_dict that CLIP-ReID's or SVLL-ReID's make_model saves (keys image_encoder.*, bottleneck.*, "
    "classifier.*, and prompt_learner.* / text_encoder.* for their CLIP-ReID networks)"
)
#: The prompt template's embeddings: not weights of their own, but the rows of CLIP's token embedding that
#: spell the template (svllreid keeps them in the token embedding table; see :mod:`.importer`).
TEMPLATE_KEYS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: Their SimCLR projector's layer names -> the index in svllreid's ProjectionHead.net.
_MLP_LAYERS = {"layer1": 0, "bn1": 1, "layer2": 3, "bn2": 4, "layer3": 6}
_HEAD_NAMES = {"cv_embed": "image_encoder.sie.table"}
for _theirs, _ours in (("bottleneck", "neck.bn"), ("bottleneck_proj", "neck_proj.bn")):
    for _field in _BN_FIELDS:
        _HEAD_NAMES[f"{_theirs}.{_field}"] = f"{_ours}.{_field}"
_HEAD_NAMES["classifier.weight"] = "neck.classifier.weight"
_HEAD_NAMES["classifier_proj.weight"] = "neck_proj.classifier.weight"
for _theirs, _ours in (("image_mlp", "vis_projector"), ("text_mlp", "lang_projector")):
    for _layer, _index in _MLP_LAYERS.items():
        for _field in _BN_FIELDS:
            _HEAD_NAMES[f"{_theirs}.{_layer}.{_field}"] = f"{_ours}.net.{_index}.{_field}"
_OURS_TO_THEIRS = {ours: theirs for theirs, ours in _HEAD_NAMES.items()}


def _unwrap(obj: object) -> object:
    """The state dict inside the usual wrappers (``{"state_dict": ...}``, ``{"model": ...}``)."""
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            return obj[key]
    return obj


def read_authors_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` file, loaded weights-only (a pickle that wants to build objects or run code
    is refused, never executed), with a multi-GPU ``module.`` prefix removed.

    Raises:
        ConversionError: no such file, a truncated or unreadable file, a TorchScript archive, a pickle that
            is not plain tensors, or no tensors in it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConversionError(f"{path} not found; pass the .pth file the authors released (or your own run's)")
    if path.suffix == ".safetensors":
        raise ConversionError(
            f"{path} is a safetensors file; the authors' checkpoints are .pth files. An svllreid checkpoint needs "
            "no conversion: pass it to any command as it is"
        )
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("constants.pkl") for name in archive.namelist()):
                raise ConversionError(
                    f"{path} is a TorchScript archive, like OpenAI's CLIP release (ViT-B-16.pt), not a CLIP-ReID / "
                    "SVLL-ReID checkpoint. CLIP weights go to convert's --clip-weights (for free-text search) or to "
                    "training as model.pretrained"
                )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            raise ConversionError(
                f"{path} holds Python objects besides tensors, which loading would have to construct or run "
                f"({first}). svllreid loads checkpoints weights-only and never runs code from a file. If you trust "
                "the file, save its state_dict alone: torch.save(torch.load(FILE, weights_only=False).state_dict(), "
                "'clean.pth'), in a separate Python, then convert clean.pth"
            ) from None
        raise ConversionError(f"{path} is not a readable PyTorch file ({first}); it may be truncated") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(
            f"{path} cannot be read as a PyTorch file ({type(err).__name__}: {first}); it is probably truncated or "
            "damaged (an interrupted download?): download it again"
        ) from None
    obj = _unwrap(obj)
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"{path} holds {type(obj).__name__}, not a state dict of tensors; expected {ACCEPTED}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConversionError(f"{path} holds no tensors; expected {ACCEPTED}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def identify_foreign(state: Mapping[str, torch.Tensor]) -> str | None:
    """What another codebase's state dict looks like, or None for the authors' layout."""
    keys = set(state)
    if any(k.startswith("image_encoder.") for k in keys) and ("classifier.weight" in keys or "cv_embed" in keys):
        return None
    if any(k.startswith("base.") for k in keys) and any(k.startswith(("base.pos_embed", "base.blocks.")) for k in keys):
        return "a TransReID checkpoint (its ViT under base.*)"
    if "conv1.conv.weight" in keys and any(k.startswith("conv2.") for k in keys):
        return "torchreid's OSNet"
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith("heads.") for k in keys):
        return "a fast-reid checkpoint (backbone.* and heads.*)"
    if "visual.conv1.weight" in keys or ("token_embedding.weight" in keys and "text_projection" in keys):
        return (
            "a plain CLIP (OpenAI / open_clip layout, visual.* and the text tower), not a ReID network; use it as "
            "--clip-weights, or train from it with model.pretrained"
        )
    if "layer1.0.conv1.weight" in keys and "conv1.weight" in keys:
        return "a torchvision-style ResNet (torchreid, fast-reid or TransReID's ResNet baselines)"
    if "model.image_encoder.visual.conv1.weight" in keys:
        return "svllreid's own checkpoint tensors, which need no conversion"
    shown = ", ".join(sorted(keys)[:4])
    return f"an unrecognised layout (keys {shown}, ...)"


def from_authors_names(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str], list[str]]:
    """The authors' tensors under svllreid's names.

    Returns:
        (tensors under svllreid's names, the template's ``token_prefix`` / ``token_suffix``, keys dropped
        on purpose (a SimSiam predictor, which svllreid does not train), keys with no place in svllreid).
    """
    ours: dict[str, torch.Tensor] = {}
    template: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    simsiam = "image_mlp.linear1.weight" in state
    for key, tensor in state.items():
        if simsiam and key.startswith("image_mlp."):
            dropped.append(key)
        elif key in _HEAD_NAMES:
            ours[_HEAD_NAMES[key]] = tensor
        elif key.startswith("image_encoder."):
            ours["image_encoder.visual." + key.removeprefix("image_encoder.")] = tensor
        elif key.startswith("text_encoder.") or key == "prompt_learner.cls_ctx":
            ours[key] = tensor
        elif key in TEMPLATE_KEYS:
            template[key.rsplit(".", 1)[1]] = tensor
        else:
            unknown.append(key)
    return ours, template, dropped, unknown


def to_authors_names(
    state: Mapping[str, torch.Tensor], *, svll_heads: bool, prefix: torch.Tensor, suffix: torch.Tensor
) -> dict[str, torch.Tensor]:
    """svllreid's network tensors under the authors' names (the reverse of :func:`from_authors_names`).

    Args:
        svll_heads: keep the SimCLR projectors (SVLL-ReID's network has them, CLIP-ReID's does not and its
            loader fails on a key it lacks).
        prefix, suffix: the template's embeddings ``[1, 5, 512]`` and ``[1, 68, 512]`` as their
            prompt learner holds them.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key in _OURS_TO_THEIRS:
            if key.startswith(("vis_projector.", "lang_projector.")) and not svll_heads:
                continue
            out[_OURS_TO_THEIRS[key]] = tensor
        elif key.startswith("image_encoder.visual."):
            out["image_encoder." + key.removeprefix("image_encoder.visual.")] = tensor
        elif key.startswith("text_encoder.") or key == "prompt_learner.cls_ctx":
            out[key] = tensor
    out.pop("text_encoder.token_embedding.weight", None)  # not in their network (see the module doc)
    out["prompt_learner.token_prefix"] = prefix
    out["prompt_learner.token_suffix"] = suffix
    return {k: v.detach().cpu().contiguous().clone() for k, v in out.items()}
