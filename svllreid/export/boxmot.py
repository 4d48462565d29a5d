"""``svllreid export --format boxmot``: a trained network in a form the BoxMOT tracker loads.

What BoxMOT does with a ReID file (read in its repository, ``boxmot/appearance``, at commits 67bca34 and
0134181; see docs/DEPLOY.md):
- It picks the network by a substring of the file name (``clip``, ``osnet_x1_0``, ...) and builds it
  before loading the weights, for the ``.pt`` and ONNX backends alike.
- Its CLIP builder is CLIP-ReID's ViT-B-16 at 256×128, patch stride 16, without SIE (``MODEL.NAME``
  ``ViT-B-16``, ``STRIDE_SIZE`` [16, 16], ``SIE_CAMERA`` / ``SIE_VIEW`` off). It takes the features after
  the BNNecks (``TEST.NECK_FEAT`` "after").
- It loads a ``torch.load`` dict (``state_dict`` inside, or the dict itself) and silently drops every key
  whose name or shape does not match. The number of identities comes from the file name's second
  ``_`` field looked up by dataset (``clip_market1501_svllreid.pt``: "market1501", 751; its own
  ``clip_market1501.pt`` gives "market1501.pt", an unknown key, so 1). With another number the
  classifiers are dropped, which the features do not use.
- Every backend feeds crops resized to 256×128 with OpenCV's bilinear filter (no antialiasing), RGB,
  ``(pixel / 255 - ImageNet mean) / ImageNet std``, and L2-normalises what comes out. An ONNX file gets
  only its first input.

So a ViT-B-16 at stride 16, 256×128, without SIE becomes a ``.pt`` state dict under CLIP-ReID's key names
(:func:`boxmot_state_dict`). Any other network becomes an ONNX file whose graph takes BoxMOT's input as
it comes: it undoes the ImageNet normalisation, applies the network's own, resizes to the network's input
size where that differs from 256×128, and runs the image branch (:class:`BoxmotInput`).

The ``openvino`` route writes the ONNX route's graph as an OpenVINO IR into a folder whose name ends in
``_openvino_model`` (BoxMOT's OpenVINO backend takes that folder and opens the ``.xml`` in it). Read in
BoxMOT's ``openvino_backend.py`` and ``base_backend.py``: it compiles the IR on the CPU with OpenVINO's
default precision (bfloat16 where the processor has it), and, the weights being a folder and not a file,
it builds the named network with ``pretrained=True`` before it opens the IR.

A calibrated checkpoint's same-identity threshold (``svllreid calibrate``) goes into the ONNX file's
metadata as ``svllreid export`` puts it there: ``svllreid.calibration`` and ``svllreid.max_cosine_distance``
(``1 - threshold``, the value for a tracker's appearance gate). The ``.pt`` route carries none: the
threshold was chosen on the network's own features, and BoxMOT's CLIP builder computes others (after the
BNNecks, from ImageNet-normalised crops), on which it means nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from svllreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from svllreid.fileio import atomic_write, check_writable
from svllreid.inference.calibration import Calibration
from svllreid.inference.image_branch import ImageBranch
from svllreid.inference.trained import TrainedModel

__all__ = [
    "BOXMOT_DATASETS",
    "BOXMOT_FACTS",
    "BOXMOT_INPUT",
    "ONNX_NAME_TYPE",
    "PT_UNCALIBRATED",
    "ROUTES",
    "BoxmotExport",
    "BoxmotInput",
    "boxmot_file_name",
    "boxmot_state_dict",
    "check_boxmot_name",
    "export_boxmot",
    "pt_incompatibility",
    "uses_imagenet_statistics",
]

#: BoxMOT's crop size (H, W); it normalises with ImageNet's statistics (IMAGENET_MEAN / IMAGENET_STD).
BOXMOT_INPUT = (256, 128)
#: What a BoxMOT-ready ONNX file says of its input (over :func:`svllreid.export.exporter.export_facts`).
BOXMOT_FACTS = {
    "inputs": {"images": "[B, 3, 256, 128] float32, RGB, as BoxMOT prepares its crops"},
    "preprocessing": {
        "image_size": list(BOXMOT_INPUT),
        "interpolation": "bilinear",
        "resize": "bilinear (OpenCV INTER_LINEAR, as BoxMOT does), to exactly 256 x 128",
        "scale": "pixel / 255",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "formula": "(pixel / 255 - ImageNet mean) / ImageNet std: BoxMOT's normalisation; the graph converts "
        "it to the network's own and resizes to the network's input",
    },
    "boxmot": True,
}
#: Identities BoxMOT reads from the file name's second "_" field (its NR_CLASSES_DICT), by dataset.
BOXMOT_DATASETS = {"market1501": "market1501", "dukemtmc": "duke", "veri776": "veri", "vehicleid": "vehicleid"}
#: A model type BoxMOT knows, other than clip, for the name of an ONNX file: BoxMOT builds that (small)
#: torch network before it opens the ONNX file. The name leaves out "clip": the issue that asked for
#: this export reports BoxMOT versions that use CLIP's 0.5 statistics for such names, while the versions
#: read here use ImageNet's for every name; without "clip" both give ImageNet's, which the graph expects.
ONNX_NAME_TYPE = "osnet_x0_25"

#: Our parameter names -> CLIP-ReID's (its build_transformer: image_encoder = CLIP's visual tower,
#: bottleneck / bottleneck_proj BatchNorm1d, classifier / classifier_proj Linear without bias).
_RENAMES = (
    ("image_encoder.visual.", "image_encoder."),
    ("neck.bn.", "bottleneck."),
    ("neck_proj.bn.", "bottleneck_proj."),
    ("neck.classifier.", "classifier."),
    ("neck_proj.classifier.", "classifier_proj."),
)


def pt_incompatibility(trained: TrainedModel) -> str | None:
    """Why BoxMOT's CLIP builder cannot hold this network (None: it can)."""
    spec = trained.spec
    problems = []
    if spec.arch != "ViT-B-16":
        problems.append(f"the architecture is {spec.arch}, not ViT-B-16")
    if spec.stride not in (None, 16):
        problems.append(f"the patch stride is {spec.stride}, not 16")
    if tuple(spec.image_size) != BOXMOT_INPUT:
        problems.append(f"the input is {spec.image_size[0]}×{spec.image_size[1]}, not 256×128")
    if spec.sie:
        problems.append(f"it has SIE ({spec.sie})")
    return "; ".join(problems) or None


