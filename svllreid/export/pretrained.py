"""``save_pretrained``: a trained model as a self-describing folder to share (format:
:mod:`svllreid.inference.model_folder`), with a model card whose metrics come from the run's ``eval.json``.

The folder is written beside its destination and renamed into place, so a failure leaves no half-written
folder and an existing one intact. A calibrated checkpoint's same-identity threshold (its sidecar,
``NAME.calibration.json``) is copied into the folder as ``model.calibration.json`` and stated on the card.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import save_file

from svllreid.config import config_from_dict
from svllreid.errors import CheckpointError, DatasetError, ExportError
from svllreid.inference.calibration import Calibration, read_calibration, sidecar_path
from svllreid.inference.checkpoint import PRETRAIN_TASK, Checkpoint, read_checkpoint, resolve_checkpoint
from svllreid.inference.model_folder import (
    CALIBRATION_FILE,
    CARD_FILE,
    CONFIG_FILE,
    FOLDER_FORMAT,
    FOLDER_VERSION,
    WEIGHTS_FILE,
    first_line,
    is_hub_name,
    is_model_folder,
    read_folder_config,
    weights_sha256,
)
from svllreid.version import __version__

__all__ = ["CALIBRATION_FILE", "SavedModel", "headline_result", "model_card", "save_pretrained"]

_SIE_WORDS = {"camera": "SIE on cameras", "view": "SIE on views", "camera_view": "SIE on cameras and views"}


@dataclass
class SavedModel:
    folder: Path
    config: dict[str, Any]
    #: The same-identity threshold copied into the folder (None: the model is uncalibrated).
    calibration: Calibration | None = None

    @property
    def files(self) -> list[Path]:
        names = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE) + ((CALIBRATION_FILE,) if self.calibration else ())
        return [self.folder / name for name in names]


def _run_folder(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint file belongs to (where its ``eval.json`` is), if any."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


_METRICS = ("dataset", "protocol", "reranked", "mAP", "rank1", "rank5", "mINP")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _results(run: Path | None, checkpoint: Path, weights: str) -> dict[str, Any]:
    """The headline metrics of a run: its ``eval.json`` (the final model and the untrained start) when
    ``checkpoint`` is the run's final model, and the evaluations ``svllreid eval`` wrote into it
    (``eval/<dataset>/eval.json``; a converted model has only those) of these ``weights`` (their SHA-256)."""
    if run is None:
        return {}
    out: dict[str, Any] = {}
    if checkpoint == run / "checkpoints" / "model.safetensors":
        saved = _read_json(run / "eval.json")
        for key in ("final", "untrained"):
            entry = saved.get(key)
            if isinstance(entry, dict) and "mAP" in entry:
                out[key] = {k: entry[k] for k in _METRICS if k in entry}
    evaluated = {}
    for file in sorted(run.glob("eval/*/eval.json")):
        saved = _read_json(file)
        entry = saved.get("result")
        if saved.get("weights_sha256") == weights and isinstance(entry, dict) and "mAP" in entry:
            evaluated[file.parent.name] = {k: entry[k] for k in _METRICS if k in entry}
    if evaluated:
        out["evaluated"] = evaluated
    return out


def _identities(checkpoint: Checkpoint) -> list[str]:
    """The training set's own names of the identities, by class index (the run's relabelling)."""
    from svllreid.data.factory import build_dataset

    data = config_from_dict(checkpoint.meta["config"], f"the config saved in {checkpoint.path}").data
    try:
        dataset = build_dataset(data)
    except (DatasetError, OSError) as err:
        raise ExportError(
            f"the identity names come from the training set ({data.dataset} at {data.root or 'its default root'}), "
            f"which cannot be read here: {first_line(err)}. Save without identity names, or where the "
            "training set is"
        ) from None
    classes = int(checkpoint.meta["spec"]["num_classes"])
    if len(dataset.train_names) != classes:
        raise ExportError(
            f"the training set at {data.root} now has {len(dataset.train_names)} identities, the model {classes}: it "
            "changed since training, so its names would be wrong. Save without identity names"
        )
    return list(dataset.train_names)


def _shareable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's config without the paths of the machine it ran on."""
    shared = copy.deepcopy(config)
    shared.get("data", {})["root"] = ""
    shared.get("run", {})["output_dir"] = "runs"
    return shared


