"""svllreid's converter against the CLIP-ReID / SVLL-ReID authors' own networks: the test features of a
file their code saves, after ``svllreid convert``, and again after converting back to their layout.

    python benchmarks/converted_parity.py --reference DIR [--cases NAME ...] [--json OUT]

DIR is a checkout of github.com/Syliz517/CLIP-ReID or of github.com/BinWangGzhu/SVLL-ReID that you supply
(model/make_model_clipreid.py tells the one, model/make_model_svllreid.py the other); nothing of it is
copied into svllreid. As in benchmarks/reference_parity.py, the benchmark imports it from DIR and, at run
time only, neutralises what ties it to a GPU and to a download: its CLIP loader reads a random-init CLIP
(ViT-B/16 or RN50, OpenAI layout) written here, whose normalisation layers and biases are drawn at random
too, so that a tensor put in the wrong place changes the features. Each case runs at full size on the
CPU, in fp32:

1. their ``make_model`` builds the network as their code does, with random heads (their ``convert_weights``
   kept: in both repositories it casts CLIP's layers to fp32, not fp16, so the file is fp32 throughout), and
   ``torch.save(model.state_dict())`` writes the file (one case through ``nn.DataParallel``, so that every
   key starts with ``module.``, as their multi-GPU runs save it);
2. ``convert_authors_checkpoint`` converts it, told only what the file does not hold (the SIE
   coefficient; the cameras and views of a camera-and-view table; the input size where the converter
   says the token grid fits several), and ``load_trained_model`` loads it;
3. image: their test features (``TEST.NECK_FEAT 'before'``, L2-normalised as their test does) of seeded
   random images with cameras (and views) within the SIE table, against svllreid's ``encode_image``;
4. text: the learned prompts' features, ``model(label=..., get_text=True)`` against ``encode_text``
   (relative to the features' largest entry). The cases marked free-text are converted with the random
   CLIP as ``clip_weights``; there descriptions through their text encoder (CLIP's token embedding in
   front) are compared with svllreid's ``DescriptionEncoder`` as well;
5. reverse: ``write_authors_checkpoint`` writes the converted model in their layout, a fresh network of
   theirs (other random heads) loads it with their ``load_param``, and its features are compared with
   svllreid's again; its tensors are compared with the first file's (keys and values);
6. photos: four JPEGs of data/pku-reid-subset through their test transform (torchvision ``Resize``,
   ``ToTensor``, ``Normalize`` on the PIL RGB image, as their val loader builds it) and their network,
   against svllreid's own file pipeline (``extract_model_features``, what ``svllreid extract`` computes),
   both without side information; reported, not judged.

Printed: a table (case, image max|Δ|, text max|Δ| relative, reverse max|Δ|, photos max|Δ|, seconds), then
per case the facts the converter inferred from the file and those given or assumed. ``--json`` writes every
figure. Exits 1 if an image, reverse or description difference (absolute, L2-normalised features) is above
``--tolerance`` (1e-5), or if the reverse file does not restore their network's tensors exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from reference_parity import cpu_only_reference, reference_config, write_random_clip  # noqa: E402

#: Each checkout's model builder (the file that tells which repository DIR is).
BUILDERS = {"clip-reid": "make_model_clipreid", "svll-reid": "make_model_svllreid"}
NAMES = {"clip-reid": "Syliz517/CLIP-ReID", "svll-reid": "BinWangGzhu/SVLL-ReID"}
CLIP_PIXELS = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET_PIXELS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PHOTOS = REPO / "data" / "pku-reid-subset" / "images"
#: Descriptions for the free-text cases; "person" and "vehicle" are the templates' object words, whose rows of
#: the token table a converter could mix up.
DESCRIPTIONS = ["a person in a red coat and blue jeans", "a woman carrying a black bag", "a white vehicle", "a van"]


@dataclass(frozen=True)
class Case:
    """One network of theirs: their config's MODEL / INPUT / DATASETS values and the training set's counts."""

    name: str
    checkout: str  # whose make_model builds it: clip-reid or svll-reid
    arch: str
    size: tuple[int, int]
    stride: int = 16
    camera: bool = False
    view: bool = False
    cameras: int = 1
    views: int = 1
    coef: float = 1.0
    dataset: str = "market1501"
    identities: int = 751
    ssl: str = "none"  # SVLL-ReID's MODEL.SSL_TYPE
    module_prefix: bool = False
    free_text: bool = False

    @property
    def pixels(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return IMAGENET_PIXELS if self.arch == "RN50" else CLIP_PIXELS

    @property
    def sie(self) -> str:
        return {(True, True): "camera_view", (True, False): "camera", (False, True): "view"}.get(
            (self.camera, self.view), "none"
        )


CASES = (
    # CLIP-ReID's configs/person/vit_clipreid.yml
    Case("vit", "clip-reid", "ViT-B-16", (256, 128)),
    # its README's SIE-OLP: overlapping patches, SIE on Market-1501's 6 cameras, SIE_COE 1.0; saved from
    # several GPUs; converted with the CLIP it was trained from (free-text)
    Case(
        "vit-sie-olp",
        "clip-reid",
        "ViT-B-16",
        (256, 128),
        stride=12,
        camera=True,
        cameras=6,
        module_prefix=True,
        free_text=True,
    ),
    # configs/person/cnn_clipreid.yml (ImageNet normalisation; the ResNet's last stage at stride 1)
    Case("cnn", "clip-reid", "RN50", (256, 128)),
    # SVLL-ReID's configs/person/vit_svllreid.yml on MSMT17 (15 cameras), at their code's default SIE_COE 3.0
    Case(
        "svll-vit-sie",
        "svll-reid",
        "ViT-B-16",
        (256, 128),
        stride=12,
        camera=True,
        cameras=15,
        coef=3.0,
        dataset="msmt17",
        identities=1041,
        ssl="SIMCLR",
    ),
    # SVLL-ReID's configs/veri/vit_svllreid.yml: VeRi-776, SIE on 20 cameras x 8 views, 256x256, vehicles
    Case(
        "svll-veri-camera-view",
        "svll-reid",
        "ViT-B-16",
        (256, 256),
        stride=12,
        camera=True,
        view=True,
        cameras=20,
        views=8,
        dataset="veri",
        identities=576,
        ssl="SIMCLR",
        free_text=True,
    ),
)


def detect(reference: Path) -> str | None:
    """Which authors' repository ``reference`` is a checkout of (None: neither)."""
    for source, builder in BUILDERS.items():
        if (reference / "model" / f"{builder}.py").is_file():
            return source
    return None