def boxmot_state_dict(trained: TrainedModel) -> dict[str, torch.Tensor]:
    """The tensors BoxMOT's CLIP builder holds, under CLIP-ReID's names: the image encoder, both
    BNNecks and both classifiers. The text encoder, prompts and self-supervision heads are left out
    (BoxMOT would drop them).

    Raises:
        ValueError: a network BoxMOT's builder cannot hold (:func:`pt_incompatibility`), or a tensor of the
            image branch that has no CLIP-ReID name.
    """
    reason = pt_incompatibility(trained)
    if reason:
        raise ValueError(f"BoxMOT's CLIP builder cannot hold this network: {reason}; export it as ONNX instead")
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in trained.model.state_dict().items():
        for ours, theirs in _RENAMES:
            if name.startswith(ours):
                renamed[theirs + name[len(ours) :]] = tensor.detach().cpu().clone()
                break
        else:
            if name.startswith("image_encoder."):
                raise ValueError(f"{name} is part of the image branch but has no place in CLIP-ReID's model")
    return renamed


class BoxmotInput(nn.Module):
    """BoxMOT's input (256×128, ImageNet-normalised) to the network's: the statistics swapped, the size
    changed (bilinear) where the network's differs, then the image branch."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, trained: TrainedModel):
        super().__init__()
        self.path = ImageBranch(trained.model)
        mean, std = trained.config.data.pixel_mean, trained.config.data.pixel_std

        def column(values: Any) -> torch.Tensor:
            return torch.tensor(list(values), dtype=torch.float32).view(1, 3, 1, 1)

        # (x * s_in + m_in - m) / s = x * (s_in / s) + (m_in - m) / s
        self.register_buffer("scale", column(IMAGENET_STD) / column(std))
        self.register_buffer("shift", (column(IMAGENET_MEAN) - column(mean)) / column(std))
        self.size = tuple(int(v) for v in trained.image_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * self.scale + self.shift
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.path(x)


#: Why a ``.pt`` file carries no calibration (see the module docstring).
PT_UNCALIBRATED = (
    "the same-identity threshold was chosen on the network's own features; BoxMOT's CLIP builder computes "
    "others (after the BNNecks, from ImageNet-normalised crops), so the .pt file carries none: "
    "--boxmot-route onnx writes a file that keeps the features and carries the threshold"
)


@dataclass
class BoxmotExport:
    path: Path
    kind: str  # "pt", "onnx" or "openvino"
    why_onnx: str | None
    tensors: int
    #: The checkpoint's calibration (None: uncalibrated), and whether the file carries it (ONNX and OpenVINO do).
    calibration: Calibration | None = None
    carries_calibration: bool = False


def boxmot_file_name(trained: TrainedModel, kind: str) -> str:
    """A file name BoxMOT reads the right way (see the module docstring); for ``openvino`` the IR's
    path inside the folder BoxMOT is given."""
    dataset = BOXMOT_DATASETS.get(trained.trained_on, "svllreid")
    if kind == "pt":
        return f"clip_{dataset}_svllreid.pt"  # BoxMOT reads the identities from the second "_" field
    stem = f"{ONNX_NAME_TYPE}_{dataset}-{trained.spec.arch.lower()}"
    if kind == "openvino":
        return f"{stem}{OPENVINO_FOLDER}/{stem}.xml"
    return f"{stem}.onnx"


def check_boxmot_name(path: Path, kind: str) -> None:
    """Refuse a file name that BoxMOT would read as another network or with other statistics."""
    name = path.name.lower()
    if kind == "pt" and (path.suffix != ".pt" or "clip" not in name):
        raise ValueError(
            f"BoxMOT picks its CLIP builder by 'clip' in a .pt file's name; {path.name} would not load. Name it "
            "like clip_market1501_svllreid.pt (or pass a folder and svllreid names it)"
        )
    if kind == "openvino":
        folder = path.parent.name.lower()
        named = folder.endswith(OPENVINO_FOLDER) and "clip" not in folder and ONNX_NAME_TYPE in folder
        if path.suffix != ".xml" or not named:
            raise ValueError(
                f"BoxMOT opens an OpenVINO model from a folder named after a network type it knows, ending in "
                f"{OPENVINO_FOLDER} and without 'clip'; {path.parent.name} does not qualify. Pass a folder, and "
                f"svllreid writes {ONNX_NAME_TYPE}_<dataset>-<arch>{OPENVINO_FOLDER}/ inside it"
            )
    if kind == "onnx" and (path.suffix != ".onnx" or "clip" in name or ONNX_NAME_TYPE not in name):
        raise ValueError(
            f"BoxMOT needs an ONNX file named after a network type it knows, and without 'clip' (which newer "
            f"versions read as CLIP's statistics); {path.name} does not qualify. Name it like "
            f"{ONNX_NAME_TYPE}_market1501-svllreid.onnx (or pass a folder and svllreid names it)"
        )


#: ``route`` of :func:`export_boxmot`.
ROUTES = ("auto", "pt", "onnx", "openvino")
#: The end of the folder name by which BoxMOT tells an OpenVINO model (its export_formats suffix).
OPENVINO_FOLDER = "_openvino_model"


def export_boxmot(trained: TrainedModel, out: str | Path, *, route: str = "auto") -> BoxmotExport:
    """Write ``trained`` for BoxMOT and return what was written. ``out`` is a file, or a folder in which
    :func:`boxmot_file_name` names it.

    Args:
        route: ``auto``: a ``.pt`` state dict where BoxMOT's CLIP builder can hold the network, else an
            ONNX file taking BoxMOT's input; ``pt`` or ``onnx`` to choose; ``openvino``: the ONNX route's
            graph as an OpenVINO IR, in the ``*_openvino_model`` folder BoxMOT's OpenVINO backend opens.
            The ``.pt`` route feeds the network BoxMOT's ImageNet statistics and takes the features after
            the BNNecks (docs/DEPLOY.md measures the cost); the ONNX and OpenVINO routes keep the network's
            own features, and carry the checkpoint's calibration (the ``.pt`` file carries none:
            :data:`PT_UNCALIBRATED`).

    Raises:
        ValueError: an unknown route, ``pt`` for a network the builder cannot hold, or a file name BoxMOT
            would misread.
        CalibrationError: the checkpoint's calibration sidecar is damaged or was chosen on other weights.
    """
    from svllreid.export.exporter import checkpoint_calibration, export_module

    if route not in ROUTES:
        raise ValueError(f"unknown BoxMOT route {route!r}; choose one of {', '.join(ROUTES)}")
    why_onnx = pt_incompatibility(trained)
    if route == "pt" and why_onnx:
        raise ValueError(f"BoxMOT's CLIP builder cannot hold this network: {why_onnx}; use the ONNX route")
    kind = route if route in ("onnx", "openvino") else ("onnx" if why_onnx else "pt")
    out = Path(out)
    if kind == "openvino" and out.name.lower().endswith(OPENVINO_FOLDER):  # the folder BoxMOT is given
        out = out / f"{out.name[: -len(OPENVINO_FOLDER)]}.xml"
    elif out.is_dir() or not out.suffix:
        out = out / boxmot_file_name(trained, kind)
    check_boxmot_name(out, kind)
    check_writable(out)
    if kind == "pt":
        calibration = checkpoint_calibration(trained)  # not carried, but one of other weights is refused
        tensors = boxmot_state_dict(trained)
        payload = {"state_dict": tensors, "model_name": "clip", "num_classes": trained.spec.num_classes}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write(out, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
        return BoxmotExport(out, kind, None, len(tensors), calibration, carries_calibration=False)
    report = export_module(
        trained, BoxmotInput(trained).eval(), out, input_size=BOXMOT_INPUT, facts=BOXMOT_FACTS, fmt=kind
    )
    calibrated = report.calibration is not None
    return BoxmotExport(out, kind, why_onnx or "asked for", 0, report.calibration, carries_calibration=calibrated)


def uses_imagenet_statistics(trained: TrainedModel) -> bool:
    """Whether the network was trained with ImageNet's statistics (what BoxMOT's .pt route feeds it)."""
    data = trained.config.data
    ours, imagenet = [*data.pixel_mean, *data.pixel_std], [*IMAGENET_MEAN, *IMAGENET_STD]
    return len(ours) == len(imagenet) and all(abs(a - b) < 1e-6 for a, b in zip(ours, imagenet, strict=True))
