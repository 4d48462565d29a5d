"""svllreid against the authors' SVLL-ReID code, loss term by loss term and gradient by gradient.

    python benchmarks/reference_parity.py --reference DIR [--geometry published synth] [--steps 3]

DIR is a checkout of github.com/BinWangGzhu/SVLL-ReID that you supply; nothing of it is copied into
svllreid. The benchmark imports it from DIR and, at run time only, neutralises what ties it to a GPU
(``.cuda()``, ``.to("cuda")``, ``torch.cuda.synchronize``) and to a download (its CLIP loader reads a
random-init ViT-B/16 in OpenAI layout written here, which svllreid loads through its own OpenAI-archive
path). Both sides then hold the same weights: the reference's randomly initialised heads (classifiers,
BNNecks, SIE table, prompt words, projectors) are copied into svllreid's model.

Both get the same batch, the same random prompt masks (the reference's own ``mask`` code runs, drawing
from a queue of uniforms that svllreid's ``element`` masking draws from too) and the same occluded views
(tensors made once). Printed, in fp32 on the CPU:

- stage 1: the SupCon image-to-text and text-to-image terms, the language SSL term, and the relative
  difference of the gradients on the prompt words and the language projector;
- stage 2: the ID, triplet, image-to-text and vision SSL terms, and the relative difference of the
  gradient of every trained tensor (the SIE table included);
- a few Adam steps of stage 2 on both, the largest relative parameter difference after them, and the
  ratio of their step times (process CPU time, median).

Geometries: ``published`` (256×128, stride 12, SIE on cameras, the paper's 4096/256 projectors) and
``synth`` (svll-synth's 64×32 input with stride 8, same network). Exits 1 if a difference is above the
tolerance (``--tolerance``, relative).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from svllreid.training.cpu_memory import keep_freed_memory  # noqa: E402 (after the path is set)

GEOMETRIES = {
    "published": {"size": (256, 128), "stride": 12},
    "synth": {"size": (64, 32), "stride": 8},
}
#: The published SVLL-ReID recipe (configs/person/vit_svllreid.yml of the reference).
ID_WEIGHT, TRIPLET_WEIGHT, I2T_WEIGHT, VIS_SSL_WEIGHT, LANG_SSL_WEIGHT = 0.25, 1.0, 1.0, 0.8, 0.8
PROMPT_MASK_SCALE = 0.5
NUM_CLASSES, NUM_CAMERAS = 6, 3


# --- running the reference on a CPU ---------------------------------------------------------------


@contextlib.contextmanager
def cpu_only_reference(weights: Path) -> Iterator[None]:
    """Within: ``.cuda()`` and ``.to('cuda'/an index)`` leave tensors and modules where they are, CUDA
    synchronisation does nothing, and the reference's CLIP download returns ``weights``."""
    saved = (torch.Tensor.cuda, nn.Module.cuda, nn.Module.to, torch.cuda.synchronize)

    def module_to(self: nn.Module, *args, **kwargs):  # type: ignore[no-untyped-def]
        target = args[0] if args else kwargs.get("device")
        if isinstance(target, int) or (isinstance(target, str | torch.device) and "cuda" in str(target)):
            return self
        return saved[2](self, *args, **kwargs)

    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    nn.Module.to = module_to  # type: ignore[method-assign]
    torch.cuda.synchronize = lambda *a, **k: None
    try:
        from model.clip import clip as reference_clip

        reference_clip._download = lambda url, *a, **k: str(weights)
        yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda, nn.Module.to, torch.cuda.synchronize = saved  # type: ignore[method-assign]


def namespace(**sections: dict) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{k: types.SimpleNamespace(**v) for k, v in sections.items()})


