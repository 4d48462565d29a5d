"""An exported ONNX image branch (``svllreid export --format onnx``) run by onnxruntime, with what
``extract``, ``index build``, ``search`` and :class:`svllreid.FeatureExtractor` read of a model: the
input size, the resize filter, the pixel statistics and the network's identity, all from the file's
metadata, and the same-identity threshold it carries (:attr:`ExportedModel.calibration`). Importing this
module imports neither open_clip nor torchvision; onnxruntime is imported when a file is loaded
(``pip install 'svllreid[onnx]'``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from svllreid.errors import CalibrationError, MissingExtraError
from svllreid.inference.calibration import Calibration
from svllreid.inference.image_branch import CompiledImageBranch
from svllreid.inference.trained import require_same_features

__all__ = [
    "CALIBRATION_KEY",
    "DISTANCE_KEY",
    "FORMAT",
    "METADATA_KEY",
    "ONNX_EXTRA",
    "ExportedModel",
    "OnnxModel",
    "cpu_session",
    "is_onnx_file",
    "load_onnx_model",
    "parse_export_facts",
]

ONNX_EXTRA = "pip install 'svllreid[onnx]' (onnx, onnxscript and onnxruntime)"
#: Metadata key (ONNX ``metadata_props``; TorchScript ``<key>.json``) and format tag of an export's facts.
METADATA_KEY = "svllreid"
FORMAT = "svllreid-image-path"
#: ONNX ``metadata_props`` of a calibrated export: the :class:`~svllreid.inference.calibration.Calibration`
#: as JSON, and a tracker's cosine-distance gate, ``1 - threshold``, as a decimal number.
CALIBRATION_KEY = "svllreid.calibration"
DISTANCE_KEY = "svllreid.max_cosine_distance"


class _SessionImagePath(nn.Module):
    """A runtime's session (anything with onnxruntime's ``run(None, feed)``) with the ``encode_image``
    signature of a ReID model."""

    def __init__(self, session: Any, *, side_info: bool, float16: bool, spec: Mapping[str, Any] | None = None):
        super().__init__()
        self.session, self.side_info, self.float16 = session, side_info, float16
        spec, mode = spec or {}, str((spec or {}).get("sie") or "")
        # The ids the network's SIE reads, and how many of each it has.
        self.limits = {what: int(spec.get(f"num_{what}s", 0)) for what in ("camera", "view") if what in mode.split("_")}

    def encode_image(
        self, images: torch.Tensor, camids: torch.Tensor | None = None, viewids: torch.Tensor | None = None
    ) -> torch.Tensor:
        pixels = images.detach().cpu().numpy().astype(np.float16 if self.float16 else np.float32)
        feed = {"images": pixels}
        if self.side_info:
            unknown = np.full(len(pixels), -1, dtype=np.int64)
            cams = unknown if camids is None else camids.cpu().numpy().astype(np.int64)
            views = unknown if viewids is None else viewids.cpu().numpy().astype(np.int64)
            for what, ids in (("camera", cams), ("view", views)):
                if what not in self.limits:
                    continue  # the network's SIE does not read this id
                # The graph cannot check its ids (a branch on values would not export): they are checked here.
                bad = (ids < -1) | (ids >= self.limits[what])
                if bad.any():
                    raise ValueError(
                        f"{what} id {int(ids[bad][0])} is outside the network's {self.limits[what]} {what}s "
                        "(0..N-1, or -1 for unknown)"
                    )
            feed["side_info"] = np.stack([cams, views], axis=1)
        return torch.from_numpy(np.asarray(self.session.run(None, feed)[0], dtype=np.float32))


@dataclass(kw_only=True)
class ExportedModel(CompiledImageBranch):
    """An exported image branch run by a CPU runtime: an ONNX file on onnxruntime's CPU provider, or an
    OpenVINO IR on OpenVINO's CPU plugin (:func:`svllreid.inference.openvino_backend.load_openvino_model`).
    ``network`` is the network's identity (as :meth:`svllreid.inference.trained.TrainedModel.identity` gave
    it when the file was exported)."""

    path: Path
    feature_dim: int
    facts: dict[str, Any] = field(repr=False)
    #: What runs the file: "onnxruntime" or "openvino".
    runtime: str = "onnxruntime"
    #: The file's ``svllreid.calibration`` metadata as written (None: an uncalibrated export).
    calibration_json: str | None = field(default=None, repr=False)

    @property
    def calibration(self) -> Calibration | None:
        """The same-identity threshold the file carries (``svllreid.calibration``), None where it carries
        none (an uncalibrated export).

        Raises:
            CalibrationError: a damaged calibration, or one chosen on other weights than those the file
                records.
        """
        if not self.calibration_json:
            return None
        where = f"the calibration in {self.path}"
        try:
            data = json.loads(self.calibration_json)
        except json.JSONDecodeError as err:
            raise CalibrationError(f"{where} is not JSON ({err}); export the calibrated checkpoint again") from None
        calibration = Calibration.from_dict(data, where)
        digest = self.network.get("weights_sha256")
        calibration.check_weights(str(digest) if digest else None, str(self.path))
        return calibration

    @classmethod
    def from_facts(
        cls,
        path: Path,
        session: Any,
        facts: dict[str, Any],
        *,
        inputs: list[str],
        feature_dim: int,
        calibration_json: str | None,
        runtime: str,
    ) -> ExportedModel:
        """The model of a loaded file: ``session`` (with onnxruntime's ``run(None, feed)``), the facts
        ``svllreid export`` stored in it, and the names of its ``inputs``."""
        pre = facts["preprocessing"]
        return cls(
            path=path,
            model=_SessionImagePath(
                session,
                side_info="side_info" in inputs,
                float16=facts.get("precision") == "fp16",
                spec=facts.get("identity", {}).get("spec", {}),
            ),
            image_size=(int(pre["image_size"][0]), int(pre["image_size"][1])),
            interpolation=str(pre["interpolation"]),
            mean=tuple(float(v) for v in pre["mean"]),
            std=tuple(float(v) for v in pre["std"]),
            network=dict(facts.get("identity", {})),
            feature_dim=feature_dim,
            facts=facts,
            calibration_json=calibration_json,
            runtime=runtime,
        )

    def identity(self) -> dict[str, Any]:
        """What identifies the network (stored with feature files and indexes), as a checkpoint's
        :meth:`~svllreid.inference.trained.TrainedModel.identity` does, so that the two are comparable."""
        files = [self.path, *([self.path.with_suffix(".bin")] if self.runtime == "openvino" else [])]
        # The file's version too: a file exported again to the same path (INT8 after fp32, say) is other
        # features, which a resumed sharded run must not mix with the earlier ones.
        version = ";".join(f"{(st := f.stat()).st_size}:{st.st_mtime_ns}" for f in files)
        return {**self.network, "model_file": str(self.path.resolve()), "model_file_version": version}

    def index_meta(self, *, flip: bool, images: str | Path) -> dict[str, Any]:
        """What an index built with this file stores (see ``TrainedModel.index_meta``; files exported
        before svllreid recorded f_proj's width give indexes without it, which text search refuses)."""
        meta = {**self.identity(), "flip": bool(flip), "images": str(Path(images).resolve())}
        if isinstance(self.facts.get("text_dim"), int):
            meta["text_dim"] = self.facts["text_dim"]
        return meta

    def describe(self) -> str:
        spec = self.spec
        size = f"{self.image_size[0]}×{self.image_size[1]}"
        return (
            f"{spec.get('arch', '?')} {size} trained on {self.network.get('trained_on', '?')}, exported "
            f"({self.facts.get('exporter', '?')}, {self.facts.get('precision', '?')}) to {self.path}, on {self.runtime}"
        )

    def check_same_features(self, identity: Mapping[str, Any], index: str, *, checkpoint: str | None = None) -> None:
        """Check that this file makes an index's features: the same network (spec) and the same weights
        (digest) as the model that built ``index``, whichever runtime that was.

        Raises:
            CheckpointError: another network or other weights.
        """
        saved, ours = identity.get("spec") or {}, self.spec
        require_same_features(
            identity,
            index,
            shown=str(self.path),
            differences=(k for k in {**saved, **ours} if saved and saved.get(k) != ours.get(k)),
            weights_sha256=lambda: str(self.network.get("weights_sha256")),
            kind="model",
        )


#: The name the class had when ONNX was the only exported format.
OnnxModel = ExportedModel


def cpu_session(source: str | bytes, *, float16: bool, threads: int | None = None) -> Any:
    """An onnxruntime session on the CPU provider, for a file path or serialised model.

    onnxruntime 1.32's CPU graph optimisations crash (segmentation fault) on svllreid's float16 graphs;
    without them the CPU provider runs them, so ``float16`` turns them off.

    Raises:
        MissingExtraError: onnxruntime is not installed.
    """
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise MissingExtraError(f"running ONNX files needs onnxruntime: {ONNX_EXTRA}") from err
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    if float16:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def parse_export_facts(text: str | None, path: str | Path) -> dict[str, Any]:
    """The facts ``svllreid export`` stored in a file (its ``svllreid`` metadata, ``text``).

    Raises:
        ValueError: no metadata, or not an svllreid image-path export.
    """
    if not text:
        raise ValueError(f"{path} holds no svllreid metadata: it was not written by 'svllreid export'")
    facts = json.loads(text)
    if not isinstance(facts, dict) or facts.get("format") != FORMAT:
        found = facts.get("format") if isinstance(facts, dict) else None
        raise ValueError(f"{path} is not an svllreid image-path export (format {found!r})")
    return facts


def load_onnx_model(path: str | Path, *, device: str = "auto", threads: int | None = None) -> ExportedModel:
    """An ONNX file written by ``svllreid export``, ready to encode images on the CPU.

    Args:
        device: ``auto`` or ``cpu`` (onnxruntime's CPU provider runs the file; anything else is refused).
        threads: onnxruntime's intra-op threads (default: torch's, so that one setting governs both).

    Raises:
        MissingExtraError: onnxruntime is not installed.
        ValueError: another device, or the file is missing, not ONNX, or not an svllreid export.
    """
    if device not in ("auto", "cpu"):
        raise ValueError(f"an ONNX file runs on onnxruntime's CPU provider here; device {device!r} is not used")
    path = Path(path).expanduser()
    if not is_onnx_file(path):
        raise ValueError(
            f"{path} is not an .onnx file: --model takes an export of 'svllreid export --format onnx' (.onnx) or "
            "'--format openvino' (.xml); a checkpoint or run directory goes to --checkpoint, and TorchScript files "
            "run with torch.jit.load"
        )
    if not path.is_file():
        raise ValueError(f"{path} does not exist; write it with 'svllreid export --format onnx'")
    # First without graph optimisations (see cpu_session): enough to read the metadata and run an fp16 file.
    try:
        session = cpu_session(str(path), float16=True, threads=threads)
    except MissingExtraError:
        raise
    except Exception as err:  # onnxruntime's own errors for a file it cannot read
        raise ValueError(f"{path} is not a readable ONNX file ({type(err).__name__}: {err})") from err
    metadata = session.get_modelmeta().custom_metadata_map
    facts = parse_export_facts(metadata.get(METADATA_KEY), path)
    if facts.get("precision") != "fp16":
        session = cpu_session(str(path), float16=False, threads=threads)
    return ExportedModel.from_facts(
        path,
        session,
        facts,
        inputs=[arg.name for arg in session.get_inputs()],
        feature_dim=int(session.get_outputs()[0].shape[1]),
        calibration_json=metadata.get(CALIBRATION_KEY),
        runtime="onnxruntime",
    )


def is_onnx_file(path: str | os.PathLike[str]) -> bool:
    """Whether a model argument names an ONNX file (by its suffix) rather than a checkpoint."""
    return Path(path).suffix.lower() == ".onnx"
