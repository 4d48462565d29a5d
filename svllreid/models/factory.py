"""``create_model``: the one entry point that builds a ReID network."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import open_clip
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from svllreid.models.heads import BatchNormInit, ProjectionHead
from svllreid.models.image_encoders import ResNetImageEncoder, ViTImageEncoder
from svllreid.models.pretrained import LoadReport, build_clip
from svllreid.models.prompts import PromptLearner
from svllreid.models.reid_model import ReIDModel
from svllreid.models.sie import SideInfoEmbedding, SieMode
from svllreid.models.text_encoder import TextEncoder

log = logging.getLogger(__name__)


#: Spec fields that determine a network's tensors: two specs that agree on them build networks whose
#: weights load into each other. Not among them: the SIE coefficient (a scale, not a tensor) and the
#: self-supervision heads (training only: a stage-2 run may add them to a stage-1 checkpoint, and they
#: never touch the test features).
STRUCTURE_FIELDS = (
    "arch",
    "num_classes",
    "num_cameras",
    "num_views",
    "image_size",
    "stride",
    "sie",
    "kind",
    "last_stride",
)


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a model's structure (saved with checkpoints and compared on load)."""

    arch: str
    num_classes: int
    num_cameras: int = 0
    num_views: int = 0
    image_size: tuple[int, int] = (256, 128)
    stride: int | None = None
    sie: SieMode | None = None
    sie_coef: float = 1.0
    kind: str = "person"
    last_stride: int = 1
    lang_ssl_head: bool = False
    vis_ssl_head: bool = False
    ssl_hidden_dim: int = 4096
    ssl_out_dim: int = 256

    def structure_differences(
        self, other: ModelSpec | Mapping[str, Any], *, every_field: bool = False
    ) -> dict[str, tuple[Any, Any]]:
        """The fields where ``other`` (a spec or its saved dict) differs from this one, each with (this
        value, other value): those of :data:`STRUCTURE_FIELDS` (empty: the same network, whose weights
        load into each other), or with ``every_field`` all of them (empty: the same network with the same
        heads, as feature files and indexes require along with the same weights). The one definition of
        "the same network", used by training and search."""
        theirs = other.to_dict() if isinstance(other, ModelSpec) else dict(other)
        ours = self.to_dict()
        fields = sorted(set(ours) | set(theirs)) if every_field else STRUCTURE_FIELDS
        return {k: (ours.get(k), theirs.get(k)) for k in fields if ours.get(k) != theirs.get(k)}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model spec fields {unknown}")
        values = dict(values)
        if "image_size" in values:
            values["image_size"] = tuple(values["image_size"])
        return cls(**values)


