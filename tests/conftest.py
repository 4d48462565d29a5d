"""Shared fixtures and helpers: tiny fake dataset trees with the real naming schemes, a subset of the real
pedestrians, tiny trained runs, and scripts run in this process."""

from __future__ import annotations

import io
import json
import os
import runpy
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

if TYPE_CHECKING:
    from svllreid.export.exporter import ExportReport
    from svllreid.inference.trained import TrainedModel

#: The real pedestrians of the repository (CC BY-NC-SA 4.0, data/pku-reid-subset/LICENSE.md).
PKU = Path(__file__).resolve().parents[1] / "data" / "pku-reid-subset"


def _jpeg_bytes(color: tuple[int, int, int] = (120, 80, 40), size: tuple[int, int] = (8, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


TINY_JPEG = _jpeg_bytes()


def write_images(folder: Path, names: Iterable[str], data: bytes = TINY_JPEG) -> list[Path]:
    """Write the same tiny JPEG under every name (folders created as needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def market_names(pid: int, cams: Iterable[int], per_cam: int, start: int = 0) -> list[str]:
    return [f"{pid:04d}_c{c}s1_{start + i:06d}_00.jpg" for c in cams for i in range(per_cam)]


def duke_names(pid: int, cams: Iterable[int], per_cam: int) -> list[str]:
    return [f"{pid:04d}_c{c}_f{1000 * c + i:07d}.jpg" for c in cams for i in range(per_cam)]


@pytest.fixture
def market_root(tmp_path: Path) -> Path:
    """3 train ids (2, 7, 9 with 4, 2, 6 images), 2 query ids, gallery with junk (-1) and distractors (0)."""
    root = tmp_path / "Market-1501-v15.09.15"
    write_images(
        root / "bounding_box_train",
        market_names(2, [1, 2], 2) + market_names(7, [3], 2) + market_names(9, [4, 5, 6], 2),
    )
    write_images(root / "query", market_names(11, [1], 1) + market_names(12, [2], 1))
    gallery = market_names(11, [1, 3], 2) + market_names(12, [4], 3) + market_names(0, [5], 2)
    gallery += ["-1_c6s1_000001_00.jpg", "-1_c1s1_000002_00.jpg"]
    write_images(root / "bounding_box_test", gallery)
    (root / "bounding_box_test" / "Thumbs.db").write_text("not an image")
    return root


@pytest.fixture
def duke_root(tmp_path: Path) -> Path:
    root = tmp_path / "DukeMTMC-reID"
    write_images(root / "bounding_box_train", duke_names(5, [1, 8], 2) + duke_names(6, [2], 3))
    write_images(root / "query", duke_names(20, [7], 1))
    write_images(root / "bounding_box_test", duke_names(20, [3, 7], 2) + duke_names(21, [1], 1))
    return root


@pytest.fixture
def msmt_root(tmp_path: Path) -> Path:
    """Train list (2 ids), val list (1 more id and 1 shared), query/gallery lists over test/."""
    root = tmp_path / "MSMT17_V1"

    def name(pid: int, cam: int, i: int) -> str:
        return f"{pid:04d}/{pid:04d}_{i:03d}_{cam:02d}_0303morning_{i:04d}_0.jpg"

    train = [(name(0, 1, 0), 0), (name(0, 15, 1), 0), (name(1, 3, 2), 1)]
    val = [(name(1, 4, 3), 1), (name(5, 2, 4), 5)]
    query = [(name(100, 1, 0), 100)]
    gallery = [(name(100, 2, 1), 100), (name(100, 1, 2), 100), (name(101, 9, 3), 101)]
    for folder, entries in (("train", train + val), ("test", query + gallery)):
        write_images(root / folder, [rel for rel, _ in entries])
    for list_name, entries in (("train", train), ("val", val), ("query", query), ("gallery", gallery)):
        (root / f"list_{list_name}.txt").write_text("".join(f"{rel} {label}\n" for rel, label in entries))
    return root


def veri_names(pid: int, cams: Iterable[int], per_cam: int) -> list[str]:
    return [f"{pid:04d}_c{c:03d}_{100 * c + i:08d}_0.jpg" for c in cams for i in range(per_cam)]


@pytest.fixture
def veri_root(tmp_path: Path) -> Path:
    root = tmp_path / "VeRi"
    write_images(root / "image_train", veri_names(1, [1, 20], 2) + veri_names(3, [5], 2))
    write_images(root / "image_query", veri_names(2, [2], 1))
    write_images(root / "image_test", veri_names(2, [2, 3], 2) + veri_names(4, [7], 1))
    return root


def write_veri_views(root: Path, skip: Iterable[str] = ()) -> None:
    """Viewpoint files in the keypoint format: path, 20 keypoint coordinates, view id last."""
    skip = set(skip)
    for label_file, folders in (
        ("keypoint_train.txt", ["image_train"]),
        ("keypoint_test.txt", ["image_query", "image_test"]),
    ):
        lines = []
        for folder in folders:
            for i, path in enumerate(sorted((root / folder).iterdir())):
                if path.name not in skip:
                    coords = " ".join(["10"] * 40)
                    lines.append(f"VeRi/{folder}/{path.name} {coords} {i % 8}\n")
        (root / label_file).write_text("".join(lines))


@pytest.fixture
def vehicleid_root(tmp_path: Path) -> Path:
    """Train: 3 vehicles. Test 800 list: 3 vehicles (3, 2 and 1 images); 1600 list: 4 vehicles."""
    root = tmp_path / "VehicleID_V1.0"
    train = [("0000001", 1), ("0000002", 1), ("0000003", 4), ("0000004", 7)]
    test_800 = [
        ("0001001", 50),
        ("0001002", 50),
        ("0001003", 50),
        ("0001004", 51),
        ("0001005", 51),
        ("0001006", 52),
    ]
    test_1600 = [*test_800, ("0001007", 60)]
    write_images(root / "image", [f"{n}.jpg" for n, _ in train + test_1600])
    split = root / "train_test_split"
    split.mkdir(parents=True)
    for list_name, rows in (
        ("train_list", train),
        ("test_list_800", test_800),
        ("test_list_1600", test_1600),
    ):
        (split / f"{list_name}.txt").write_text("".join(f"{n} {v}\n" for n, v in rows))
    return root


@pytest.fixture
def pku_root(tmp_path: Path) -> Path:
    root = tmp_path / "pku"
    names = [f"{pid:03d}_{cam:02d}_{o}.jpg" for pid in (1, 2, 3, 4) for cam in (1, 2) for o in (1, 2)]
    write_images(root / "images", names)
    (root / "split.json").write_text('{"train_ids": ["001", "002"], "test_ids": ["003", "004"]}')
    return root


def pku_subset(root: Path, identities: int) -> Path:
    """The first ``identities`` training and test identities of the real PKU-Reid subset (their images
    copied, with a split.json of them): the same pedestrians, cameras and loader in a fraction of the time."""
    split = json.loads((PKU / "split.json").read_text())
    chosen = {key: split[key][:identities] for key in ("train_ids", "test_ids")}
    keep = {pid for ids in chosen.values() for pid in ids}
    (root / "images").mkdir(parents=True)
    for image in (PKU / "images").glob("*.jpg"):
        if image.name.split("_")[0] in keep:
            shutil.copy(image, root / "images")
    (root / "split.json").write_text(json.dumps(chosen))
    return root


def run_script(script: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> str:
    """``python SCRIPT ARGS`` in this process: the file run as ``__main__`` with that argument list and its
    folder first on ``sys.path``, as the interpreter runs it, and what it printed on standard output. A second
    interpreter would spend seconds importing torch (and open_clip, onnxruntime, ...) that this one holds
    already. Fails the test on a non-zero exit, with the end of standard error; an exception propagates
    with its traceback. What the script may change for the whole process is put back: the environment, the
    random generators, torch's thread count and the argument list."""
    import random

    import numpy as np
    import torch

    capsys.readouterr()  # what the test printed before is not the script's
    environ, argv, path, threads = dict(os.environ), sys.argv, list(sys.path), torch.get_num_threads()
    states = random.getstate(), np.random.get_state()
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.parent))
    try:
        with torch.random.fork_rng():
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stopped:
        if stopped.code not in (None, 0):
            pytest.fail(f"{script.name} exited with {stopped.code}: {capsys.readouterr().err[-3000:]}")
    finally:
        sys.argv, sys.path[:] = argv, path
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
        random.setstate(states[0])
        np.random.set_state(states[1])
    return capsys.readouterr().out