# --- their side -----------------------------------------------------------------------------------


def write_clip(path: Path, arch: str) -> Path:
    """A random CLIP (OpenAI layout) whose constant-initialised tensors (LayerNorm and BatchNorm
    parameters and statistics, attention biases, the ResNet's zeroed last BatchNorm of each block) are
    drawn at random as well."""
    write_random_clip(path, arch)
    state = torch.load(path, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(3)
    for key, tensor in state.items():
        if not tensor.is_floating_point() or key == "logit_scale":
            continue
        if key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(tensor.shape, generator=generator)
        elif bool((tensor == 1).all()):
            state[key] = 1 + 0.1 * torch.randn(tensor.shape, generator=generator)
        elif bool((tensor == 0).all()):
            state[key] = 0.02 * torch.randn(tensor.shape, generator=generator)
    torch.save(state, path)
    return path


def their_config(case: Case) -> types.SimpleNamespace:
    """The attributes of their yacs config that their model reads, for ``case``."""
    cfg = reference_config(case.size, case.stride)
    model = cfg.MODEL
    model.NAME, model.SIE_CAMERA, model.SIE_VIEW, model.SIE_COE = case.arch, case.camera, case.view, case.coef
    model.SSL_TYPE = case.ssl
    mean, std = case.pixels
    cfg.INPUT.SIZE_TEST, cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = list(case.size), list(mean), list(std)
    cfg.DATASETS.NAMES = case.dataset
    cfg.TEST.NECK_FEAT = "before"
    return cfg


def build_theirs(case: Case, seed: int) -> nn.Module:
    """Their network for ``case`` as their code builds it (CLIP from the random file), in eval mode."""
    make_model = importlib.import_module(f"model.{BUILDERS[case.checkout]}").make_model
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # their builder prints the resized grid
        model = make_model(their_config(case), case.identities, case.cameras, case.views)
    return model.float().eval()


@torch.no_grad()
def their_features(
    model: nn.Module, images: torch.Tensor, cams: torch.Tensor | None, views: torch.Tensor | None
) -> torch.Tensor:
    """Their test feature, L2-normalised as their evaluation does (TEST.FEAT_NORM)."""
    return F.normalize(model(images, cam_label=cams, view_label=views), dim=1)


@torch.no_grad()
def their_descriptions(model: nn.Module, weights: Path, texts: list[str]) -> torch.Tensor:
    """Descriptions through their text encoder, CLIP's token embedding (the file their CLIP loaded) in front."""
    from model.clip import clip as their_clip

    tokens = their_clip.tokenize(texts)
    table = torch.load(weights, map_location="cpu", weights_only=True)["token_embedding.weight"].float()
    return F.normalize(model.text_encoder(F.embedding(tokens, table), tokens), dim=-1)


def their_photo_inputs(paths: list[Path], case: Case) -> torch.Tensor:
    """The photos as their val loader feeds them: PIL RGB, ``T.Resize(SIZE_TEST)``, ``ToTensor``, ``Normalize``."""
    import torchvision.transforms as T
    from PIL import Image

    mean, std = case.pixels
    transform = T.Compose([T.Resize(list(case.size)), T.ToTensor(), T.Normalize(mean=mean, std=std)])
    return torch.stack([transform(Image.open(path).convert("RGB")) for path in paths])


# --- a case ---------------------------------------------------------------------------------------


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def relative_max(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max|ours - theirs| / max|theirs|."""
    return max_abs(ours, theirs) / float(theirs.abs().max())


def settings_for(case: Case, *, size: bool = False) -> Any:
    """What the file does not tell: the SIE coefficient, the split of a camera-and-view table, and with
    ``size`` the input size (where the token grid fits several sizes and strides)."""
    from svllreid.convert.settings import ConversionSettings

    fields: dict[str, Any] = {"image_size": case.size} if size else {}
    if case.sie != "none":
        fields["sie_coef"] = case.coef
    if case.sie == "camera_view":
        fields |= {"sie": "camera_view", "cameras": case.cameras, "views": case.views}
    return ConversionSettings(origin=f"the benchmark's case {case.name}", **fields) if fields else None


def convert(case: Case, file: Path, out: Path, weights: Path, figures: dict[str, Any]) -> Any:
    """``convert_authors_checkpoint`` told what the file does not hold; the input size only if the
    converter finds the token grid ambiguous (what it said is kept in ``figures``)."""
    from svllreid.convert.importer import convert_authors_checkpoint
    from svllreid.errors import ConversionError

    clip_weights = str(weights) if case.free_text else None
    try:
        return convert_authors_checkpoint(
            file, case.checkout, out, settings=settings_for(case), clip_weights=clip_weights
        )
    except ConversionError as err:
        if "fits several geometries" not in str(err):
            raise
        figures["size_not_inferred"] = str(err).split("; pass")[0]
    return convert_authors_checkpoint(
        file, case.checkout, out, settings=settings_for(case, size=True), clip_weights=clip_weights
    )


def inputs(case: Case, count: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Seeded random images at the case's size, camera and view ids within the SIE table, identities."""
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(count, 3, *case.size, generator=generator)
    cams = torch.randint(0, case.cameras, (count,), generator=generator) if case.camera else None
    views = torch.randint(0, case.views, (count,), generator=generator) if case.view else None
    pids = torch.randint(0, case.identities, (count,), generator=generator)
    return images, cams, views, pids


@contextlib.contextmanager
def timed(figures: dict[str, Any], key: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    figures[key] = time.perf_counter() - started


def run_case(case: Case, weights: Path, tmp: Path, count: int, photos: list[Path]) -> dict[str, Any]:
    """The figures of one case (keys ``*_max_abs``: largest absolute difference; ``*_max_rel``: the
    same over the reference's largest entry)."""
    from svllreid.convert.to_authors import write_authors_checkpoint
    from svllreid.data.loaders import read_resized
    from svllreid.inference.features import extract_model_features
    from svllreid.inference.text_query import DescriptionEncoder
    from svllreid.inference.trained import load_trained_model

    figures: dict[str, Any] = {}
    started = time.perf_counter()
    images, cams, views, pids = inputs(case, count)
    file = tmp / f"{case.name}.pth"
    # 1. their network, saved as their training saves it
    with cpu_only_reference(weights), timed(figures, "build_theirs_s"):
        model = build_theirs(case, seed=1)
    saved = (nn.DataParallel(model) if case.module_prefix else model).state_dict()
    torch.save(saved, file)
    figures["file"] = {
        "tensors": len(saved),
        "module_prefix": all(k.startswith("module.") for k in saved),
        "dtypes": sorted({str(v.dtype).removeprefix("torch.") for v in saved.values()}),
        "megabytes": round(file.stat().st_size / 2**20, 1),
    }
    original = {k.removeprefix("module."): v.clone() for k, v in saved.items()}
    del saved
    theirs = their_features(model, images, cams, views)
    with torch.no_grad():
        their_text = model(label=pids, get_text=True)
    if case.sie != "none":  # how far the SIE moves the features: what a wrong row or coefficient would show
        figures["sie_effect_max_abs"] = max_abs(theirs, their_features(model, images, None, None))
    photo_inputs = their_photo_inputs(photos, case)
    their_photos = their_features(model, photo_inputs, None, None)
    their_free_text = their_descriptions(model, weights, DESCRIPTIONS) if case.free_text else None
    del model

    # 2. svllreid's converter and loader
    out = tmp / case.name
    with timed(figures, "convert_s"):
        result = convert(case, file, out, weights, figures)
    trained = load_trained_model(out, "cpu")
    figures["facts"] = result.facts
    figures["decided"] = decided(result.facts)
    figures["text_support"] = result.text
    figures["notes"] = result.notes

    # 3., 4. image and text features
    with torch.no_grad():
        ours = trained.model.encode_image(images, cams, views)
        our_text = trained.model.encode_text(pids)
    figures["image_max_abs"] = max_abs(ours, theirs)
    figures["text_max_abs"] = max_abs(our_text, their_text)
    figures["text_max_rel"] = relative_max(our_text, their_text)
    if their_free_text is not None:
        described = DescriptionEncoder(trained).encode(DESCRIPTIONS).feats
        figures["free_text_max_abs"] = max_abs(described, their_free_text)

    # 6. photos: their test transform and network against svllreid's file pipeline (as svllreid extract)
    our_inputs = torch.stack(
        [trained.transform(read_resized(str(p), trained.image_size, trained.interpolation)) for p in photos]
    )
    figures["photo_pixels_max_abs"] = max_abs(our_inputs, photo_inputs)
    our_photos = extract_model_features(trained, [str(p) for p in photos], progress=False).feats
    figures["photos_max_abs"] = max_abs(our_photos, their_photos)

    # 5. back to their layout, loaded by their own loader into a fresh network
    export = write_authors_checkpoint(trained, case.checkout, tmp / f"{case.name}-back.pth")
    written = torch.load(export.checkpoint, map_location="cpu", weights_only=True)
    figures["reverse_file"] = {
        "tensors": len(written),
        "missing": sorted(set(original) - set(written)),
        "unexpected": sorted(set(written) - set(original)),
        "notes": export.notes,
    }
    del written
    with cpu_only_reference(weights):
        fresh = build_theirs(case, seed=2)
    with contextlib.redirect_stdout(io.StringIO()):  # their loader prints the file's name
        fresh.load_param(str(export.checkpoint))
    fresh.eval()
    restored = fresh.state_dict()
    figures["reverse_tensors_max_abs"] = max(
        max_abs(restored[k], original[k]) if restored[k].is_floating_point() else float(restored[k] != original[k])
        for k in original
    )
    figures["reverse_max_abs"] = max_abs(their_features(fresh, images, cams, views), ours)
    with torch.no_grad():
        figures["reverse_text_max_rel"] = relative_max(our_text, fresh(label=pids, get_text=True))
    del fresh, trained, restored, original
    figures["seconds"] = time.perf_counter() - started
    return figures


# --- report ---------------------------------------------------------------------------------------


def decided(facts: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The converter's facts by how it decided them: inferred from the file, given by the settings,
    assumed (the authors' configs' value), or fixed (the same for every file of theirs)."""
    out: dict[str, list[str]] = {"inferred": [], "given": [], "assumed": [], "fixed": []}
    for name, fact in facts.items():
        value = fact["value"]
        if isinstance(value, dict):  # the normalisation
            value = "mean " + ",".join(f"{v:g}" for v in value["mean"])
        elif isinstance(value, list) and len(value) == 2:
            value = "x".join(str(v) for v in value)
        how = str(fact["how"]).split()[0].rstrip(":,;")
        out[how if how in out else "fixed"].append(f"{name} {value}")
    return out


def print_report(results: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'case':<24} {'image max|Δ|':>13} {'text max|Δ| rel':>16} {'reverse max|Δ|':>15} "
        f"{'photos max|Δ|':>14} {'seconds':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, figures in results.items():
        print(
            f"{name:<24} {figures['image_max_abs']:>13.1e} {figures['text_max_rel']:>16.1e} "
            f"{figures['reverse_max_abs']:>15.1e} {figures['photos_max_abs']:>14.1e} {figures['seconds']:>8.1f}"
        )
    for name, figures in results.items():
        print(f"\n{name}: their file {figures['file']}")
        for how, entries in figures["decided"].items():
            if entries:
                print(f"  {how}: {'; '.join(entries)}")
        if "size_not_inferred" in figures:
            print(f"  image size given, as the converter asked: {figures['size_not_inferred']}")
        text = f"  text side: {figures['text_support']}; learned prompts max|Δ| {figures['text_max_abs']:.1e}"
        if "free_text_max_abs" in figures:
            text += f"; descriptions max|Δ| {figures['free_text_max_abs']:.1e}"
        print(text)
        details = [f"photo pixels max|Δ| {figures['photo_pixels_max_abs']:.1e}"]
        if "sie_effect_max_abs" in figures:
            details.insert(0, f"SIE moves their features by max|Δ| {figures['sie_effect_max_abs']:.1e}")
        print("  " + "; ".join(details))
        back = figures["reverse_file"]
        print(
            f"  reverse: {back['tensors']} tensors, missing {len(back['missing'])}, unexpected "
            f"{len(back['unexpected'])}; their network's tensors after load_param max|Δ| "
            f"{figures['reverse_tensors_max_abs']:.1e}; text max|Δ| relative {figures['reverse_text_max_rel']:.1e}"
        )
        for note in figures["notes"] + back["notes"]:
            print(f"  note: {note}")


def failures(results: dict[str, dict[str, Any]], tolerance: float) -> list[str]:
    failed = [
        f"{name}: {key} {figures[key]:.1e}"
        for name, figures in results.items()
        for key in ("image_max_abs", "reverse_max_abs", "free_text_max_abs")
        if key in figures and not figures[key] <= tolerance
    ]
    for name, figures in results.items():
        back = figures["reverse_file"]
        if figures["reverse_tensors_max_abs"] != 0.0 or back["missing"] or back["unexpected"]:
            failed.append(
                f"{name}: the reverse file does not restore their network (tensors max|Δ| "
                f"{figures['reverse_tensors_max_abs']:.1e}, missing {back['missing'][:3]}, unexpected "
                f"{back['unexpected'][:3]})"
            )
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="a checkout of Syliz517/CLIP-ReID or BinWangGzhu/SVLL-ReID")
    parser.add_argument("--cases", nargs="+", default=None, help="cases to run (default: all of the checkout's)")
    parser.add_argument("--images", type=int, default=4, help="random images per case")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--tolerance", type=float, default=1e-5, help="largest image / reverse / description max|Δ| accepted"
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    reference_dir = Path(args.reference).resolve()
    source = detect(reference_dir)
    if source is None:
        print(
            f"{reference_dir} is a checkout of neither Syliz517/CLIP-ReID (model/make_model_clipreid.py) nor "
            "BinWangGzhu/SVLL-ReID (model/make_model_svllreid.py)"
        )
        return 2
    cases = [c for c in CASES if c.checkout == source]
    if args.cases:
        unknown = sorted(set(args.cases) - {c.name for c in cases})
        if unknown:
            print(f"no case {', '.join(unknown)} for {NAMES[source]}; its cases: {', '.join(c.name for c in cases)}")
            return 2
        cases = [c for c in cases if c.name in args.cases]
    photos = sorted(PHOTOS.glob("*.jpg"))[:4]
    if len(photos) < 4:
        print(f"{PHOTOS} holds fewer than 4 JPEGs")
        return 2
    sys.path.insert(0, str(reference_dir))
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)  # timm's and torch.jit's deprecations, in their code
    print(f"{NAMES[source]} at {reference_dir}: {len(cases)} case(s), random CLIP weights, CPU, fp32")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips: dict[str, Path] = {}
        for case in cases:
            if case.arch not in clips:
                clips[case.arch] = write_clip(Path(tmp) / f"{case.arch}.pt", case.arch)
            results[case.name] = run_case(case, clips[case.arch], Path(tmp), args.images, photos)
            print(f"  {case.name}: done in {results[case.name]['seconds']:.0f} s", flush=True)
    print()
    print_report(results)
    failed = failures(results, args.tolerance)
    if args.json:
        report = {
            "reference": source,
            "checkout": str(reference_dir),
            "tolerance": args.tolerance,
            "threads": args.threads,
            "photos": [p.name for p in photos],
            "cases": {c.name: {"case": asdict(c), **results[c.name]} for c in cases},
            "failed": failed,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print()
    if failed:
        print("above the tolerance, or not restored:", *failed, sep="\n  ")
        return 1
    print(
        f"every image, reverse and description difference is within {args.tolerance:g}; the reverse files "
        "restore their networks exactly"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