def folder_config(
    checkpoint: Checkpoint,
    weights: str,
    *,
    name: str,
    identities: list[str] | None,
    results: dict[str, Any],
    license: str | None,
) -> dict[str, Any]:
    """``config.json`` of a model folder (see :mod:`svllreid.inference.model_folder`)."""
    meta = checkpoint.meta
    spec, saved = meta["spec"], meta["config"]
    data = saved.get("data", {})
    dataset = {k: v for k, v in meta.get("dataset", {}).items() if k != "root"}
    config: dict[str, Any] = {
        "format": FOLDER_FORMAT,
        "format_version": FOLDER_VERSION,
        "svllreid_version": __version__,
        "name": name,
        "architecture": spec,
        "quick_gelu": bool(meta.get("quick_gelu", False)),
        "preprocessing": {
            "image_size": list(spec["image_size"]),
            "resize": data.get("test_interpolation", "bicubic"),
            "scale": "pixel / 255",
            "mean": data.get("pixel_mean"),
            "std": data.get("pixel_std"),
            "flip": bool(saved.get("eval", {}).get("flip", False)),
            "feature": "f12 ++ f_proj before the BNNecks, L2-normalised",
        },
        "text": meta.get("text", "free-text"),
        "identities": identities,
        "trained_on": dataset,
        "training": {"stage": meta.get("stage"), "epoch": meta.get("epoch"), "config": _shareable_config(saved)},
        "results": results,
        "license": license,
        "weights_sha256": weights,
    }
    if meta.get("converted"):
        config["converted"] = meta["converted"]
    return config


def headline_result(results: dict[str, Any]) -> dict[str, Any] | None:
    """The result a model folder leads with: the run's final evaluation, else the first ``svllreid eval``."""
    return results.get("final") or next(iter((results.get("evaluated") or {}).values()), None)


def _percent(value: Any) -> str:
    return f"{100 * float(value):.2f}" if isinstance(value, int | float) else "–"


def _threshold_line(calibration: Calibration | None, kind: str) -> str:
    """The card's line on the same-identity threshold, or on its absence."""
    if calibration is None:
        return (
            f"- Same {kind}: uncalibrated. No same-identity threshold was chosen for these weights; "
            "`svllreid calibrate` chooses one on labelled held-out identities."
        )
    t, v, test = calibration.threshold, calibration.validation, calibration.test
    chosen = f"{v.get('dataset', '?')} validation, {v.get('identities', '?')} held-out identities"
    measured = (
        f"; on the test split TPR {_percent(test.get('tpr'))}%, FPR {100 * float(test.get('fpr', 0)):.4f}%"
        if test
        else ""
    )
    return (
        f"- Same {kind}: cosine similarity ≥ **{t:.4f}**, {calibration.operating_point} (chosen by "
        f"`svllreid calibrate` on {chosen}{measured}). A tracker's cosine-distance gate is 1 − {t:.4f} = "
        f"{1 - t:.4f}. Stored in `{CALIBRATION_FILE}`; it holds for these weights only."
    )