def create_model(
    arch: str,
    num_classes: int,
    *,
    num_cameras: int = 0,
    num_views: int = 0,
    image_size: tuple[int, int] = (256, 128),
    stride: int | None = None,
    sie: SieMode | Literal["none"] | None = None,
    sie_coef: float = 1.0,
    pretrained: str | None = None,
    kind: str = "person",
    last_stride: int = 1,
    lang_ssl_head: bool = False,
    vis_ssl_head: bool = False,
    ssl_hidden_dim: int = 4096,
    ssl_out_dim: int = 256,
    force_quick_gelu: bool | None = None,
    vis_ssl_bn_init: BatchNormInit = "uniform",
) -> ReIDModel:
    """Build a CLIP-ReID / SVLL-ReID network on an open_clip architecture.

    Example:
        The tiny ViT with svllreid's shipped ``svll-synth`` weights, for 10 training identities:

        >>> import torch
        >>> from svllreid.models import create_model
        >>> model = create_model("svll-tiny-vit", 10, image_size=(64, 32), stride=8, pretrained="svll-synth")
        >>> model.eval().encode_image(torch.zeros(2, 3, 64, 32)).shape
        torch.Size([2, 192])

    Args:
        arch: open_clip model name: ``ViT-B-16``, ``RN50``, any CLIP ViT or modified-ResNet of
            open_clip, or the tiny test models ``svll-tiny-vit`` / ``svll-tiny-rn``.
        num_classes: training identities (one prompt and one classifier row each).
        num_cameras, num_views: sizes of the SIE tables (when SIE uses them).
        image_size: ``(H, W)`` of inputs: 256×128 for persons, 256×256 for vehicles.
        stride: ViT patch stride (default: the patch size; 12 gives overlapping patches).
            Not used by ResNets.
        sie: ``None``/``"none"``, ``"camera"``, ``"view"`` or ``"camera_view"`` (ViT only).
        sie_coef: SIE coefficient.
        pretrained: OpenAI archive, open_clip checkpoint or open_clip tag; None = random init.
        kind: ``"person"`` or ``"vehicle"`` (prompt template).
        last_stride: ResNet last-stage stride (1 for ReID, 2 as in CLIP).
        lang_ssl_head, vis_ssl_head: build SVLL's language / vision projection heads.
        ssl_hidden_dim, ssl_out_dim: their widths (4096 and 256 in the paper).
        force_quick_gelu: see :func:`svllreid.models.pretrained.build_clip`.
        vis_ssl_bn_init: BatchNorm init of the vision projector: ``uniform`` (U(0, 1) weight and bias,
            the reference) or ``pytorch`` (weight 1, bias 0). An init, not structure: not in the spec.

    Raises:
        ValueError: an option that does not fit the architecture (``PretrainedError`` for weights).
    """
    if sie == "none":
        sie = None
    spec = ModelSpec(
        arch=arch,
        num_classes=num_classes,
        num_cameras=num_cameras,
        num_views=num_views,
        image_size=(int(image_size[0]), int(image_size[1])),
        stride=stride,
        sie=sie,
        sie_coef=sie_coef,
        kind=kind,
        last_stride=last_stride,
        lang_ssl_head=lang_ssl_head,
        vis_ssl_head=vis_ssl_head,
        ssl_hidden_dim=ssl_hidden_dim,
        ssl_out_dim=ssl_out_dim,
    )
    clip, report = build_clip(arch, pretrained, force_quick_gelu)
    model = model_from_clip(clip, spec, vis_ssl_bn_init)
    model.load_report = report
    return model


def model_from_clip(clip: Any, spec: ModelSpec, vis_ssl_bn_init: BatchNormInit = "uniform") -> ReIDModel:
    """Wrap an open_clip CLIP model (already holding its weights) as a ReID model of ``spec``."""
    visual = clip.visual
    image_encoder: ViTImageEncoder | ResNetImageEncoder
    if isinstance(visual, VisionTransformer):
        patch = visual.conv1.kernel_size[0]
        side = None
        if spec.sie is not None:
            side = SideInfoEmbedding(
                spec.sie,
                visual.conv1.out_channels,
                num_cameras=spec.num_cameras,
                num_views=spec.num_views,
                coef=spec.sie_coef,
            )
        image_encoder = ViTImageEncoder(visual, spec.image_size, spec.stride or patch, side)
    elif isinstance(visual, ModifiedResNet):
        if spec.stride is not None:
            raise ValueError(f"{spec.arch} is a ResNet: it has no patch stride (use last_stride)")
        if spec.sie is not None:
            raise ValueError(f"SIE is defined for ViT class tokens; {spec.arch} is a ResNet (use sie=None)")
        image_encoder = ResNetImageEncoder(visual, spec.image_size, spec.last_stride)
    else:
        raise ValueError(f"{spec.arch}: unsupported vision tower {type(visual).__name__} (need a CLIP ViT or ResNet)")
    text_encoder = TextEncoder(clip)
    prompt_learner = PromptLearner(spec.num_classes, text_encoder, open_clip.get_tokenizer(spec.arch), spec.kind)
    lang = vis = None
    if spec.lang_ssl_head:
        lang = ProjectionHead(text_encoder.output_dim, hidden_dim=spec.ssl_hidden_dim, out_dim=spec.ssl_out_dim)
    if spec.vis_ssl_head:
        # The SSL feature is f12 (ViT class token before the projection; RN50 stage-4 GAP).
        vis = ProjectionHead(
            image_encoder.feature_dims[1],
            hidden_dim=spec.ssl_hidden_dim,
            out_dim=spec.ssl_out_dim,
            kaiming=True,
            bn_init=vis_ssl_bn_init,
        )
    model = ReIDModel(image_encoder, text_encoder, prompt_learner, lang_projector=lang, vis_projector=vis)
    model.spec = spec
    return model


__all__ = ["LoadReport", "ModelSpec", "create_model", "model_from_clip"]
