"""State dicts in the layout the CLIP-ReID / SVLL-ReID authors' ``make_model`` saves, built here from its
description (key names and shapes; see svllreid/convert/authors_layout.py), at svllreid's tiny widths.

They are made from an open_clip CLIP directly, not through svllreid's converter, so a test of the converter
against them checks its names, not its own inverse.
"""

from __future__ import annotations

import math
from pathlib import Path

import open_clip
import torch

import svllreid.models.pretrained  # noqa: F401 (registers the tiny architectures with open_clip)

TEMPLATE = {"person": "A photo of a X X X X person.", "vehicle": "A photo of a X X X X vehicle."}


def tiny_clip(arch: str, seed: int = 0) -> torch.nn.Module:
    """A random CLIP whose weights are fp16 values held in fp32, as OpenAI's release stores them."""
    torch.manual_seed(seed)
    clip = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True).eval()
    with torch.no_grad():
        for tensor in clip.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return clip


def authors_state(
    arch: str = "svll-tiny-vit",
    *,
    classes: int = 7,
    size: tuple[int, int] = (64, 32),
    stride: int = 8,
    sie_rows: int = 0,
    text: bool = True,
    svll_heads: str | None = None,
    kind: str = "person",
    module_prefix: bool = False,
    seed: int = 0,
    clip: torch.nn.Module | None = None,
    clip_dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """One authors' checkpoint (their code saves fp32 throughout; ``clip_dtype`` float16 makes CLIP's
    tensors fp16, as a file cast for a GPU would hold them).

    Args:
        sie_rows: rows of the SIE table ``cv_embed`` (0: no SIE).
        text: the CLIP-ReID network (prompts and text encoder); False: their baseline.
        svll_heads: None, ``simclr`` (image_mlp / text_mlp projectors) or ``simsiam`` (image_mlp predictor).
        module_prefix: as saved from several GPUs.
    """
    clip = clip if clip is not None else tiny_clip(arch, seed)
    generator = torch.Generator().manual_seed(seed + 1)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    state = clip.state_dict()
    out: dict[str, torch.Tensor] = {}
    vit = "visual.proj" in state
    for key, tensor in state.items():
        if key.startswith("visual."):
            out["image_encoder." + key[len("visual.") :]] = tensor.to(clip_dtype)
    if vit:
        patch = state["visual.conv1.weight"].shape[-1]
        grid = ((size[0] - patch) // stride + 1) * ((size[1] - patch) // stride + 1)
        width = state["visual.conv1.weight"].shape[0]
        out["image_encoder.positional_embedding"] = (randn(1 + grid, width) * 0.02).to(clip_dtype)
        f12, fproj = width, state["visual.proj"].shape[1]
    else:
        grid = (size[0] // 16) * (size[1] // 16)
        pos = state["visual.attnpool.positional_embedding"]
        out["image_encoder.attnpool.positional_embedding"] = (
            randn(1 + grid, pos.shape[1]) / math.sqrt(pos.shape[1])
        ).to(clip_dtype)
        f12, fproj = state["visual.layer4.0.conv3.weight"].shape[0], state["visual.attnpool.c_proj.weight"].shape[0]
    if sie_rows:
        out["cv_embed"] = randn(sie_rows, f12) * 0.02
    for name, dim in (("bottleneck", f12), ("bottleneck_proj", fproj)):
        out[f"{name}.weight"] = 1 + 0.1 * randn(dim)
        out[f"{name}.bias"] = torch.zeros(dim)
        out[f"{name}.running_mean"] = 0.1 * randn(dim)
        out[f"{name}.running_var"] = 1 + 0.1 * randn(dim).abs()
        out[f"{name}.num_batches_tracked"] = torch.tensor(120)
    out["classifier.weight"] = 0.001 * randn(classes, f12)
    out["classifier_proj.weight"] = 0.001 * randn(classes, fproj)
    if text:
        width = state["positional_embedding"].shape[1]
        tokens = open_clip.get_tokenizer(arch)([TEMPLATE[kind]])
        with torch.no_grad():
            embedded = clip.token_embedding(tokens).to(clip_dtype)
        out["prompt_learner.cls_ctx"] = 0.02 * randn(classes, 4, width)
        out["prompt_learner.token_prefix"] = embedded[:, :5].clone()
        out["prompt_learner.token_suffix"] = embedded[:, 9:].clone()
        for key, tensor in state.items():
            if key.startswith(("transformer.", "ln_final.")) or key in ("positional_embedding", "text_projection"):
                out["text_encoder." + key] = tensor.to(clip_dtype)
    text_width = state["text_projection"].shape[0]
    if svll_heads == "simclr":
        for head, dim in (("image_mlp", f12), ("text_mlp", text_width)):
            for layer, (fan_in, fan_out) in (("layer1", (dim, 32)), ("layer2", (32, 32)), ("layer3", (32, 16))):
                out[f"{head}.{layer}.weight"] = 0.1 * randn(fan_out, fan_in)
                out[f"{head}.{layer}.bias"] = 0.1 * randn(fan_out)
            for bn in ("bn1", "bn2"):
                out[f"{head}.{bn}.weight"] = torch.rand(32, generator=generator)
                out[f"{head}.{bn}.bias"] = torch.rand(32, generator=generator)
                out[f"{head}.{bn}.running_mean"] = torch.zeros(32)
                out[f"{head}.{bn}.running_var"] = torch.ones(32)
                out[f"{head}.{bn}.num_batches_tracked"] = torch.tensor(0)
    elif svll_heads == "simsiam":
        out["image_mlp.linear1.weight"] = randn(16, f12)
        out["image_mlp.linear1.bias"] = randn(16)
        out["image_mlp.bn1.weight"] = torch.ones(16)
        out["image_mlp.bn1.bias"] = torch.zeros(16)
        out["image_mlp.bn1.running_mean"] = torch.zeros(16)
        out["image_mlp.bn1.running_var"] = torch.ones(16)
        out["image_mlp.bn1.num_batches_tracked"] = torch.tensor(0)
        out["image_mlp.layer2.weight"] = randn(f12, 16)
        out["image_mlp.layer2.bias"] = randn(f12)
    if module_prefix:
        out = {"module." + k: v for k, v in out.items()}
    return out


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def vit_features(
    state: dict[str, torch.Tensor],
    images: torch.Tensor,
    stride: int,
    cams: torch.Tensor | None,
    coef: float,
    heads: int,
) -> torch.Tensor:
    """The authors' test feature of a ViT checkpoint computed straight from its tensors (fp32): patches at
    ``stride``, SIE added to the class token after the positions, QuickGELU blocks, then f12 ++ f_proj."""
    import torch.nn.functional as F

    s = {k: v.float() for k, v in state.items()}
    x = F.conv2d(images, s["image_encoder.conv1.weight"], stride=stride).flatten(2).transpose(1, 2)
    cls = s["image_encoder.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + s["image_encoder.positional_embedding"]
    if cams is not None:
        x[:, 0] = x[:, 0] + coef * s["cv_embed"][cams]
    width = x.shape[-1]
    x = F.layer_norm(x, (width,), s["image_encoder.ln_pre.weight"], s["image_encoder.ln_pre.bias"])
    block = 0
    while f"image_encoder.transformer.resblocks.{block}.ln_1.weight" in s:
        p = f"image_encoder.transformer.resblocks.{block}."
        h = F.layer_norm(x, (width,), s[p + "ln_1.weight"], s[p + "ln_1.bias"])
        q, k, v = F.linear(h, s[p + "attn.in_proj_weight"], s[p + "attn.in_proj_bias"]).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

        attn = F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(attn, s[p + "attn.out_proj.weight"], s[p + "attn.out_proj.bias"])
        h = F.layer_norm(x, (width,), s[p + "ln_2.weight"], s[p + "ln_2.bias"])
        h = F.linear(h, s[p + "mlp.c_fc.weight"], s[p + "mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + F.linear(h, s[p + "mlp.c_proj.weight"], s[p + "mlp.c_proj.bias"])
        block += 1
    f12 = F.layer_norm(x[:, 0], (width,), s["image_encoder.ln_post.weight"], s["image_encoder.ln_post.bias"])
    return F.normalize(torch.cat([f12, f12 @ s["image_encoder.proj"]], dim=1), dim=1)