def model_card(config: dict[str, Any], *, load_as: str, calibration: Calibration | None = None) -> str:
    """The folder's ``README.md``: YAML front matter (library, tags, license, datasets, metrics) and a body
    stating what the model was trained on, its measured results, its same-identity threshold
    (``calibration``; None: uncalibrated) and how to load it."""
    spec, pre, trained_on = config["architecture"], config["preprocessing"], config.get("trained_on", {})
    kind = trained_on.get("kind", spec.get("kind", "person"))
    dataset = trained_on.get("name", "unknown")
    results, converted = config.get("results") or {}, config.get("converted")
    front: dict[str, Any] = {
        "library_name": "svllreid",
        "license": config.get("license") or "other",
        "tags": ["svllreid", f"{kind}-re-identification", "image-retrieval", "clip", "clip-reid", "svll-reid"],
        "datasets": [dataset] if dataset not in ("unknown", "?") else [],
        "pipeline_tag": "image-feature-extraction",
    }
    evaluated = results.get("evaluated") or {}
    final = headline_result(results)
    if final:
        front["metrics"] = ["mAP", "rank-1"]
        front["model-index"] = [
            {
                "name": config["name"],
                "results": [
                    {
                        "task": {"type": "image-feature-extraction", "name": f"{kind.capitalize()} re-identification"},
                        "dataset": {"name": final.get("dataset", dataset), "type": final.get("dataset", dataset)},
                        "metrics": [
                            {"type": "mAP", "value": round(100 * float(final["mAP"]), 2), "name": "mAP"},
                            {"type": "rank-1", "value": round(100 * float(final["rank1"]), 2), "name": "Rank-1"},
                        ],
                    }
                ],
            }
        ]
    stride = spec.get("stride")
    geometry = [f"{spec['image_size'][0]}×{spec['image_size'][1]}"]
    if stride:
        geometry.append(f"patch stride {stride}")
    if spec.get("sie"):
        geometry.append(_SIE_WORDS.get(spec["sie"], f"SIE {spec['sie']}"))
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {config['name']}", ""]
    made = (
        f"converted with `svllreid convert` from the {converted.get('from')} authors' checkpoint "
        f"`{converted.get('file')}` (sha256 `{str(converted.get('file_sha256', ''))[:16]}…`)"
        if converted
        else f"trained with svllreid {config['svllreid_version']} (SVLL-ReID / CLIP-ReID, two stages)"
    )
    lines += [
        f"A {kind} re-identification model: {spec['arch']} at {', '.join(geometry)}, {made}, on "
        f"**{dataset}** ({spec['num_classes']} training identities). It turns a {kind} crop into a "
        f"feature vector; two crops of the same {kind} have a high cosine similarity.",
        "",
        "## Results",
        "",
    ]
    if final:
        lines += ["| model | dataset | protocol | mAP | Rank-1 | Rank-5 | mINP |", "|---|---|---|---|---|---|---|"]
        rows = [
            (label, results.get(key)) for key, label in (("final", "this model"), ("untrained", "its pretrained start"))
        ]
        rows += [(f"this model (`svllreid eval`, {name})", row) for name, row in evaluated.items()]
        for label, row in rows:
            if row:
                lines.append(
                    f"| {label} | {row.get('dataset', dataset)} | {row.get('protocol', '–')} | {_percent(row['mAP'])} "
                    f"| {_percent(row.get('rank1'))} | {_percent(row.get('rank5'))} | {_percent(row.get('mINP'))} |"
                )
        sources = (["when the run ended (its `eval.json`)"] if results.get("final") else []) + (
            ["by `svllreid eval` (`eval/<dataset>/eval.json`)"] if evaluated else []
        )
        lines += ["", f"Measured by svllreid on the test splits, in %: {' and '.join(sources)}."]
    else:
        lines.append(
            "Not measured by svllreid for this folder. Measure them with `svllreid eval --checkpoint FOLDER "
            "--dataset NAME --root DATA`."
        )
    text = config.get("text", "free-text")
    text_line = {
        "free-text": "It also encodes text: search a gallery by description (`svllreid search --text ...`).",
        "prompts": "Its text side holds the learned prompts but not CLIP's token embedding: search by photo only.",
        "none": "It has no text side: search by photo only.",
    }[text]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import svllreid",
        "",
        f'extractor = svllreid.FeatureExtractor("{load_as}")',
        'features = extractor(["crop1.jpg", "crop2.jpg"])  # [2, D] float32, L2-normalised',
        f'model = svllreid.from_pretrained("{load_as}")  # the network itself (a TrainedModel)',
        "```",
        "",
        "```bash",
        f"svllreid extract --checkpoint {load_as} --images crops/ --out feats.npz",
        f"svllreid index build --checkpoint {load_as} --images gallery/ --out gallery.index",
        "svllreid search --index gallery.index --query person.jpg --topk 10",
        "```",
        "",
        text_line,
        "",
        "## Input and output",
        "",
        f"- RGB crops resized to {pre['image_size'][0]}×{pre['image_size'][1]} ({pre['resize']}), "
        f"{pre['scale']}, then `(x - mean) / std` with mean {pre['mean']} and std {pre['std']}.",
        f"- Output: {pre['feature']}. Compare features by cosine similarity (a dot product).",
        _threshold_line(calibration, kind),
        "",
        "## Files",
        "",
        f"- `{WEIGHTS_FILE}`: the network's tensors (safetensors; loading never unpickles).",
        f"- `{CONFIG_FILE}`: the network's spec, preprocessing, training recipe and results; a SHA-256 of the "
        "tensors is checked on load.",
        f"- `{CARD_FILE}`: this card.",
        *(
            [f"- `{CALIBRATION_FILE}`: the same-identity threshold (`svllreid calibrate`) and how it was chosen."]
            if calibration
            else []
        ),
        "",
        "## License",
        "",
        f"{front['license']}. The weights derive from {dataset}: its license and terms of use apply to them too.",
        "",
    ]
    return "\n".join(lines)


