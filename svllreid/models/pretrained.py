"""Build open_clip CLIP models and load pretrained weights, checked key by key.

``pretrained`` may be:

- an OpenAI CLIP TorchScript archive (``ViT-B-16.pt``, ``RN50.pt``); QuickGELU is then used, as
  OpenAI trained with it;
- an open_clip checkpoint (a state dict, a ``{"state_dict": ...}`` training checkpoint, or a
  ``.safetensors`` file);
- an open_clip pretrained tag such as ``openai`` or ``laion2b_s34b_b88k``, downloaded by open_clip
  when the machine is online;
- a tag of the weights shipped in the package: ``svll-synth`` (``svll-tiny-vit`` pretrained on
  captioned synthetic pedestrians; offline, no download).

Weights are loaded into the model at its pretrained geometry (224×224 for CLIP); the ReID
encoders then resize positional embeddings. Missing, unexpected or mis-shaped keys are an error
that lists them (and suggests architectures the file fits): nothing loads silently wrong.
Plain torch files are read with ``weights_only=True``, so no arbitrary object is unpickled.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import socket
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip
import torch
from open_clip.model import resize_pos_embed, resize_text_pos_embed
from torch import nn

from svllreid.errors import PretrainedError

__all__ = [
    "CONFIG_DIR",
    "OPENAI_EXTRA_KEYS",
    "SHIPPED_DIR",
    "SHIPPED_WEIGHTS",
    "WEIGHT_SUFFIXES",
    "LoadReport",
    "available_architectures",
    "build_clip",
    "check_architecture",
    "load_checked",
    "native_image_size",
    "read_weights",
    "shipped_weights_path",
    "suggest_architectures",
]

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "model_configs"
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

open_clip.add_model_config(CONFIG_DIR)

#: Weights shipped inside the package, by tag and architecture (made by ``svllreid pretrain``; see
#: docs/WEIGHTS.md for how, on what, and how well).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "resources" / "weights"
SHIPPED_WEIGHTS: dict[str, dict[str, str]] = {
    "svll-synth": {"svll-tiny-vit": "svll-synth-tiny-vit.safetensors"},
}


@dataclass
class LoadReport:
    """How a CLIP model was initialised."""

    arch: str
    source: str = "random initialisation"
    kind: str = "none"  # "none", "openai-archive", "state-dict", "tag", "shipped"
    quick_gelu: bool = False
    notes: list[str] = field(default_factory=list)


def available_architectures() -> list[str]:
    return open_clip.list_models()


def check_architecture(arch: str) -> None:
    if arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise PretrainedError(
            f"unknown architecture {arch!r}.{hint} Any open_clip CLIP model name works, e.g. ViT-B-16, RN50, "
            "or the tiny test models svll-tiny-vit and svll-tiny-rn"
        )


def shipped_weights_path(arch: str, tag: str | None) -> Path | None:
    """The package's own weights file for ``tag`` (e.g. ``svll-synth``) and ``arch``; None when
    ``tag`` is not one of the shipped tags.

    Raises:
        PretrainedError: a shipped tag that has no weights for ``arch``, or a missing file.
    """
    if not tag or tag not in SHIPPED_WEIGHTS:
        return None
    files = SHIPPED_WEIGHTS[tag]
    if arch not in files:
        raise PretrainedError(f"the shipped '{tag}' weights exist for {', '.join(files)} only, not for {arch}")
    path = SHIPPED_DIR / files[arch]
    if not path.is_file():
        raise PretrainedError(
            f"the shipped '{tag}' weights of {arch} are missing from the installation ({path}); reinstall svllreid "
            "or remake them with 'svllreid pretrain configs/pretrain/svll_synth_vit.yaml' (docs/WEIGHTS.md)"
        )
    return path


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """Read a weights file. Returns the state dict and whether it was an OpenAI-style archive."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path))), False
        if _is_torchscript(path):
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is OpenAI's release format
                warnings.simplefilter("ignore", FutureWarning)
                archive = torch.jit.load(str(path), map_location="cpu")
            return dict(archive.state_dict()), True
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except PretrainedError:
        raise
    except Exception as err:
        raise PretrainedError(
            f"cannot read weights from {path}: {type(err).__name__}: {str(err).splitlines()[0]}. Expected an OpenAI "
            "CLIP archive (e.g. ViT-B-16.pt), an open_clip checkpoint or a .safetensors file"
        ) from err
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedError(f"{path} does not hold a state dict of tensors")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, False


def suggest_architectures(state: Mapping[str, torch.Tensor]) -> list[str]:
    """open_clip model names whose vision and text shapes fit a state dict (best effort)."""
    matches = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if "text_projection" not in state or cfg.get("embed_dim") != state["text_projection"].shape[-1]:
            continue
        if "ln_final.weight" in state and text.get("width", 512) != state["ln_final.weight"].shape[0]:
            continue
        conv = state.get("visual.conv1.weight")
        if "visual.proj" in state and conv is not None and isinstance(vision.get("layers"), int):
            patch = vision.get("patch_size")
            if vision.get("width") == conv.shape[0] and patch == conv.shape[-1]:
                layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
                if layers == vision["layers"]:
                    matches.append(name)
        elif "visual.layer1.0.conv1.weight" in state and isinstance(vision.get("layers"), list):
            counts = [len({k.split(".")[2] for k in state if k.startswith(f"visual.layer{i}.")}) for i in (1, 2, 3, 4)]
            if (
                counts == list(vision["layers"])
                and vision.get("width") == state["visual.layer1.0.conv1.weight"].shape[0]
            ):
                matches.append(name)
    return matches