@pytest.fixture(scope="session")
def networks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainedModel]:
    """Two untrained tiny networks saved as training saves them (tests/inference/test_query_encoder.py): the
    ViT with SIE on 3 cameras and the ResNet. One pair for the session: the export, ONNX, OpenVINO and
    BoxMOT tests only read them."""
    from svllreid.inference.trained import load_trained_model
    from tests.inference.test_query_encoder import write_tiny_checkpoint

    folder = tmp_path_factory.mktemp("networks")
    vit = write_tiny_checkpoint(folder / "vit.safetensors", "svll-tiny-vit", num_cameras=3, sie="camera")
    rn = write_tiny_checkpoint(folder / "rn.safetensors", "svll-tiny-rn")
    return {"vit-sie": load_trained_model(vit, "cpu"), "rn": load_trained_model(rn, "cpu")}


@pytest.fixture(scope="session")
def exports(networks: dict[str, TrainedModel], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ExportReport]:
    """``exports(name, fmt, side_info=False)``: the report of :func:`networks` ``[name]`` exported as ``fmt``
    (``export_image_branch``), each combination written once in the session. An export takes seconds,
    and several test files check the same one; they only read the file."""
    from svllreid.export.exporter import export_image_branch

    folder = tmp_path_factory.mktemp("exports")
    written: dict[tuple[str, str, bool], ExportReport] = {}

    def export(name: str, fmt: str, side_info: bool = False) -> ExportReport:
        key = (name, fmt, side_info)
        if key not in written:
            suffix = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".pt"}[fmt]
            out = folder / f"{name}{'-side-info' if side_info else ''}{suffix}"
            written[key] = export_image_branch(networks[name], out, fmt=fmt, side_info=side_info)
        return written[key]

    return export


