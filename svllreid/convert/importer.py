"""``svllreid convert --from clip-reid|svll-reid``: an authors' checkpoint as an svllreid trained model.

What the tensors tell is inferred from them: the backbone from the image encoder's keys and shapes, the
identities from the classifier, the SIE mode, cameras and views from the SIE table's rows, and the input
size and patch stride from the token grid of the resized positional embedding. A config
(:mod:`.settings`) supplies the rest (the normalisation, the SIE coefficient, which the file does not
hold, and the size or stride where the grid fits several) and is checked against what was inferred: a
disagreement names both values. The result records, per fact, whether it was inferred, given or assumed.

The text side comes along: the learned prompts, and CLIP's text transformer. Their files lack CLIP's token
embedding, except the rows of the prompt template (saved as ``token_prefix`` / ``token_suffix``), which are
put back in their rows, so the learned prompts encode exactly as in their model. Free-text search needs
the whole table: ``--clip-weights`` (the CLIP the checkpoint was trained from, a file or an open_clip tag)
provides it, and is checked against the checkpoint's own text tower.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from svllreid.config import Config, config_to_dict, save_config
from svllreid.convert.authors_layout import (
    ACCEPTED,
    SOURCES,
    from_authors_names,
    identify_foreign,
    read_authors_file,
)
from svllreid.convert.settings import ConversionSettings
from svllreid.errors import ConversionError
from svllreid.fileio import atomic_write_text
from svllreid.inference.checkpoint import write_checkpoint

__all__ = ["CLIP_PIXELS", "IMAGENET_PIXELS", "TEXT_SUPPORT", "ConversionResult", "convert_authors_checkpoint"]

log = logging.getLogger(__name__)

CLIP_PIXELS = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET_PIXELS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: What a converted model's text side can do, as recorded in its checkpoint (``text`` in the header):
#: ``free-text`` (descriptions and learned prompts), ``prompts`` (the learned prompts only: CLIP's token
#: embedding is incomplete), ``none`` (a baseline without prompts).
TEXT_SUPPORT = ("free-text", "prompts", "none")
#: Input sizes (H, W) tried when the token grid alone must tell the size: the authors' (persons 256×128,
#: vehicles 256×256), other common ReID sizes, and svllreid's tiny test geometries.
CANDIDATE_SIZES = (
    (256, 128),
    (256, 256),
    (384, 128),
    (384, 192),
    (320, 160),
    (288, 144),
    (224, 224),
    (128, 64),
    (64, 32),
)
#: The sizes the authors train and test at (persons, vehicles): preferred where a token grid fits several.
AUTHORS_SIZES = ((256, 128), (256, 256))
RECORD_NAME = "conversion.json"


@dataclass
class ConversionResult:
    """What ``convert`` wrote and how it decided each fact."""

    checkpoint: Path
    source: str
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"value", "how"}
    text: str = "none"
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "source": self.source,
            "facts": self.facts,
            "text": self.text,
            "dropped": self.dropped,
            "notes": self.notes,
        }

    def summary(self) -> str:
        lines = [f"wrote {self.checkpoint} (from a {self.source} checkpoint)"]
        width = max(len(k) for k in self.facts) if self.facts else 0
        for name, fact in self.facts.items():
            lines.append(f"  {name:<{width}}  {_show(fact['value'])}  ({fact['how']})")
        lines.append(f"  text side: {_TEXT_WORDS[self.text]}")
        if self.dropped:
            lines.append(f"  dropped: {len(self.dropped)} tensors of a SimSiam predictor (training only)")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


_TEXT_WORDS = {
    "free-text": "free-text descriptions and the learned prompts",
    "prompts": "the learned prompts; free-text search needs CLIP's token embedding: convert again with --clip-weights",
    "none": "none (a baseline without prompts: image search only)",
}


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return (
            "×".join(str(v) for v in value)
            if len(value) == 2 and all(isinstance(v, int) for v in value)
            else str(list(value))
        )
    return str(value)


class _Facts:
    """The facts of a conversion with how each was decided."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    def set(self, name: str, value: Any, how: str) -> Any:
        self.values[name] = {"value": list(value) if isinstance(value, tuple) else value, "how": how}
        return value


