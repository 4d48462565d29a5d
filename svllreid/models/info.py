"""Size and cost of a ReID model (``svllreid model info``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

from svllreid.models.image_encoders import ViTImageEncoder
from svllreid.models.reid_model import ReIDModel

__all__ = ["count_flops", "format_info", "model_info"]

_CPU_SDPA = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
if _CPU_SDPA is not None and _CPU_SDPA not in flop_registry:
    # torch counts the CUDA attention kernels but not the CPU one; count it the same way.
    @register_flop_formula(_CPU_SDPA)
    def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)


@contextlib.contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """nn.MultiheadAttention's fused inference path is invisible to the FLOP counter; use the
    composite path while counting."""
    backend = torch.backends.mha
    previous = backend.get_fastpath_enabled()
    backend.set_fastpath_enabled(False)
    try:
        yield
    finally:
        backend.set_fastpath_enabled(previous)


def count_flops(fn: Any, *args: Any, inference: bool = True) -> int:
    """FLOPs (2 × multiply-accumulates of matmuls, convolutions and attention) of ``fn(*args)``.

    With ``inference=False`` gradients stay enabled, so a training step's backward is counted too.
    """
    grad = torch.no_grad() if inference else contextlib.nullcontext()
    with grad, _no_mha_fastpath(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def _params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def model_info(model: ReIDModel) -> dict[str, Any]:
    """Parameters (total, per part, trainable per stage), feature sizes, token grid and FLOPs."""
    encoder = model.image_encoder
    height, width = encoder.image_size
    is_vit = isinstance(encoder, ViTImageEncoder)
    was_training = model.training
    model.eval()
    images = torch.zeros(1, 3, height, width)
    side_ids = torch.zeros(1, dtype=torch.long)  # camera / view 0 where SIE needs them
    image_flops = count_flops(model.image_features, images, side_ids, side_ids)
    learner = model.prompt_learner
    pid = torch.zeros(1, dtype=torch.long)
    prompt = learner(pid, full=True)
    eot = learner.eot_index(1, prompt.device)
    text_flops = count_flops(model.text_encoder, prompt, eot, learner.length)
    text_flops_full = count_flops(model.text_encoder, prompt, eot, prompt.shape[1])
    model.train(was_training)
    grid = encoder.grid
    return {
        "arch": model.spec.arch,
        "weights": model.load_report.source if hasattr(model, "load_report") else "unknown",
        "image_size": [height, width],
        "stride": encoder.stride if is_vit else None,
        "last_stride": None if is_vit else encoder.stride,
        "token_grid": list(grid),
        "tokens": 1 + grid[0] * grid[1] if is_vit else grid[0] * grid[1],
        "sie": model.spec.sie,
        "num_classes": model.num_classes,
        "features": {
            "f11": encoder.feature_dims[0],
            "f12": encoder.feature_dims[1],
            "f_proj": encoder.feature_dims[2],
            "test_feature": model.feature_dim,
        },
        "parameters": {
            "total": _params(model),
            "image_encoder": _params(encoder),
            "text_encoder": _params(model.text_encoder),
            "prompts": _params(model.prompt_learner),
            "bnneck_classifiers": _params(model.neck) + _params(model.neck_proj),
            "ssl_heads": _params(model.lang_projector) + _params(model.vis_projector),
        },
        "trainable": {
            "stage1": sum(p.numel() for p in model.stage_parameters(1).values()),
            "stage2": sum(p.numel() for p in model.stage_parameters(2).values()),
        },
        "gflops": {
            "image": image_flops / 1e9,
            "text_prompt_12_tokens": text_flops / 1e9,
            "text_prompt_77_tokens": text_flops_full / 1e9,
        },
    }


def format_info(info: dict[str, Any]) -> str:
    """Human-readable lines of :func:`model_info`."""

    def millions(n: int) -> str:
        return f"{n / 1e6:,.2f} M"

    p, t, f, g = info["parameters"], info["trainable"], info["features"], info["gflops"]
    geometry = f"stride {info['stride']}" if info["stride"] is not None else f"last stride {info['last_stride']}"
    lines = [
        f"architecture     {info['arch']} ({info['weights']})",
        f"input            {info['image_size'][0]}×{info['image_size'][1]}, {geometry}, "
        f"token grid {info['token_grid'][0]}×{info['token_grid'][1]} ({info['tokens']} tokens), SIE {info['sie']}",
        f"features         f11 {f['f11']}, f12 {f['f12']}, f_proj {f['f_proj']}; test feature {f['test_feature']}-d",
        f"parameters       {millions(p['total'])} total: image encoder {millions(p['image_encoder'])}, "
        f"text encoder {millions(p['text_encoder'])}, prompts {millions(p['prompts'])} "
        f"({info['num_classes']} identities), BNNeck classifiers {millions(p['bnneck_classifiers'])}, "
        f"SSL heads {millions(p['ssl_heads'])}",
        f"trainable        stage 1 {millions(t['stage1'])}, stage 2 {millions(t['stage2'])}",
        f"GFLOPs           image {g['image']:.2f} per image; text {g['text_prompt_12_tokens']:.3f} per prompt "
        f"(12 tokens; {g['text_prompt_77_tokens']:.3f} at 77)  [FLOPs = 2 × multiply-adds]",
    ]
    return "\n".join(lines)