def load_checked(clip: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str) -> None:
    """Load ``state`` into ``clip``; any missing, unexpected or mis-shaped key is an error."""
    state = {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}
    resize_pos_embed(state, clip)  # checkpoints trained at another resolution
    resize_text_pos_embed(state, clip)
    expected = clip.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        fits = suggest_architectures(state)
        lines = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
            if keys:
                lines.append(f"{len(keys)} {label} keys, e.g. {', '.join(keys[:3])}")
        hint = f" The file fits: {', '.join(fits)}." if fits else ""
        raise PretrainedError(
            f"weights in {source} do not match architecture {arch!r}: {'; '.join(lines)}.{hint} "
            "Pass the architecture the file was made for (--arch / model.arch)."
        )
    clip.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def _cached_download(cfg: Mapping[str, str]) -> Path | None:
    """The weights of a pretrained config if open_clip already downloaded them, else None."""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        # "org/repo/" means open_clip's default file names; "org/repo/file" names the file.
        if hub.endswith("/"):
            repo, names = hub[:-1], ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        else:
            repo, name = hub.rsplit("/", 1)
            names = [name]
        for filename in names:
            cached = try_to_load_from_cache(repo, filename)
            if isinstance(cached, str):
                return Path(cached)
    url = cfg.get("url", "")
    if url:
        cached_file = Path("~/.cache/clip").expanduser() / Path(urlparse(url).path).name
        if cached_file.is_file():
            return cached_file
    return None


def _reachable(cfg: Mapping[str, str], timeout: float = 3.0) -> bool:
    """Whether the download host answers at all (offline machines fail here at once, not after
    a minute of retries)."""
    host = "huggingface.co" if cfg.get("hf_hub") else urlparse(cfg.get("url", "")).hostname
    if not host:
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _resolve_tag(arch: str, tag: str) -> tuple[Path, bool]:
    """Find (in open_clip's caches) or download the weights of a pretrained tag."""
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        listed = ", ".join(tags) if tags else "none"
        raise PretrainedError(
            f"{tag!r} is neither a weights file nor an open_clip pretrained tag of {arch}. Tags of {arch}: {listed}"
        )
    quick = bool(cfg.get("quick_gelu", False))
    cached = _cached_download(cfg)
    if cached is not None:
        return cached, quick
    offline_hint = (
        f"fetch them on a machine that is online and pass the file, e.g. pretrained=/path/to/{arch}.pt "
        "(OpenAI archive) or an open_clip checkpoint"
    )
    if not _reachable(cfg):
        raise PretrainedError(
            f"the '{tag}' weights of {arch} are not cached and their download host cannot be reached "
            f"(this machine looks offline); {offline_hint}"
        )
    try:
        path = open_clip.download_pretrained(cfg)
    except Exception as err:
        raise PretrainedError(
            f"could not download the '{tag}' weights of {arch} ({type(err).__name__}: "
            f"{str(err).splitlines()[0]}); {offline_hint}"
        ) from err
    return Path(path), quick


def build_clip(
    arch: str, pretrained: str | None = None, force_quick_gelu: bool | None = None
) -> tuple[nn.Module, LoadReport]:
    """An open_clip CLIP model of ``arch`` with weights from ``pretrained`` (None: random).

    Args:
        arch: open_clip model name (``ViT-B-16``, ``RN50``, ``svll-tiny-vit`` ...).
        pretrained: weights file or open_clip tag, see the module docstring.
        force_quick_gelu: True forces QuickGELU. None uses it for OpenAI weights (they were
            trained with it) and otherwise follows the architecture's config (names ending in
            ``-quickgelu`` use it); False always follows the config.

    Raises:
        PretrainedError: unknown architecture, unreadable or mismatched weights, unknown tag,
            or a download that failed (e.g. offline).
    """
    check_architecture(arch)
    if pretrained is not None and pretrained.strip().lower() in ("", "none", "null", "random"):
        pretrained = None  # model.pretrained=none on the command line: random initialisation
    report = LoadReport(arch)
    state: dict[str, torch.Tensor] | None = None
    openai = False
    shipped = shipped_weights_path(arch, pretrained)
    if shipped is not None:
        state, _ = read_weights(shipped)
        report.source, report.kind = f"svllreid's '{pretrained}' weights ({shipped.name})", "shipped"
    elif pretrained:
        path = Path(pretrained).expanduser()
        if path.is_file():
            state, openai = read_weights(path)
            report.source, report.kind = str(path), "openai-archive" if openai else "state-dict"
        elif path.suffix in WEIGHT_SUFFIXES or "/" in pretrained or path.exists():
            raise PretrainedError(f"pretrained weights file not found: {path}")
        else:
            file, openai = _resolve_tag(arch, pretrained)
            state, archive = read_weights(file)
            openai = openai or archive
            report.source, report.kind = f"open_clip tag '{pretrained}' ({file})", "tag"
    quick = force_quick_gelu if force_quick_gelu is not None else openai
    with _quiet_root_warning("No pretrained weights loaded"):  # we load (and report) weights ourselves
        clip = open_clip.create_model(arch, pretrained=None, force_quick_gelu=bool(quick))
    report.quick_gelu = _uses_quick_gelu(clip)
    if state is not None:
        load_checked(clip, state, report.source, arch)
        log.info("loaded %s weights from %s", arch, report.source)
    return clip.float().eval(), report


def native_image_size(clip: nn.Module) -> tuple[int, int]:
    """The (height, width) a CLIP's image tower was built for (and its weights are stored at)."""
    visual: Any = clip.visual  # an open_clip vision tower (untyped)
    size = visual.image_size
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


@contextlib.contextmanager
def _quiet_root_warning(prefix: str) -> Iterator[None]:
    """Drop root-logger records starting with ``prefix`` (open_clip logs through the root logger)."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _uses_quick_gelu(model: nn.Module) -> bool:
    return any(type(m).__name__ == "QuickGELU" for m in model.modules())