def _check(name: str, inferred: Any, given: Any, origin: str, what: str) -> None:
    if given is not None and given != inferred:
        raise ConversionError(
            f"the checkpoint's {what} gives {name} = {_show(inferred)}, but {origin} says {_show(given)}; pass the "
            f"config of the setting the file was trained with (or none, to take the file's {_show(inferred)})"
        )


def _architecture(ours: dict[str, torch.Tensor], settings: ConversionSettings | None, facts: _Facts) -> str:
    from svllreid.models.pretrained import suggest_architectures  # open_clip

    vision = {
        "visual." + k.removeprefix("image_encoder.visual."): v
        for k, v in ours.items()
        if k.startswith("image_encoder.visual.")
    }
    if not vision:
        raise ConversionError(f"the checkpoint has no image encoder (image_encoder.*); expected {ACCEPTED}")
    text = {k.removeprefix("text_encoder."): v for k, v in ours.items() if k.startswith("text_encoder.")}
    probe = {**vision, **text}
    if "text_projection" not in probe:  # a baseline: the image projection's width stands in for the text's
        proj = vision.get("visual.proj")
        width = proj.shape[1] if proj is not None else vision["visual.attnpool.c_proj.weight"].shape[0]
        probe["text_projection"] = torch.empty(0, int(width))
    matches = suggest_architectures(probe)
    if not matches:
        raise ConversionError(
            "the checkpoint's image encoder matches no CLIP architecture svllreid knows (ViT-B-16, RN50, other "
            "open_clip CLIP ViTs and modified ResNets); was it made by another codebase?"
        )
    matches.sort(key=lambda name: ("quickgelu" in name.lower(), len(name), name))
    given = settings.arch if settings else None
    if given is not None:
        if given not in matches:
            origin = settings.origin if settings else ""
            raise ConversionError(
                f"the checkpoint's image encoder is {matches[0]} (its keys and shapes), but {origin} says "
                f"{given}; pass the config of the setting the file was trained with"
            )
        return facts.set("architecture", given, "given, and fits the file's image encoder")
    return facts.set("architecture", matches[0], "inferred from the image encoder's keys and shapes")


