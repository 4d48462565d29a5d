"""``svllreid convert --to clip-reid|svll-reid``: an svllreid model in the authors' layout, for their
``test_clipreid.py`` / ``test_svllreid.py``.

The file is the state dict their ``make_model`` builds (:func:`svllreid.convert.authors_layout.to_authors_names`),
written with ``torch.save``; beside it, a YAML config of theirs that builds the same network (``MODEL``,
``INPUT``, ``TEST``, ``DATASETS``). Unlike the BoxMOT route (image branch only, ViT-B-16 at stride 16 without
SIE), it keeps every part: SIE, overlapping patches, RN50, the text side and SVLL's projectors.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from svllreid.convert.authors_layout import SOURCES, to_authors_names
from svllreid.convert.settings import authors_dataset_name
from svllreid.errors import ConversionError
from svllreid.fileio import atomic_write, atomic_write_text, check_writable

if TYPE_CHECKING:
    from svllreid.inference.trained import TrainedModel

__all__ = ["AuthorsExport", "authors_config", "write_authors_checkpoint"]

#: What the authors' model builder knows (their ``in_planes`` table).
AUTHORS_ARCHS = ("ViT-B-16", "RN50")


@dataclass
class AuthorsExport:
    checkpoint: Path
    config: Path
    tensors: int
    notes: list[str] = field(default_factory=list)


def authors_config(trained: TrainedModel, weight: Path, dataset: str) -> str:
    """A YAML config of the authors' code that builds ``trained``'s network and tests ``weight``."""
    spec, data = trained.spec, trained.config.data
    stride = spec.stride or 16
    camera, view = spec.sie in ("camera", "camera_view"), spec.sie in ("view", "camera_view")

    def floats(values: object) -> str:
        return "[" + ", ".join(repr(float(v)) for v in values) + "]"  # type: ignore[attr-defined]

    height, width = trained.image_size
    lines = [
        f"# Written by svllreid: {trained.describe()}",
        "MODEL:",
        f"  NAME: '{spec.arch}'",
        f"  STRIDE_SIZE: [{stride}, {stride}]",
        f"  SIE_CAMERA: {camera}",
        f"  SIE_VIEW: {view}",
        f"  SIE_COE: {float(spec.sie_coef)!r}",
        "INPUT:",
        f"  SIZE_TRAIN: [{height}, {width}]",
        f"  SIZE_TEST: [{height}, {width}]",
        f"  PIXEL_MEAN: {floats(data.pixel_mean)}",
        f"  PIXEL_STD: {floats(data.pixel_std)}",
        "TEST:",
        "  NECK_FEAT: 'before'",
        "  FEAT_NORM: 'yes'",
        f"  WEIGHT: '{weight}'",
        "DATASETS:",
        f"  NAMES: ('{dataset}')",
        "  ROOT_DIR: ('your_dataset_dir')",
        "",
    ]
    return "\n".join(lines)


def write_authors_checkpoint(
    trained: TrainedModel, source: str, out: str | Path, *, any_architecture: bool = False, overwrite: bool = False
) -> AuthorsExport:
    """Write ``trained`` as the authors' ``source`` code saves it, and the config to test it with.

    Args:
        any_architecture: write another CLIP architecture in their layout too (for a fork of their code
            that builds it); by default only what their builder knows, ViT-B-16 and RN50.
        overwrite: replace an existing file and config (by default they are kept: they may be the authors'
            own download).

    Raises:
        ConversionError: a network their code cannot build (another backbone, a ResNet at last stride 2).
    """
    if source not in SOURCES:
        raise ConversionError(f"--to must be one of {', '.join(SOURCES)}; got {source!r}")
    spec = trained.spec
    if spec.arch not in AUTHORS_ARCHS and not any_architecture:
        raise ConversionError(
            f"the authors' code builds {' and '.join(AUTHORS_ARCHS)} only; this model is {spec.arch}. Export it as "
            "ONNX (svllreid export) to run it elsewhere"
        )
    from svllreid.models.image_encoders import ResNetImageEncoder

    if isinstance(trained.model.image_encoder, ResNetImageEncoder) and spec.last_stride != 1:
        raise ConversionError("the authors' RN50 runs its last stage at stride 1; this model has last_stride 2")
    out = Path(out).expanduser()
    if out.is_dir() or not out.suffix:
        out = out / f"{spec.arch}_svllreid_{source.replace('-', '')}.pth"
    existing = [p for p in (out, out.with_suffix(".yml")) if p.exists()]
    if existing and not overwrite:
        raise ConversionError(
            f"{' and '.join(str(p) for p in existing)} exist already; pass another --out, or --overwrite to replace "
            "them"
        )
    check_writable(out)
    notes = []
    dataset = authors_dataset_name(trained.trained_on)
    if dataset is None:
        dataset = "veri" if spec.kind == "vehicle" else "market1501"
        notes.append(
            f"trained on {trained.trained_on}, which the authors' code does not load: the config names {dataset} "
            f"(their template for a {spec.kind}); their test builds the network for that dataset's training "
            f"identities, so give it a dataset class with {spec.num_classes} identities"
        )
    if trained.interpolation != "bilinear":
        notes.append(
            f"this model was tested with {trained.interpolation} resizing; the authors' test resizes bilinearly"
        )
    learner = trained.model.prompt_learner
    suffix = torch.cat([learner.token_suffix, learner.token_padding], dim=1)
    tensors = to_authors_names(
        trained.model.state_dict(), svll_heads=source == "svll-reid", prefix=learner.token_prefix, suffix=suffix
    )
    if trained.text_support == "none":
        tensors = {k: v for k, v in tensors.items() if not k.startswith(("prompt_learner.", "text_encoder."))}
        notes.append("a baseline without prompts: no text side is written (load it with their make_model.py)")
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    config = atomic_write_text(out.with_suffix(".yml"), authors_config(trained, out, dataset))
    return AuthorsExport(out, config, len(tensors), notes)
