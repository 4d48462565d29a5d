"""ReID image encoders over open_clip's vision towers (METHOD.md section 2).

The modules and weights are open_clip's; what changes for ReID is the forward (three features,
SIE on the class token) and a little surgery at build time (patch stride, positional-embedding
resize, RN50 last stride).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from svllreid.models.pos_embed import resize_grid_embedding
from svllreid.models.sie import SideInfoEmbedding

__all__ = ["ImageFeatures", "ResNetImageEncoder", "ViTImageEncoder"]


@dataclass
class ImageFeatures:
    """The three features of METHOD.md 2: ``f11`` (ViT: class token after the second-last block;
    RN50: GAP of stage 3), ``f12`` (ViT: class token after the last block and LayerNorm; RN50: GAP
    of stage 4) and ``f_proj`` (ViT: f12 times CLIP's projection; RN50: attention pool)."""

    f11: torch.Tensor
    f12: torch.Tensor
    f_proj: torch.Tensor


class ViTImageEncoder(nn.Module):
    """A CLIP ViT with ReID input size, patch stride and optional SIE.

    Args:
        visual: open_clip ``VisionTransformer`` (its weights at their pretrained geometry).
        image_size: ``(H, W)`` of ReID inputs.
        stride: patch-embedding stride (kernel stays the patch size); 12 gives overlapping patches.
        sie: side-information embedding added to the class token, or None.
    """

    def __init__(
        self, visual: VisionTransformer, image_size: tuple[int, int], stride: int, sie: SideInfoEmbedding | None
    ):
        super().__init__()
        if visual.attn_pool is not None or visual.pool_type != "tok" or visual.final_ln_after_pool:
            raise ValueError("only class-token ViTs (CLIP's own pooling) are supported as ReID image encoders")
        if not visual.transformer.batch_first:
            raise ValueError("the ViT's transformer must be batch-first")
        self.visual = visual
        kernel = visual.conv1.kernel_size
        if stride < 1 or stride > kernel[0]:
            raise ValueError(f"patch stride must be in 1..{kernel[0]} (the patch size); got {stride}")
        height, width = image_size
        if height < kernel[0] or width < kernel[1]:
            raise ValueError(f"image size {image_size} is smaller than one patch {tuple(kernel)}")
        visual.conv1.stride = (stride, stride)
        self.grid = ((height - kernel[0]) // stride + 1, (width - kernel[1]) // stride + 1)
        old_grid = tuple(visual.grid_size)
        with torch.no_grad():
            resized = resize_grid_embedding(visual.positional_embedding.data, self.grid, old_grid)
        visual.positional_embedding = nn.Parameter(resized)
        visual.grid_size = self.grid
        visual.image_size = tuple(image_size)
        self.image_size = tuple(image_size)
        self.stride = stride
        self.sie = sie
        self.width = visual.conv1.out_channels
        self.feature_dims: tuple[int, int, int] = (self.width, self.width, visual.proj.shape[1])

    def embed(self, images: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens entering the transformer: ``[B, 1 + H*W, width]`` (SIE on the class token only)."""
        v = self.visual
        x = v.conv1(images)  # [B, width, gh, gw]
        x = x.flatten(2).transpose(1, 2)  # [B, gh*gw, width]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # [B, 1, width]
        if side is not None:
            cls = cls + side.to(x.dtype).unsqueeze(1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(v.patch_dropout(x))

    def _block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.visual.transformer.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward(
        self, images: torch.Tensor, camids: torch.Tensor | None = None, viewids: torch.Tensor | None = None
    ) -> ImageFeatures:
        side = self.sie(camids, viewids) if self.sie is not None else None
        x = self.embed(images, side)
        blocks = self.visual.transformer.resblocks
        for block in blocks[:-1]:
            x = self._block(block, x)
        f11 = x[:, 0]  # [B, width]
        x = self._block(blocks[-1], x)
        f12 = self.visual.ln_post(x[:, 0])  # LayerNorm is per token: the class token alone suffices
        return ImageFeatures(f11, f12, f12 @ self.visual.proj)


class ResNetImageEncoder(nn.Module):
    """CLIP's modified ResNet with ReID last stride and attention-pool positions resized.

    Args:
        visual: open_clip ``ModifiedResNet`` (weights at their pretrained geometry).
        image_size: ``(H, W)`` of ReID inputs.
        last_stride: stride of the last stage: 1 for ReID (a 16×8 map at 256×128), 2 as in CLIP.
    """

    def __init__(self, visual: ModifiedResNet, image_size: tuple[int, int], last_stride: int = 1):
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2; got {last_stride}")
        self.visual = visual
        if last_stride == 1:
            first = visual.layer4[0]
            first.avgpool = nn.Identity()  # CLIP's bottleneck downsamples by average pooling
            first.stride = 1
            if first.downsample is not None:
                first.downsample[0] = nn.Identity()
        reduction = 32 if last_stride == 2 else 16
        height, width = image_size
        if height % reduction or width % reduction:
            raise ValueError(f"RN image size must be a multiple of {reduction} per side; got {image_size}")
        self.grid = (height // reduction, width // reduction)
        pool = visual.attnpool
        old_side = visual.image_size // 32
        with torch.no_grad():
            resized = resize_grid_embedding(pool.positional_embedding.data, self.grid, (old_side, old_side))
        pool.positional_embedding = nn.Parameter(resized)
        self.image_size = tuple(image_size)
        self.stride = last_stride
        self.sie = None
        stage4 = visual.layer4[-1].conv3.out_channels
        stage3 = visual.layer3[-1].conv3.out_channels
        self.width = stage4
        self.feature_dims: tuple[int, int, int] = (stage3, stage4, pool.c_proj.out_features)

    def forward(
        self, images: torch.Tensor, camids: torch.Tensor | None = None, viewids: torch.Tensor | None = None
    ) -> ImageFeatures:
        v = self.visual
        x = v.layer2(v.layer1(v.stem(images)))
        x3 = v.layer3(x)  # [B, 16 * width, H/16, W/16]
        x4 = v.layer4(x3)
        return ImageFeatures(x3.mean(dim=(2, 3)), x4.mean(dim=(2, 3)), v.attnpool(x4))