def _grid_options(
    tokens: int, patch: int | None, sizes: list[tuple[int, int]], strides: list[int | None]
) -> list[tuple[tuple[int, int], int | None]]:
    options = []
    for height, width in sizes:
        for stride in strides:
            if patch is None:  # a ResNet at last stride 1: a 16× reduction
                grid = (height // 16) * (width // 16) if height % 16 == 0 and width % 16 == 0 else -1
            else:
                grid = ((height - patch) // stride + 1) * ((width - patch) // stride + 1) if stride else -1
            if grid == tokens:
                options.append(((height, width), stride))
    return options


def _geometry(
    ours: dict[str, torch.Tensor], vit: bool, settings: ConversionSettings | None, facts: _Facts
) -> tuple[tuple[int, int], int | None]:
    if vit:
        tokens = int(ours["image_encoder.visual.positional_embedding"].shape[0]) - 1
        patch = int(ours["image_encoder.visual.conv1.weight"].shape[-1])
        where = f"positional embedding ({tokens} patch tokens, {patch}-pixel patches)"
    else:
        tokens = int(ours["image_encoder.visual.attnpool.positional_embedding"].shape[0]) - 1
        patch = None
        where = f"attention pool's positional embedding ({tokens} positions)"
    size_given = settings.image_size if settings else None
    stride_given = settings.stride if settings and vit else None
    sizes = [size_given] if size_given else list(CANDIDATE_SIZES)
    strides: list[int | None] = [None]
    if patch is not None:  # a ViT: strides from the patch size down to half of it (overlapping patches)
        strides = [stride_given] if stride_given else list(range(patch, max(patch // 2, 1) - 1, -1))
    options = _grid_options(tokens, patch, sizes, strides)
    if not options:
        if size_given or stride_given:
            assert settings is not None
            said = f"{_show(size_given) if size_given else 'any size'}" + (
                f" at stride {stride_given}" if stride_given else ""
            )
            raise ConversionError(
                f"the checkpoint's {where} does not fit {settings.origin}: {said} makes another token grid. Pass the "
                "config of the setting the file was trained with"
            )
        raise ConversionError(
            f"the checkpoint's {where} fits none of the usual input sizes and strides; pass --config with image_size "
            "(and stride)"
        )
    preferred = [option for option in options if option[0] in AUTHORS_SIZES]
    if len(options) > 1 and len(preferred) == 1:  # e.g. 210 tokens: 256×128 at stride 12, or 320×160 at 15
        others = "; ".join(f"{_show(s)} stride {t}" if t else _show(s) for s, t in options if (s, t) != preferred[0])
        (size, stride) = preferred[0]
        how = f"inferred from the {where}: the authors' input size (it also fits {others}; --config to choose)"
        facts.set("image size", size, how)
        if vit:
            facts.set("patch stride", stride, how)
        return size, stride
    if len(options) > 1:
        shown = "; ".join(f"{_show(s)} stride {t}" if t else _show(s) for s, t in options)
        raise ConversionError(
            f"the checkpoint's {where} fits several geometries ({shown}); pass --config with the image_size (and "
            "stride) it was trained at, or a released setting's name"
        )
    (size, stride) = options[0]
    how_size = "given, and fits the token grid" if size_given else f"inferred from the {where}"
    facts.set("image size", size, how_size)
    if vit:
        how = "given, and fits the token grid" if stride_given else f"inferred from the {where} at {_show(size)}"
        facts.set("patch stride", stride, how)
    return size, stride


def _side_info(
    ours: dict[str, torch.Tensor], vit: bool, settings: ConversionSettings | None, facts: _Facts
) -> tuple[str | None, int, int, float]:
    table = ours.get("image_encoder.sie.table")
    mode = settings.sie if settings else None
    origin = settings.origin if settings else ""
    if table is None:
        if mode not in (None, "none", "table"):
            raise ConversionError(f"{origin} says SIE {mode}, but the checkpoint has no SIE table (cv_embed)")
        facts.set("SIE", "none", "inferred: no SIE table (cv_embed) in the file")
        return None, 0, 0, 1.0
    if not vit:
        raise ConversionError("the checkpoint has an SIE table on a ResNet; the authors' code adds SIE to ViTs only")
    if mode == "none":
        raise ConversionError(
            f"{origin} says no SIE, but the checkpoint has an SIE table (cv_embed) of {table.shape[0]} rows"
        )
    rows = int(table.shape[0])
    cams, views = (settings.cameras, settings.views) if settings else (None, None)
    cams_given, views_given = cams, views
    how = "inferred from the SIE table's rows"
    if mode in (None, "table"):
        options = []
        if cams and rows == cams:
            options.append(("camera", cams, 0))
        if cams and views and rows == cams * views and views > 1:
            options.append(("camera_view", cams, views))
        if views and rows == views and views > 1:
            options.append(("view", 0, views))
        if not cams and not views:
            mode, cams, views = "camera", rows, 0
            how = "assumed: one SIE row per camera (pass --config for a view or camera-and-view table)"
        elif not options:
            raise ConversionError(
                f"the checkpoint's SIE table has {rows} rows, but {origin} has {cams} cameras and {views} views: it "
                "fits neither cameras, views nor their pairs. Pass the config of the setting the file was trained with"
            )
        elif len(options) > 1:
            shown = " or ".join(option[0] for option in options)
            raise ConversionError(
                f"the checkpoint's SIE table has {rows} rows, which fit {shown} with {origin}'s {cams} cameras and "
                f"{views} views; say which with 'sie' in --config"
            )
        else:
            mode, cams, views = options[0]
            how = (
                f"inferred from the SIE table's {rows} rows and the dataset's {cams_given} cameras and "
                f"{views_given} views"
            )
    elif mode == "camera":
        _check("cameras", rows, cams, origin, "SIE table (cv_embed)")
        cams, views = rows, 0
        how = f"given by {origin}; the table's {rows} rows are the cameras"
    elif mode == "view":
        _check("views", rows, views, origin, "SIE table (cv_embed)")
        cams, views = 0, rows
        how = f"given by {origin}; the table's {rows} rows are the views"
    else:  # camera_view
        if cams and views and cams * views != rows:
            raise ConversionError(
                f"the checkpoint's SIE table has {rows} rows, but {origin} says {cams} cameras × {views} views = "
                f"{cams * views}; pass the config of the setting the file was trained with"
            )
        if not cams and not views:
            raise ConversionError(
                f"{origin} says SIE on cameras and views; give cameras or views too, so the {rows} rows can be split"
            )
        cams = cams or rows // int(views)  # type: ignore[arg-type]
        views = views or rows // int(cams)
        how = "given (cameras × views), and fits the SIE table"
    facts.set("SIE", mode, how)
    facts.set("SIE table", f"{rows} rows: {int(cams or 0)} cameras, {int(views or 0)} views", how)
    coef = settings.sie_coef if settings else None
    if coef is None:
        coef = 1.0
        facts.set(
            "SIE coefficient",
            coef,
            "assumed: the file does not hold it; 1.0 is the authors' README command for SIE-OLP (their code's "
            "default is 3.0): pass --config to set it",
        )
    else:
        facts.set("SIE coefficient", coef, f"given by {origin}")
    return mode, int(cams or 0), int(views or 0), float(coef)


def _check_clip_weights(model: Any, their_text: dict[str, torch.Tensor], weights: str) -> None:
    """Check that the CLIP of ``weights`` (loaded into ``model``) is the one the checkpoint's text tower
    came from, by the text tower's positional embedding (to fp16 rounding: their CLIP came as fp16)."""
    mine = model.text_encoder.positional_embedding.detach()
    theirs = their_text.get("text_encoder.positional_embedding")
    if theirs is None:
        return
    difference = float((mine - theirs.float()).abs().max())
    scale = float(mine.abs().max())
    if difference > 2e-3 * scale + 1e-6:
        raise ConversionError(
            f"--clip-weights {weights} are not the CLIP this checkpoint was trained from: its text encoder differs "
            f"(positional embedding differs by {difference:.3g}, at scale {scale:.3g}). Pass the CLIP the authors "
            "started from (OpenAI's ViT-B-16 or RN50: the file or the 'openai' tag)"
        )


def _template_kind(model: Any, word: torch.Tensor, kind_given: str | None) -> str:
    """Which template, person or vehicle, the checkpoint's saved embedding of the template's object word
    (``word``, the position after the identity words) spells, read in CLIP's complete token table (before
    the template's rows are written into it)."""
    import open_clip

    from svllreid.models.prompts import PROMPT_TEMPLATES

    table = model.text_encoder.token_embedding.weight.detach()
    end = model.prompt_learner.start + 4
    tokenizer = open_clip.get_tokenizer(model.spec.arch)
    words = {k: int(tokenizer([v])[0, end]) for k, v in PROMPT_TEMPLATES.items()}
    close = {k: float((table[w] - word.float()).abs().max()) for k, w in words.items()}
    best = min(close, key=lambda k: close[k])
    scale = float(table.abs().max())
    if close[best] > 2e-3 * scale + 1e-6:
        raise ConversionError(
            "the checkpoint's prompt template does not spell CLIP-ReID's template with the given --clip-weights "
            "(neither 'person' nor 'vehicle'); pass the CLIP the checkpoint was trained from"
        )
    _check("the prompt template's object", best, kind_given, "the config", "prompt template")
    return best


def _template_rows(model: Any, template: dict[str, torch.Tensor]) -> None:
    """Put the template's saved embeddings in the rows of the token embedding that spell the network's
    template (its learner was built for the template the caller decided: :func:`_template_kind`)."""
    from svllreid.models.prompts import PROMPT_TEMPLATES  # open_clip via the factory's imports

    learner, text = model.prompt_learner, model.text_encoder
    prefix, suffix = template["token_prefix"].float(), template["token_suffix"].float()
    tokens = learner.template_tokens[0]
    full = tokens.shape[0]
    start, end = learner.start, learner.start + 4
    if prefix.shape[1] != start or prefix.shape[1] + 4 + suffix.shape[1] != full:
        raise ConversionError(
            f"the checkpoint's prompt template ({prefix.shape[1]} + 4 + {suffix.shape[1]} positions) is not "
            f'CLIP-ReID\'s "{PROMPT_TEMPLATES["person"]}" ({start} + 4 + {full - end} positions)'
        )
    saved = torch.cat([prefix[0], torch.zeros(4, prefix.shape[2]), suffix[0]])  # [77, width]
    table, kind = text.token_embedding.weight, learner.kind
    written: set[int] = set()
    with torch.no_grad():
        for position in [*range(start), *range(end, full)]:
            row = int(tokens[position])
            if row in written and not torch.equal(table[row], saved[position]):
                raise ConversionError(
                    "the checkpoint's prompt template holds two embeddings for one token: it is not CLIP-ReID's "
                    f'template "{PROMPT_TEMPLATES[kind]}"'
                )
            table[row] = saved[position]
            written.add(row)


def _dataset_kind(name: str) -> str | None:
    """The prompt template's object for a dataset svllreid knows (person or vehicle), else None."""
    from svllreid.data.datasets.registry import available_datasets, get_dataset_entry

    return get_dataset_entry(name).kind if name in available_datasets() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_authors_checkpoint(
    path: str | Path,
    source: str,
    out: str | Path,
    *,
    settings: ConversionSettings | None = None,
    clip_weights: str | None = None,
    overwrite: bool = False,
) -> ConversionResult:
    """Convert an authors' ``.pth`` checkpoint into a folder ``out`` laid out as a run directory:
    ``checkpoints/model.safetensors`` (every command takes the folder), ``config.yaml`` and
    ``conversion.json``, the record of the conversion.

    Args:
        source: ``clip-reid`` or ``svll-reid``: whose code saved the file.
        settings: what the file does not tell (:func:`svllreid.convert.settings.load_settings`).
        clip_weights: the CLIP the checkpoint was trained from (a file or an open_clip tag), for
            free-text search; without it only the learned prompts encode text.
        overwrite: replace a model already in ``out``.

    Raises:
        ConversionError: another codebase's file, an unreadable or unsafe file, or facts that disagree with
            ``settings``.
    """
    if source not in SOURCES:
        raise ConversionError(f"--from must be one of {', '.join(SOURCES)}; got {source!r}")
    path = Path(path).expanduser()
    folder = Path(out).expanduser()
    target = folder / "checkpoints" / "model.safetensors"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        if not (folder / RECORD_NAME).is_file():
            raise ConversionError(
                f"{folder} exists and holds something else than a conversion (no {RECORD_NAME}); convert writes a "
                "new folder: pass another --out"
            )
        if not overwrite:
            raise ConversionError(f"{folder} holds a converted model already; pass another --out, or --overwrite")
    state = read_authors_file(path)
    foreign = identify_foreign(state)
    if foreign is not None:
        raise ConversionError(
            f"{path} looks like {foreign}, not a CLIP-ReID / SVLL-ReID checkpoint. convert takes {ACCEPTED}"
        )
    ours, template, dropped, unknown = from_authors_names(state)
    if unknown:
        raise ConversionError(
            f"{path} has {len(unknown)} tensors with no place in a CLIP-ReID / SVLL-ReID network (e.g. "
            f"{', '.join(unknown[:4])}); it is not a file of theirs, or of a version svllreid does not know"
        )
    vit = "image_encoder.visual.proj" in ours
    grid = "image_encoder.visual." + ("positional_embedding" if vit else "attnpool.positional_embedding")
    needed = [grid, "neck.classifier.weight", "neck_proj.classifier.weight", "neck.bn.weight", "neck_proj.bn.weight"]
    lacking = [key for key in needed if key not in ours]
    if lacking:
        raise ConversionError(
            f"{path} lacks tensors every CLIP-ReID / SVLL-ReID network has (e.g. {', '.join(lacking[:3])}); the "
            "file is incomplete or of another layout"
        )
    facts, notes = _Facts(), list(settings.notes) if settings else []
    arch = _architecture(ours, settings, facts)
    classes = int(ours["neck.classifier.weight"].shape[0])
    if settings is not None:
        _check("identities", classes, settings.identities, settings.origin, "classifier")
    facts.set("identities", classes, "inferred from the classifier's rows")
    prompts = ours.get("prompt_learner.cls_ctx")
    if settings is not None and settings.text is not None and settings.text != (prompts is not None):
        has, says = ("has", "a baseline without") if prompts is not None else ("has no", "a network with")
        raise ConversionError(
            f"the checkpoint {has} learned prompts, but {settings.origin} describes {says} prompts; pass the "
            "setting of the method the file was trained with (a baseline or CLIP-ReID)"
        )
    if prompts is not None and int(prompts.shape[0]) != classes:
        raise ConversionError(
            f"{path}: {prompts.shape[0]} learned prompts but {classes} classifier rows; the file is inconsistent"
        )
    size, stride = _geometry(ours, vit, settings, facts)
    sie, cams, views, coef = _side_info(ours, vit, settings, facts)
    if settings and settings.pixel_mean is not None and settings.pixel_std is not None:
        mean, std = settings.pixel_mean, settings.pixel_std
        facts.set("normalisation", {"mean": list(mean), "std": list(std)}, f"given by {settings.origin}")
    else:
        mean, std = CLIP_PIXELS if vit else IMAGENET_PIXELS
        facts.set(
            "normalisation",
            {"mean": list(mean), "std": list(std)},
            f"assumed: the authors' configs for {'ViT' if vit else 'ResNet'} backbones (pass --config to set it)",
        )
    facts.set("test resize", "bilinear", "the authors' test transform (Resize, bilinear)")
    vis_head = "vis_projector.net.0.weight" in ours
    lang_head = "lang_projector.net.0.weight" in ours
    if source == "clip-reid" and (vis_head or lang_head):
        notes.append("the file has SVLL-ReID's projector heads: it was saved by SVLL-ReID's code (kept as they are)")
    if dropped:
        notes.append("SVLL-ReID's SimSiam predictor (image_mlp.linear1 ...) is dropped: it serves training only")
    hidden = int(ours["vis_projector.net.0.weight"].shape[0]) if vis_head else 4096
    out_dim = int(ours["vis_projector.net.6.weight"].shape[0]) if vis_head else 256
    if lang_head:
        hidden, out_dim = (
            int(ours["lang_projector.net.0.weight"].shape[0]),
            int(ours["lang_projector.net.6.weight"].shape[0]),
        )
    kind_given = settings.kind if settings else None
    if kind_given is None and settings is not None and settings.dataset:
        kind_given = _dataset_kind(settings.dataset)

    from svllreid.errors import PretrainedError
    from svllreid.models.factory import create_model

    def build(kind: str) -> Any:
        try:
            return create_model(
                arch,
                classes,
                num_cameras=cams,
                num_views=views,
                image_size=size,
                stride=stride,
                sie=sie,  # type: ignore[arg-type]
                sie_coef=coef,
                pretrained=clip_weights,
                kind=kind,
                last_stride=1,
                lang_ssl_head=lang_head,
                vis_ssl_head=vis_head,
                ssl_hidden_dim=hidden,
                ssl_out_dim=out_dim,
                force_quick_gelu=True,  # OpenAI's CLIP, which the authors build, uses QuickGELU
            )
        except PretrainedError as err:
            raise ConversionError(f"--clip-weights {clip_weights}: {err}") from None

    model = build(kind_given or "person")
    has_text = any(k.startswith("text_encoder.") for k in ours)
    if clip_weights and has_text:
        _check_clip_weights(model, ours, clip_weights)
    unread = "assumed (the template's words cannot be read without --clip-weights)"
    template_how = "given" if kind_given else unread
    if (
        clip_weights
        and prompts is not None
        and template
        and template["token_prefix"].shape[1] == model.prompt_learner.start
    ):
        # With CLIP's table the template's object word is read: a vehicle template needs the network built for
        # it, else the template's rows would land in the person template's rows ("person" would embed as
        # "vehicle" in descriptions).
        kind_read = _template_kind(model, template["token_suffix"][0, 0], kind_given)
        template_how = "inferred: the template's saved embeddings match CLIP's"
        if kind_read != model.prompt_learner.kind:
            model = build(kind_read)
    expected = model.state_dict()
    mis_shaped = [
        f"{k}: file {tuple(v.shape)}, network {tuple(expected[k].shape)}"
        for k, v in ours.items()
        if k in expected and v.shape != expected[k].shape
    ]
    strangers = sorted(set(ours) - set(expected))
    if strangers:
        raise ConversionError(f"{path}: tensors with no place in the inferred network: {', '.join(strangers[:4])}")
    if mis_shaped:
        raise ConversionError(f"{path}: tensors that do not fit the inferred network: {'; '.join(mis_shaped[:3])}")
    with torch.no_grad():
        for key, tensor in ours.items():
            expected[key].copy_(tensor.to(expected[key].dtype))
        # The token embedding: CLIP's (with --clip-weights) or nothing but the template's rows.
        if not clip_weights:
            model.text_encoder.token_embedding.weight.zero_()
    if prompts is not None:
        if not template:
            raise ConversionError(
                f"{path} has learned prompts but not their template (prompt_learner.token_prefix/suffix)"
            )
        _template_rows(model, template)
        model.prompt_learner.refresh_template(model.text_encoder)
        kind = model.prompt_learner.kind
        facts.set("prompt template", model.prompt_learner.template, template_how)
        text_support = "free-text" if clip_weights else "prompts"
    else:
        kind = kind_given or "person"
        text_support = "none"
        if clip_weights:
            notes.append("a baseline has no learned prompts; --clip-weights were not needed")
    missing = sorted(set(expected) - set(ours) - {"text_encoder.token_embedding.weight"})
    if text_support == "none":
        missing = [k for k in missing if not k.startswith(("text_encoder.", "prompt_learner."))]
    if missing:
        raise ConversionError(
            f"{path} lacks {len(missing)} tensors of the network (e.g. {', '.join(missing[:4])}); the file is "
            "incomplete"
        )
    model.eval()
    config = _config(arch, size, stride, sie, coef, mean, std, settings, clip_weights)
    result = ConversionResult(target, source, facts.values, text_support, dropped, notes)
    meta = {
        "spec": model.spec.to_dict(),
        "quick_gelu": True,
        "config": config_to_dict(config),
        "dataset": {
            "name": (settings.dataset if settings else None) or "unknown",
            "root": "",
            "kind": kind,
            "num_train_ids": classes,
        },
        "stage": 2,
        "epoch": None,
        "text": text_support,
        "converted": {
            "from": source,
            "file": path.name,
            "file_sha256": _sha256(path),
            "settings": settings.origin if settings else None,
            "url": settings.url if settings else None,
            "clip_weights": clip_weights,
            "facts": facts.values,
            "notes": notes,
        },
    }
    write_checkpoint(target, model, meta)
    atomic_write_text(target.parent.parent / RECORD_NAME, json.dumps(result.record(), indent=2) + "\n")
    # A run directory's layout: 'svllreid eval' then writes its results into the folder (eval/<dataset>),
    # where save_pretrained finds them for the model card.
    save_config(config, target.parent.parent)
    return result


def _config(
    arch: str,
    size: tuple[int, int],
    stride: int | None,
    sie: str | None,
    coef: float,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    settings: ConversionSettings | None,
    clip_weights: str | None,
) -> Config:
    """The config a converted model carries: its network, preprocessing and dataset (no training recipe:
    the authors trained it)."""
    base = Config()
    data = dataclasses.replace(
        base.data,
        dataset=(settings.dataset if settings and settings.dataset else "folder"),
        image_size=list(size),
        pixel_mean=list(mean),
        pixel_std=list(std),
        test_interpolation="bilinear",
    )
    model = dataclasses.replace(
        base.model,
        arch=arch,
        pretrained=clip_weights,
        stride=stride,
        last_stride=1,
        sie=sie or "none",  # type: ignore[arg-type]
        sie_coef=coef,
        force_quick_gelu=True,
    )
    return dataclasses.replace(base, data=data, model=model)