@pytest.fixture(scope="session")
def verification_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny trained run with a validation split (5 of its 20 synthetic identities held out), shared by
    the tests that need a trained network and only read it (verification, calibration, INT8 and OpenVINO
    exports, model folders): the :class:`svllreid.training.run.RunResult`."""
    from svllreid.config import load_config
    from svllreid.training.run import train
    from tests.tiny_runs import TINY, small

    tmp = tmp_path_factory.mktemp("verification")
    overrides = small(
        tmp,
        "run",
        **{
            "data.options": "{ids: 20, cameras: 3, images_per_camera: 3, seed: 1}",
            "data.validation_ids": 5,
            "stage1.epochs": 1,
            "stage2.epochs": 1,
        },
    )
    return train(load_config(TINY, overrides), progress=False)


@pytest.fixture(scope="session")
def trained_eval_features(verification_run):
    """The test features of :func:`verification_run`'s delivered model, with pids, cameras and the rows
    of its query and gallery: ``(feats, pids, camids, q_rows, g_rows)``."""
    import numpy as np

    details = verification_run.final_details
    row = {s.path: i for i, s in enumerate(details.samples)}
    split = details.splits[0][0]
    feats = details.feats.cpu().numpy()
    pids = np.array([s.pid for s in details.samples])
    camids = np.array([s.camid for s in details.samples])
    q_rows = np.array([row[s.path] for s in split.query])
    g_rows = np.array([row[s.path] for s in split.gallery])
    return feats, pids, camids, q_rows, g_rows
