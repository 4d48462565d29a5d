"""The CLIP-ReID / SVLL-ReID network: image encoder, prompt learner, text encoder and heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from svllreid.models.heads import BNNeckClassifier, ProjectionHead
from svllreid.models.image_encoders import ImageFeatures, ResNetImageEncoder, ViTImageEncoder
from svllreid.models.prompts import PromptLearner
from svllreid.models.text_encoder import TextEncoder

if TYPE_CHECKING:
    from svllreid.models.pretrained import LoadReport

__all__ = ["ReIDModel", "ReIDOutput", "retrieval_feature"]


@dataclass
class ReIDOutput:
    """What the training forward returns: the three image features and the ID logits of the
    two BNNeck classifiers (on ``f12`` and on ``f_proj``)."""

    f11: torch.Tensor
    f12: torch.Tensor
    f_proj: torch.Tensor
    logits: torch.Tensor
    logits_proj: torch.Tensor


def retrieval_feature(feats: ImageFeatures) -> torch.Tensor:
    """The test feature of METHOD.md: f12 and f_proj concatenated (before the BNNecks), L2-normalised."""
    return F.normalize(torch.cat([feats.f12, feats.f_proj], dim=1), dim=1)


class ReIDModel(nn.Module):
    """Use :func:`svllreid.create_model` to build one.

    - :meth:`encode_image`: the L2-normalised test feature (f12 and f_proj concatenated before
      the BNNecks), for retrieval.
    - :meth:`encode_text`: text features of training identities through their learned prompts.
    - :meth:`forward`: the stage-2 training outputs (:class:`ReIDOutput`).
    - :meth:`prepare_stage`: which parameters train in stage 1 and stage 2.
    """

    # Set by the factory (svllreid.models.factory): the structure the model was built from (a ModelSpec;
    # Any, since importing it here, even for the type checker, would make an import cycle), and (by
    # create_model only) how its CLIP weights were initialised.
    spec: Any
    load_report: LoadReport

    def __init__(
        self,
        image_encoder: ViTImageEncoder | ResNetImageEncoder,
        text_encoder: TextEncoder,
        prompt_learner: PromptLearner,
        *,
        lang_projector: ProjectionHead | None = None,
        vis_projector: ProjectionHead | None = None,
    ):
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.text_encoder.requires_grad_(False)  # frozen in both stages
        self.prompt_learner = prompt_learner
        _, dim12, dim_proj = image_encoder.feature_dims
        if dim_proj != text_encoder.output_dim:
            raise ValueError(f"image projection ({dim_proj}) and text projection ({text_encoder.output_dim}) differ")
        num_classes = prompt_learner.num_classes
        self.neck = BNNeckClassifier(dim12, num_classes)
        self.neck_proj = BNNeckClassifier(dim_proj, num_classes)
        self.lang_projector = lang_projector
        self.vis_projector = vis_projector
        self.feature_dim = dim12 + dim_proj
        # Loaded weights replace the token embedding the prompt template was computed from.
        self.register_load_state_dict_post_hook(_refresh_prompt_template)

    @property
    def num_classes(self) -> int:
        return self.prompt_learner.num_classes

    def image_features(
        self, images: torch.Tensor, camids: torch.Tensor | None = None, viewids: torch.Tensor | None = None
    ) -> ImageFeatures:
        """The backbone's f11, f12 and f_proj (SIE applied when the model has it)."""
        return self.image_encoder(images, camids, viewids)

    def forward(
        self, images: torch.Tensor, camids: torch.Tensor | None = None, viewids: torch.Tensor | None = None
    ) -> ReIDOutput:
        return self.outputs(self.image_features(images, camids, viewids))

    def outputs(self, feats: ImageFeatures) -> ReIDOutput:
        """Training outputs of already computed image features (the BNNeck classifiers applied)."""
        return ReIDOutput(feats.f11, feats.f12, feats.f_proj, self.neck(feats.f12), self.neck_proj(feats.f_proj))

    def encode_image(
        self, images: torch.Tensor, camids: torch.Tensor | None = None, viewids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """L2-normalised ``[B, feature_dim]`` test features (f12 ++ f_proj, before the BNNecks)."""
        return retrieval_feature(self.image_features(images, camids, viewids))

    def encode_prompts(self, prompts: torch.Tensor) -> torch.Tensor:
        """Text features of prompt embeddings ``[B, L, D]`` built by :attr:`prompt_learner` (or
        augmented from them): ``[B, proj_dim]``, not normalised."""
        learner = self.prompt_learner
        eot = learner.eot_index(prompts.shape[0], prompts.device)
        return self.text_encoder(prompts, eot, length=learner.length)

    def encode_text(self, pids: torch.Tensor) -> torch.Tensor:
        """Text features of training identities ``pids`` through their learned prompts."""
        return self.encode_prompts(self.prompt_learner(pids))

    def stage_parameters(self, stage: int, train_lang_projector: bool = False) -> dict[str, nn.Parameter]:
        """Parameters that train in ``stage``.

        Stage 1: the identity word vectors (and the language projector if ``train_lang_projector``;
        the reference leaves it at its random initialisation). Stage 2: the image encoder with its
        SIE, the BNNecks (their biases stay frozen at zero), the classifiers and the vision
        projector. The text encoder never trains.
        """
        if stage == 1:
            prefixes = ["prompt_learner.cls_ctx"] + (["lang_projector."] if train_lang_projector else [])
        elif stage == 2:
            prefixes = ["image_encoder.", "neck.", "neck_proj.", "vis_projector."]
        else:
            raise ValueError(f"stage must be 1 or 2; got {stage}")
        frozen = {"neck.bn.bias", "neck_proj.bn.bias"}
        return {
            name: param
            for name, param in self.named_parameters()
            if any(name.startswith(p) for p in prefixes) and name not in frozen
        }

    def prepare_stage(self, stage: int, train_lang_projector: bool = False) -> dict[str, nn.Parameter]:
        """Set ``requires_grad`` for ``stage`` (everything else frozen) and return what trains."""
        trainable = self.stage_parameters(stage, train_lang_projector)
        for name, param in self.named_parameters():
            param.requires_grad_(name in trainable)
        return trainable


def _refresh_prompt_template(model: nn.Module, incompatible_keys: object) -> None:
    """After ``load_state_dict``: the prompt template from the loaded token embedding."""
    assert isinstance(model, ReIDModel)
    model.prompt_learner.refresh_template(model.text_encoder)