def _publish_folder(staging: Path, folder: Path) -> None:
    """Rename the finished ``staging`` folder to ``folder``, replacing an existing one only once the new
    one is complete."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    try:
        staging.rename(folder)
    except OSError:
        if old.exists():
            old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_pretrained(
    source: str | Path,
    folder: str | Path,
    *,
    identities: bool = False,
    license: str | None = None,
    name: str | None = None,
    load_as: str | None = None,
    overwrite: bool = False,
) -> SavedModel:
    """Write a trained model as a model folder: ``model.safetensors``, ``config.json`` and ``README.md``,
    and ``model.calibration.json`` where the source has a calibration sidecar (``svllreid calibrate``).

    Example:
        ``checkpoint`` is what ``svllreid train`` wrote (a run directory works too, and adds its results):

        >>> import svllreid
        >>> saved = svllreid.save_pretrained(checkpoint, "my-model")
        >>> sorted(p.name for p in saved.folder.iterdir())
        ['README.md', 'config.json', 'model.safetensors']
        >>> svllreid.from_pretrained("my-model", device="cpu").spec.arch
        'svll-tiny-vit'

    Args:
        source: a run directory, a checkpoint file, a model folder or an ``hf-hub:`` name.
        identities: include the training set's names of the identities (read from the training set).
        license: the license field of the card (a Hub license id such as ``cc-by-nc-4.0``); "other" if None.
        name: the model's name on the card (default: the folder's name).
        load_as: how the card's examples load the model (default: the folder's path).
        overwrite: replace an existing folder (only once the new one is complete).

    Raises:
        CheckpointError: no trained model at ``source``.
        ExportError: ``folder`` exists (without ``overwrite``), or the identity names cannot be read.
        CalibrationError: the source's calibration sidecar is damaged or was chosen on other weights.
    """
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        if not is_model_folder(folder):
            raise ExportError(
                f"{folder} exists and is not a model folder; svllreid replaces nothing else. Pass a new or empty folder"
            )
        if not overwrite:
            raise ExportError(
                f"{folder} exists already; pass another folder, or overwrite=True (--overwrite) to replace it"
            )
    resolved = resolve_checkpoint(source)
    if resolved.resolve().is_relative_to(folder):
        raise ExportError(f"{folder} holds the model being saved ({resolved}); save it to another folder")
    checkpoint = read_checkpoint(source if is_hub_name(source) else resolved)
    if checkpoint.meta.get("task") == PRETRAIN_TASK or "spec" not in checkpoint.meta:
        raise CheckpointError(f"{checkpoint.path} is not a trained ReID model (a pretraining checkpoint?)")
    tensors = {k: v.contiguous() for k, v in checkpoint.group("model").items()}
    weights = weights_sha256(tensors)
    sidecar = sidecar_path(resolved)
    calibration = read_calibration(sidecar) if sidecar.is_file() else None
    if calibration is not None:
        calibration.check_weights(weights, str(resolved))
    # A model folder saved again keeps what it knew: results, identity names, license.
    prior = read_folder_config(resolved.parent) if is_model_folder(resolved.parent) else {}
    names = _identities(checkpoint) if identities else prior.get("identities")
    config = folder_config(
        checkpoint,
        weights,
        name=name or folder.name,
        identities=names,
        results=_results(_run_folder(resolved), resolved, weights) or prior.get("results") or {},
        license=license or prior.get("license"),
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.partial-*"):  # left by an interrupted save
        shutil.rmtree(stale, ignore_errors=True)
    staging = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    staging.mkdir()
    try:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        card = model_card(config, load_as=load_as or str(folder), calibration=calibration)
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        if calibration is not None:
            shutil.copyfile(sidecar, staging / CALIBRATION_FILE)
        _publish_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SavedModel(folder, config, calibration)
