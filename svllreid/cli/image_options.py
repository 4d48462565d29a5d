"""The image-set options that ``extract``, ``index build`` and ``index add`` share: which network encodes
the images, and where their identity and camera labels come from."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from svllreid.data.images import FileLabels


def add_model_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--checkpoint`` or ``--model``: the network that encodes the images (one of them ``required``)."""
    which = parser.add_mutually_exclusive_group(required=required)
    which.add_argument(
        "--checkpoint",
        help="checkpoint file, run directory, model folder or hf-hub:ORG/NAME"
        + ("" if required else " (default: the one the index names)"),
    )
    which.add_argument(
        "--model",
        metavar="FILE.onnx|FILE.xml",
        help="a file from 'svllreid export' run on the CPU: .onnx by onnxruntime (pip install 'svllreid[onnx]'), "
        ".xml (OpenVINO IR, its .bin beside it) by OpenVINO (pip install 'svllreid[openvino]')",
    )


def add_label_args(parser: argparse.ArgumentParser) -> None:
    """``--identity-folders`` / ``--pid-regex`` and ``--camera-regex``: the images' labels."""
    parser.add_argument(
        "--identity-folders",
        action="store_true",
        help="identity from the image's folder: --images DIR holds DIR/<identity>/*.jpg",
    )
    parser.add_argument(
        "--pid-regex", default=None, help="identity from the file name, e.g. '^(\\d+)_' (group 'pid', else the first)"
    )
    parser.add_argument(
        "--camera-regex",
        default=None,
        help="camera from the file name, e.g. '_c(\\d+)' or '_(left|right)' (group 'cam', else the first)",
    )


def file_label_options(args: argparse.Namespace, paths: list[str]) -> tuple[FileLabels | None, FileLabels | None]:
    """The identity and camera labels of ``paths`` by ``--identity-folders`` / ``--pid-regex`` and
    ``--camera-regex`` (:func:`svllreid.data.images.file_labels`); None for each not asked for."""
    from svllreid.data.images import file_labels

    if args.identity_folders and args.pid_regex:
        raise ValueError("--identity-folders and --pid-regex are two ways to give identities; choose one")
    pids = file_labels(paths, what="pid", pattern=args.pid_regex, root=args.images, folders=args.identity_folders)
    return pids, file_labels(paths, what="camera", pattern=args.camera_regex)