def reference_config(size: tuple[int, int], stride: int) -> types.SimpleNamespace:
    """The attributes of the reference's yacs config that its model and loss read."""
    cfg = namespace(
        MODEL={
            "NAME": "ViT-B-16",
            "COS_LAYER": False,
            "NECK": "bnneck",
            "SIE_COE": 1.0,
            "SIE_CAMERA": True,
            "SIE_VIEW": False,
            "STRIDE_SIZE": [stride, stride],
            "SSL_TYPE": "SIMCLR",
            "METRIC_LOSS_TYPE": "triplet",
            "NO_MARGIN": False,
            "IF_LABELSMOOTH": "on",
            "ID_LOSS_WEIGHT": ID_WEIGHT,
            "TRIPLET_LOSS_WEIGHT": TRIPLET_WEIGHT,
            "I2T_LOSS_WEIGHT": I2T_WEIGHT,
        },
        TEST={"NECK_FEAT": "before"},
        INPUT={"SIZE_TRAIN": list(size)},
        DATASETS={"NAMES": "market1501"},
        DATALOADER={"SAMPLER": "softmax_triplet"},
        SOLVER={"MARGIN": 0.3},
    )
    cfg.SOLVER.STAGE2 = types.SimpleNamespace(SSL_LOSS_WEIGHT=VIS_SSL_WEIGHT)
    return cfg


def write_random_clip(path: Path, arch: str = "ViT-B-16") -> None:
    """A randomly initialised CLIP state dict in OpenAI's layout: ViT-B/16, or ``arch`` (``RN50``;
    open_clip's key names are OpenAI's for these architectures)."""
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model(arch, pretrained=None)
    torch.save(clip.state_dict(), path)


def build_reference(reference: Path, weights: Path, size: tuple[int, int], stride: int) -> nn.Module:
    """The reference's SVLL-ReID network in fp32 (its CLIP builder would cast the weights to fp16 for a GPU)."""
    from model.clip import model as reference_clip_model
    from model.make_model_svllreid import make_model

    saved = reference_clip_model.convert_weights
    reference_clip_model.convert_weights = lambda model: None
    try:
        torch.manual_seed(1)
        model = make_model(reference_config(size, stride), NUM_CLASSES, NUM_CAMERAS, 1)
    finally:
        reference_clip_model.convert_weights = saved
    return model.float()


def build_ours(weights: Path, size: tuple[int, int], stride: int) -> nn.Module:
    from svllreid.models.factory import create_model

    return create_model(
        "ViT-B-16",
        NUM_CLASSES,
        num_cameras=NUM_CAMERAS,
        image_size=size,
        stride=stride,
        sie="camera",
        pretrained=str(weights),
        lang_ssl_head=True,
        vis_ssl_head=True,
        ssl_hidden_dim=4096,
        ssl_out_dim=256,
        force_quick_gelu=True,  # OpenAI's CLIP, which the reference builds, uses QuickGELU
    ).float()


#: The reference's name of each head tensor -> svllreid's.
HEADS = {
    "cv_embed": "image_encoder.sie.table",
    "classifier.weight": "neck.classifier.weight",
    "classifier_proj.weight": "neck_proj.classifier.weight",
    "prompt_learner.cls_ctx": "prompt_learner.cls_ctx",
}
for _ref, _ours in (("bottleneck", "neck.bn"), ("bottleneck_proj", "neck_proj.bn")):
    for _field in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        HEADS[f"{_ref}.{_field}"] = f"{_ours}.{_field}"
for _ref, _ours in (("image_mlp", "vis_projector"), ("text_mlp", "lang_projector")):
    for _layer, _index in (("layer1", 0), ("bn1", 1), ("layer2", 3), ("bn2", 4), ("layer3", 6)):
        for _field in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            HEADS[f"{_ref}.{_layer}.{_field}"] = f"{_ours}.net.{_index}.{_field}"


def name_map(reference: nn.Module, ours: nn.Module) -> dict[str, str]:
    """Every tensor of the reference that svllreid has: the heads above, the image encoder (the reference's
    ``image_encoder.X`` is svllreid's ``image_encoder.visual.X``) and the text encoder."""
    theirs, mine = reference.state_dict(), ours.state_dict()
    names = {k: v for k, v in HEADS.items() if k in theirs and v in mine}
    for key in theirs:
        if key.startswith("image_encoder.") and f"image_encoder.visual.{key[14:]}" in mine:
            names[key] = f"image_encoder.visual.{key[14:]}"
    return names


