"""The test-time image path of a ReID network as a module of its own: what ``extract`` computes, made
to be traced and exported (TorchScript for fast searches, ONNX and TorchScript files for deployment).

``images [B, 3, H, W]`` (normalised as the test pipeline does) in, L2-normalised features ``[B, D]``
(f12 and f_proj before the BNNecks) out. It holds the image encoder only; the text encoder, prompts and
heads take no part. Cameras and views are unknown (-1) unless ``side_info`` asks for a second input,
``side_info [B, 2]`` int64 (camera, view; -1 unknown), for networks with SIE.
"""

from __future__ import annotations

import torch
from torch import nn

#: The sub-network that makes the test feature (its tensors keep their names in a traced module).
IMAGE_ENCODER = "image_encoder"


class ImagePath(nn.Module):
    """See the module docstring; ``model`` is a :class:`svllreid.models.reid_model.ReIDModel`."""

    def __init__(self, model: nn.Module, *, side_info: bool = False):
        super().__init__()
        from svllreid.models.reid_model import retrieval_feature  # loaded already where a network exists

        self.image_encoder = getattr(model, IMAGE_ENCODER)
        self.feature = retrieval_feature
        self.side_info = side_info

    def forward(self, images: torch.Tensor, side_info: torch.Tensor | None = None) -> torch.Tensor:
        if side_info is None:
            unknown = torch.full((images.shape[0],), -1, dtype=torch.long, device=images.device)
            camids, viewids = unknown, unknown
        else:
            camids, viewids = side_info[:, 0], side_info[:, 1]
        return self.feature(self.image_encoder(images, camids, viewids))