def copy_heads(reference: nn.Module, ours: nn.Module, names: dict[str, str]) -> float:
    """Copy the reference's randomly initialised heads into svllreid's model; returns the largest absolute
    difference of the tensors both loaded from the CLIP weights (the resized position embedding included)."""
    theirs, mine = reference.state_dict(), ours.state_dict()
    loaded = 0.0
    with torch.no_grad():
        for ref_name, our_name in names.items():
            if ref_name in HEADS:
                mine[our_name].copy_(theirs[ref_name])
            else:
                loaded = max(loaded, float((mine[our_name].float() - theirs[ref_name].float()).abs().max()))
    return loaded


#: Biases of the projectors' Linear layers that a BatchNorm follows: the BatchNorm removes any constant, so
#: their gradient is zero in exact arithmetic and rounding noise in floats (Adam then moves them by about
#: ±lr either way). Left out of the per-tensor comparisons; they are in the whole-vector figure.
NOISE_ONLY = {f"{head}.net.{i}.bias" for head in ("vis_projector", "lang_projector") for i in (0, 3)}


def signal(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """The elements of a trained tensor whose gradient is not zero in exact arithmetic: all but the
    :data:`NOISE_ONLY` biases and the key third of each attention's ``in_proj_bias`` (a bias added to every
    key shifts all of a query's logits alike, which the softmax ignores)."""
    flat = tensor.detach().flatten()
    if name in NOISE_ONLY:
        return flat[:0]
    if name.endswith("attn.in_proj_bias"):
        third = flat.shape[0] // 3
        return torch.cat([flat[:third], flat[2 * third :]])
    return flat


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||."""
    scale = float(b.float().norm())
    return float((a.float() - b.float()).norm()) / scale if scale > 0 else float((a.float() - b.float()).norm())


class UniformQueue:
    """Stands in for the ``torch`` module inside an augmentation: ``rand`` hands out prepared uniforms."""

    def __init__(self, draws: list[torch.Tensor]):
        self.draws = list(draws)

    def rand(self, *shape, **kwargs):  # type: ignore[no-untyped-def]
        wanted = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple | list | torch.Size) else shape
        draw = self.draws.pop(0)
        if tuple(draw.shape) != tuple(wanted):
            raise RuntimeError(f"prepared uniforms of shape {tuple(draw.shape)}, the augmentation asks for {wanted}")
        return draw

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(torch, name)


def stage1(reference: nn.Module, ours: nn.Module, batch: int = 16) -> dict[str, float]:
    """One stage-1 step on both: the same cached image features, labels and prompt masks."""
    import utils.prompt_augmentations as reference_augment
    from loss.SIMCLR_loss import SIMCLRLoss
    from loss.supcontrast import SupConLoss

    import svllreid.models.prompts as our_prompts
    from svllreid.training.tasks import PromptStageTask

    generator = torch.Generator().manual_seed(11)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)
    features = torch.randn(batch, 512, generator=generator)
    unique = torch.unique(labels)
    length = ours.prompt_learner.length
    # The reference draws, per distinct identity, a [77, 512] uniform for each of the two views in turn.
    draws = [torch.rand(77, 512, generator=generator) for _ in range(2 * len(unique))]
    first, second = torch.stack(draws[0::2])[:, :length], torch.stack(draws[1::2])[:, :length]

    reference.train()
    reference.zero_grad(set_to_none=True)
    real_torch = reference_augment.torch
    reference_augment.torch = UniformQueue(draws)
    try:
        text, views = reference(
            label=labels,
            unique_label=unique,
            get_text=True,
            USE_SSL_stage1=True,
            prompt_aug_parameter=[PROMPT_MASK_SCALE, "mask"],
        )
    finally:
        reference_augment.torch = real_torch
    supcon = SupConLoss("cpu")
    theirs = {
        "i2t": supcon(features, text, labels, labels),
        "t2i": supcon(text, features, labels, labels),
        "lang_ssl": LANG_SSL_WEIGHT * SIMCLRLoss()(views),
    }
    sum(theirs.values()).backward()

    ours.prepare_stage(1, train_lang_projector=True)
    ours.train()
    ours.zero_grad(set_to_none=True)
    task = PromptStageTask(
        ours,
        features,
        labels,
        lang_ssl_weight=LANG_SSL_WEIGHT,
        prompt_mask="element",
        prompt_mask_prob=PROMPT_MASK_SCALE,
        global_batch=False,
    )
    real_torch = our_prompts.torch
    our_prompts.torch = UniformQueue([first, second])
    try:
        mine = task({"features": features, "pids": labels})
    finally:
        our_prompts.torch = real_torch
    sum(mine.values()).backward()
    out = {f"stage1 {k} (reference, svllreid)": (float(theirs[k]), float(mine[k])) for k in theirs}
    out["stage1 total (reference, svllreid)"] = (float(sum(theirs.values())), float(sum(mine.values())))
    grads = {
        "prompt words": ("prompt_learner.cls_ctx", "prompt_learner.cls_ctx"),
        **{
            f"language projector {ref}": (
                f"text_mlp.{ref}",
                f"lang_projector.{HEADS[f'text_mlp.{ref}'].split('.', 1)[1]}",
            )
            for ref in ("layer1.weight", "layer3.weight")
        },
    }
    ref_params, our_params = dict(reference.named_parameters()), dict(ours.named_parameters())
    for label, (ref_name, our_name) in grads.items():
        out[f"stage1 gradient {label}"] = relative(our_params[our_name].grad, ref_params[ref_name].grad)
    return out


def stage2_batch(size: tuple[int, int], ids: int = 2, per_id: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(22)
    count = ids * per_id
    images = torch.randn(count, 3, *size, generator=generator)
    views = torch.randn(count, 2, 3, *size, generator=generator)
    return {
        "image": images,
        "views": views,
        "pid": torch.arange(ids).repeat_interleave(per_id),
        "camid": torch.randint(0, NUM_CAMERAS, (count,), generator=generator),
    }


def reference_stage2_terms(reference: nn.Module, batch: dict[str, torch.Tensor], text: torch.Tensor):
    from loss.SIMCLR_loss import SIMCLRLoss
    from loss.softmax_loss import CrossEntropyLabelSmooth
    from loss.triplet_loss import TripletLoss

    target = batch["pid"]
    score, feat, projected, views = reference(
        x=batch["image"],
        label=target,
        cam_label=batch["camid"],
        view_label=None,
        USE_SSL=True,
        aug1=batch["views"][:, 0],
        aug2=batch["views"][:, 1],
    )
    xent, triplet = CrossEntropyLabelSmooth(num_classes=NUM_CLASSES), TripletLoss(0.3)
    return {
        "id": ID_WEIGHT * sum(xent(s, target) for s in score),
        "triplet": TRIPLET_WEIGHT * sum(triplet(f, target)[0] for f in feat),
        "i2t": I2T_WEIGHT * xent(projected @ text.t(), target),
        "vis_ssl": VIS_SSL_WEIGHT * SIMCLRLoss()(views),
    }


def our_stage2_task(ours: nn.Module, text: torch.Tensor, single_pass: bool) -> nn.Module:
    from svllreid.training.tasks import ImageStageTask, Stage2Losses

    losses = Stage2Losses(
        id_weight=ID_WEIGHT, triplet_weight=TRIPLET_WEIGHT, i2t_weight=I2T_WEIGHT, vis_ssl_weight=VIS_SSL_WEIGHT
    )
    return ImageStageTask(ours, text, losses, single_pass=single_pass, global_batch=False)


def stage2(reference: nn.Module, ours: nn.Module, names: dict[str, str], size: tuple[int, int]) -> dict[str, float]:
    """One stage-2 step on both: the same images, views, identities and cameras."""
    batch = stage2_batch(size)
    with torch.no_grad():
        reference.eval()
        text_ref = reference(label=torch.arange(NUM_CLASSES), get_text=True)
        text_ours = ours.encode_text(torch.arange(NUM_CLASSES))
    out: dict = {"stage2 text features": relative(text_ours, text_ref)}
    reference.train()
    reference.zero_grad(set_to_none=True)
    theirs = reference_stage2_terms(reference, batch, text_ref)
    sum(theirs.values()).backward()
    trained = ours.prepare_stage(2)
    ours.zero_grad(set_to_none=True)
    task = our_stage2_task(ours, text_ref, single_pass=True)
    task.train()
    mine = task(batch)
    sum(mine.values()).backward()
    for key in theirs:
        out[f"stage2 {key} (reference, svllreid)"] = (float(theirs[key]), float(mine[key]))
    out["stage2 total (reference, svllreid)"] = (float(sum(theirs.values())), float(sum(mine.values())))
    ref_params = dict(reference.named_parameters())
    worst, worst_name, flat_ref, flat_ours = 0.0, "", [], []
    for ref_name, our_name in names.items():
        if our_name not in trained or ref_name not in ref_params or ref_params[ref_name].grad is None:
            continue
        ours_grad, ref_grad = trained[our_name].grad, ref_params[ref_name].grad
        flat_ref.append(ref_grad.flatten())
        flat_ours.append(ours_grad.flatten())
        difference = relative(ours_grad, ref_grad)
        if difference > worst and our_name not in NOISE_ONLY:
            worst, worst_name = difference, our_name
    out["stage2 gradient, all trained tensors"] = relative(torch.cat(flat_ours), torch.cat(flat_ref))
    out[f"stage2 gradient, worst tensor ({worst_name})"] = worst
    out["stage2 gradient, SIE table"] = relative(trained["image_encoder.sie.table"].grad, ref_params["cv_embed"].grad)
    out["stage2 tensors compared"] = len(flat_ref)
    return out


def adam_steps(
    reference: nn.Module, ours: nn.Module, names: dict[str, str], size: tuple[int, int], steps: int, lr: float
) -> dict[str, float]:
    """``steps`` Adam steps of stage 2 on both (plain Adam over the same tensors), each timed in process
    CPU time; the largest relative parameter difference after them. svllreid runs its stage-2 step both
    ways (one batched pass over the image and its two views, and three passes).

    The relative difference of the whole update is reported but not judged: Adam divides each gradient by
    its own running root-mean-square, so an element whose gradient is near rounding level moves by a
    full step either way, and a few thousand such elements of a random network differ by ±lr."""
    batch = stage2_batch(size)
    with torch.no_grad():
        reference.eval()
        text = reference(label=torch.arange(NUM_CLASSES), get_text=True)
    trained = ours.prepare_stage(2)
    ref_params = dict(reference.named_parameters())
    pair_names = [o for r, o in names.items() if o in trained and r in ref_params]
    pairs = [(ref_params[r], trained[o]) for r, o in names.items() if o in trained and r in ref_params]
    for param, _ in pairs:
        param.requires_grad_(True)
    start_ours = {id(p): p.detach().clone() for _, p in pairs}
    start_ref = {id(p): p.detach().clone() for p, _ in pairs}
    # glibc's defaults first, then svllreid's allocator setting (training/cpu_memory.py, applied by every
    # CPU training run; it cannot be undone within a process, so it comes last).
    runs = [
        ("reference", False),
        ("svllreid (one pass)", False),
        ("svllreid (three passes)", False),
        ("svllreid (one pass), allocator setting", True),
        ("reference, allocator setting", True),
    ]
    times: dict[str, list[float]] = {label: [] for label, _ in runs}
    finals: dict[str, list[torch.Tensor]] = {}
    for label, tuned in runs:
        if tuned:
            keep_freed_memory()
        is_reference = label.startswith("reference")
        side = [r for r, _ in pairs] if is_reference else [o for _, o in pairs]
        with torch.no_grad():  # every run starts from the same weights
            for p in side:
                p.copy_(start_ref[id(p)] if is_reference else start_ours[id(p)])
        optimizer = torch.optim.Adam(side, lr=lr)
        if not is_reference:
            task = our_stage2_task(ours, text, single_pass="one pass" in label)
            task.train()
        else:
            reference.train()
        for _ in range(steps):
            started = time.process_time()
            optimizer.zero_grad(set_to_none=True)
            terms = reference_stage2_terms(reference, batch, text) if is_reference else task(batch)
            sum(terms.values()).backward()
            optimizer.step()
            times[label].append(time.process_time() - started)
        finals[label] = [p.detach().clone() for p in side]
    out: dict = {}
    kept = [i for i, name in enumerate(pair_names) if name not in NOISE_ONLY]

    def compared(label: str, i: int) -> torch.Tensor:
        return signal(pair_names[i], finals[label][i])

    for label in ("svllreid (one pass)", "svllreid (three passes)", "svllreid (one pass), allocator setting"):
        worst = max(kept, key=lambda i: relative(compared(label, i), compared("reference", i)))
        out[f"after {steps} Adam steps, {label}: worst tensor ({pair_names[worst]})"] = relative(
            compared(label, worst), compared("reference", worst)
        )
        moved = torch.cat([compared(label, i) - signal(pair_names[i], start_ours[id(pairs[i][1])]) for i in kept])
        moved_ref = torch.cat(
            [compared("reference", i) - signal(pair_names[i], start_ref[id(pairs[i][0])]) for i in kept]
        )
        out[f"after {steps} Adam steps, {label}: the update, all tensors"] = relative(moved, moved_ref)
    median = {label: statistics.median(values) for label, values in times.items()}
    out["step time, reference as released (s, median)"] = median["reference"]
    for label in ("svllreid (one pass)", "svllreid (three passes)"):
        out[f"step time ratio, {label} / reference, glibc defaults"] = median[label] / median["reference"]
    out["step time ratio, svllreid as it trains (one pass, allocator setting) / reference as released"] = (
        median["svllreid (one pass), allocator setting"] / median["reference"]
    )
    out["step time ratio, both under the allocator setting"] = (
        median["svllreid (one pass), allocator setting"] / median["reference, allocator setting"]
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="a checkout of BinWangGzhu/SVLL-ReID")
    parser.add_argument("--geometry", nargs="+", choices=sorted(GEOMETRIES), default=["published", "synth"])
    parser.add_argument("--steps", type=int, default=3, help="Adam steps timed and compared (0: none)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the timing is per process)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative difference accepted")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    reference_dir = Path(args.reference).resolve()
    if not (reference_dir / "model" / "make_model_svllreid.py").is_file():
        print(f"{reference_dir} is not a checkout of BinWangGzhu/SVLL-ReID (no model/make_model_svllreid.py)")
        return 2
    sys.path.insert(0, str(reference_dir))
    torch.set_num_threads(args.threads)
    results: dict[str, dict] = {}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "ViT-B-16.pt"
        write_random_clip(weights)
        for geometry in args.geometry:
            size, stride = GEOMETRIES[geometry]["size"], GEOMETRIES[geometry]["stride"]
            print(f"== {geometry}: random-init ViT-B/16 (OpenAI layout), {size[0]}x{size[1]}, stride {stride}, fp32")
            with cpu_only_reference(weights):
                reference = build_reference(reference_dir, weights, size, stride)
                ours = build_ours(weights, size, stride)
                names = name_map(reference, ours)
                figures: dict = {
                    "CLIP weights as loaded, largest absolute difference": copy_heads(reference, ours, names)
                }
                figures |= stage1(reference, ours)
                figures |= stage2(reference, ours, names, size)
                if args.steps:
                    figures |= adam_steps(reference, ours, names, size, args.steps, args.lr)
            for key, value in figures.items():
                if isinstance(value, tuple):
                    difference = abs(value[0] - value[1]) / max(abs(value[0]), 1e-12)
                    print(f"  {key:<72} {value[0]:.6f}  {value[1]:.6f}  (relative {difference:.1e})")
                    if difference > args.tolerance:
                        failed.append(f"{geometry}: {key}")
                elif "time" in key or "compared" in key:
                    print(f"  {key:<72} {value:.3f}" if isinstance(value, float) else f"  {key:<72} {value}")
                elif "update" in key:  # reported, not judged: see adam_steps
                    print(f"  {key:<72} {value:.1e}")
                else:
                    print(f"  {key:<72} {value:.1e}")
                    if value > args.tolerance:
                        failed.append(f"{geometry}: {key}")
            results[geometry] = {k: list(v) if isinstance(v, tuple) else v for k, v in figures.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if failed:
        print("differences above the tolerance:", *failed, sep="\n  ")
        return 1
    print(f"every loss term and gradient agrees within {args.tolerance:g} (relative)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
