"""The tools for trained models, as a user runs them: eval, extract, index build and search."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from svllreid.cli import main
from svllreid.config import load_config
from svllreid.inference.trained import load_trained_model
from svllreid.search import GalleryIndex
from svllreid.training.run import train
from tests.tiny_runs import TINY, small_with

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained for a few seconds (with its report and eval.json)."""
    tmp = tmp_path_factory.mktemp("tools")
    result = train(load_config(TINY, small_with(tmp, "tiny", "svll-tiny-rn")), progress=False)
    return result.run_dir


@pytest.fixture(scope="module")
def other_run(verification_run: Any) -> Path:
    """A checkpoint of another network: the session's tiny ViT run (tests/conftest.py), which is only read."""
    return verification_run.run_dir


@pytest.fixture
def gallery(trained_run: Path, tmp_path: Path) -> Path:
    """A user's folder: some of the synthetic test images, in a sub-folder too."""
    test = sorted((trained_run.parents[1] / "synthetic" / "bounding_box_test").glob("*.jpg"))[:24]
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, image in enumerate(test):
        shutil.copy(image, folder / ("more" if i % 3 == 0 else "") / image.name)
    return folder


def test_training_run_writes_its_report(trained_run: Path) -> None:
    html = (trained_run / "report.html").read_text()
    for name in ("metrics.png", "cmc.png", "losses.png", "embedding.png", "ranked_best.png", "ranked_worst.png"):
        assert (trained_run / name).stat().st_size > 1000, name
    assert html.count("data:image/png;base64,") >= 6
    assert "randomly initialised" in html and "<script" not in html and 'src="http' not in html


def test_eval_reproduces_the_training_evaluation(trained_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ev"
    assert main(["eval", "--checkpoint", str(trained_run), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "protocol: camera" in printed and "mAP" in printed and str(out / "report.html") in printed
    saved = json.loads((out / "eval.json").read_text())
    expected = json.loads((trained_run / "eval.json").read_text())["final"]
    assert saved["result"]["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
    assert saved["result"]["rank1"] == pytest.approx(expected["rank1"], abs=1e-6)
    for name in ("cmc.png", "metrics.png", "ranked_best.png", "ranked_median.png", "ranked_worst.png", "report.html"):
        assert (out / name).is_file(), name
    picture = Image.open(out / "ranked_best.png")
    assert picture.width > 10 * 64  # the query and its top 10


def test_eval_rerank_json_and_default_folder(trained_run: Path, capsys) -> None:
    assert main(["eval", "--checkpoint", str(trained_run), "--rerank", "--json", "--no-report"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reranked"] is True and 0 <= summary["mAP"] <= 1
    assert (trained_run / "eval" / "synthetic-rerank" / "eval.json").is_file()


def test_eval_on_another_dataset(trained_run: Path, market_root: Path, tmp_path: Path, capsys) -> None:
    """Cross-domain: a model trained on the synthetic set, evaluated on a Market-1501 tree."""
    argv = ["eval", "--checkpoint", str(trained_run / "checkpoints" / "model.safetensors")]
    argv += ["--dataset", "market1501", "--root", str(market_root), "--out", str(tmp_path / "x"), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "market1501" and summary["splits"][0]["num_queries"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "{tmp}/nothing"], "checkpoint not found"),
        (["--checkpoint", "{tmp}"], "no checkpoint in"),
        (["--checkpoint", "{tmp}/notes.txt"], "not a readable safetensors checkpoint"),
        (["--checkpoint", "{run}", "--root", "/data"], "--root needs --dataset"),
        (["--checkpoint", "{run}", "--dataset", "market15"], "market1501"),
    ],
)
def test_eval_errors(trained_run: Path, tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    argv = [a.format(tmp=tmp_path, run=trained_run) for a in argv]
    assert main(["eval", *argv]) == 2
    assert message in capsys.readouterr().err


def test_extract_then_eval_features(trained_run: Path, gallery: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "feats.npz"
    argv = ["extract", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(out)]
    assert main([*argv, "--pid-regex", r"^(\d+)_", "--camera-regex", r"_c(\d)", "--flip", "--no-progress"]) == 0
    assert "images/s" in capsys.readouterr().out
    with np.load(out) as data:
        feats, paths, pids = data["feats"], data["paths"], data["pids"]
        assert json.loads(str(data["model"]))["spec"]["arch"] == "svll-tiny-rn"
    assert feats.shape[0] == len(paths) == len(pids) == 24
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert pids.tolist() == [int(Path(p).name[:4]) for p in paths]
    assert main(["eval-features", "--query", str(out), "--gallery", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"] == "camera"


def test_extract_stops_on_unreadable_images_unless_told(
    trained_run: Path, gallery: Path, tmp_path: Path, capsys
) -> None:
    (gallery / "0001_c1s1_broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "f.npz"
    argv = ["extract", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 of 25 image(s) could not be read" in err and "0001_c1s1_broken.jpg" in err and "--skip-unreadable" in err
    assert not out.exists()
    assert main([*argv, "--skip-unreadable"]) == 0
    with np.load(out) as data:
        assert len(data["paths"]) == 24 and not any("broken" in p for p in data["paths"])


def test_extract_of_an_empty_folder(trained_run: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    argv = ["extract", "--checkpoint", str(trained_run), "--images", str(tmp_path / "empty"), "--out", "x.npz"]
    assert main(argv) == 2
    assert "no images in" in capsys.readouterr().err


def test_image_list_file(trained_run: Path, gallery: Path, tmp_path: Path, capsys) -> None:
    images = sorted(gallery.glob("*.jpg"))[:3]
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\n" + "\n".join(str(p) for p in images) + "\n\n")
    out = tmp_path / "f.npz"
    assert main(["extract", "--checkpoint", str(trained_run), "--images", str(listing), "--out", str(out)]) == 0
    with np.load(out) as data:
        assert data["paths"].tolist() == [str(p) for p in images]
    listing.write_text("missing.jpg\n")
    assert main(["extract", "--checkpoint", str(trained_run), "--images", str(listing), "--out", str(out)]) == 2
    assert "lists 1 missing file(s)" in capsys.readouterr().err


def test_index_build_and_search(trained_run: Path, gallery: Path, tmp_path: Path, capsys) -> None:
    index_path = tmp_path / "gallery.index"
    argv = ["index", "build", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(index_path)]
    assert main([*argv, "--no-progress"]) == 0
    index = GalleryIndex.load(index_path)
    assert len(index) == 24 and index.meta["spec"]["arch"] == "svll-tiny-rn"
    assert "24 images" in capsys.readouterr().out
    query = sorted(gallery.rglob("*.jpg"))[5]
    png = tmp_path / "ranked.png"
    argv = ["search", "--index", str(index_path), "--query", str(query), "--topk", "5", "--json", "--out", str(png)]
    assert main([*argv, "--no-progress"]) == 0
    listing = json.loads(capsys.readouterr().out)  # nothing but JSON on stdout
    hits = listing[0]["results"]
    assert len(hits) == 5 and hits[0]["path"] == str(query)  # a gallery image finds itself first
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert Image.open(png).width > 5 * 64


def test_index_build_past_ram_and_search(trained_run: Path, gallery: Path, tmp_path: Path, capsys) -> None:
    """--backend faiss-ivfpq streams the features into an index searched from its file; its settings are
    printed, and settings of another backend are refused before any image is encoded."""
    pytest.importorskip("faiss")
    index_path = tmp_path / "gallery.index"
    argv = ["index", "build", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(index_path)]
    assert main([*argv, "--backend", "faiss-ivfpq", "--refine", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    index = GalleryIndex.load(index_path)
    assert index.backend == "faiss-ivfpq" and isinstance(index.feats, np.memmap) and index.params["refine"] == 3
    settings = f"nlist 1, nprobe 1, pq_m {index.dim // 8}, pq_nbits 4, refine 3, train_size 24"
    assert f"24 images, {index.dim}-d features, faiss-ivfpq search ({settings})" in printed
    query = sorted(gallery.rglob("*.jpg"))[5]
    assert main(["search", "--index", str(index_path), "--query", str(query), "--topk", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["results"]
    assert len(hits) == 5 and hits[0]["path"] == str(query) and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    for wrong, message in (
        (["--pq-m", "4"], "--pq-m is a setting of --backend faiss-ivfpq, not faiss-ivf"),
        (["--nlist", "4", "--backend", "faiss-hnsw"], "--nlist is a setting of --backend faiss-ivf or faiss-ivfpq"),
    ):
        backend = [] if "--backend" in wrong else ["--backend", "faiss-ivf"]
        assert main([*argv, *backend, *wrong, "--no-progress"]) == 2
        captured = capsys.readouterr()
        assert message in captured.err and "images/s" not in captured.out + captured.err
    assert main([*argv, "--backend", "faiss-ivfpq", "--nlist", "25", "--no-progress"]) == 2
    captured = capsys.readouterr()  # refused before a single image is encoded
    assert "nlist (25) cannot exceed the number of gallery features (24)" in captured.err
    assert "images/s" not in captured.out + captured.err


def test_search_starts_from_the_compiled_encoder_without_open_clip(
    trained_run: Path, gallery: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After 'index build', a search process imports neither open_clip nor torchvision (seconds of
    start-up) and ranks exactly as the full rebuild of the network does."""
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))
    index_path = tmp_path / "g.index"
    argv = ["index", "build", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(index_path)]
    assert main([*argv, "--no-progress"]) == 0
    assert len(list((tmp_path / "cache" / "query-encoders").glob("*.pt"))) == 1
    query = [str(p) for p in sorted(gallery.rglob("*.jpg"))[:3]]
    search = [sys.executable, "-X", "importtime", "-m", "svllreid", "search", "--index", str(index_path), "--json"]
    search += ["--no-progress", "--topk", "24", "--query", *query]
    fast = subprocess.run(search, capture_output=True, text=True, check=True, timeout=300)
    imported = {line.rsplit("|", 1)[-1].strip() for line in fast.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and "svllreid.inference.query_encoder" in imported
    assert not {"open_clip", "torchvision", "timm"} & imported
    full = subprocess.run([*search, "--no-compiled"], capture_output=True, text=True, check=True, timeout=300)
    assert "open_clip" in full.stderr  # the rebuild does import it
    for compiled, rebuilt in zip(json.loads(fast.stdout), json.loads(full.stdout), strict=True):
        assert [h["path"] for h in compiled["results"]] == [h["path"] for h in rebuilt["results"]]
        scores = [(a["score"], b["score"]) for a, b in zip(compiled["results"], rebuilt["results"], strict=True)]
        assert max(abs(a - b) for a, b in scores) < 1e-5


def test_index_with_identity_folders_names_the_results(trained_run: Path, tmp_path: Path, capsys) -> None:
    """'index build --identity-folders --camera-regex' keeps each image's identity and camera names, and
    search shows them (JSON, text and the picture's captions) instead of bare file names."""
    test = sorted((trained_run.parents[1] / "synthetic" / "bounding_box_test").glob("*.jpg"))[:16]
    photos = tmp_path / "animals"
    for image in test:
        folder = photos / f"nyala-{image.name[:4]}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.name)
    index_path = tmp_path / "named.index"
    argv = ["index", "build", "--checkpoint", str(trained_run), "--images", str(photos), "--out", str(index_path)]
    assert main([*argv, "--identity-folders", "--camera-regex", r"_c(\d)", "--no-progress"]) == 0
    index = GalleryIndex.load(index_path)
    by_path = dict(zip(index.paths, index.meta["labels"]["identity"], strict=True))
    assert all(by_path[path] == Path(path).parent.name for path in index.paths)
    capsys.readouterr()
    query = str(photos / f"nyala-{test[3].name[:4]}" / test[3].name)  # one of the indexed images
    png = tmp_path / "named.png"
    argv = ["search", "--index", str(index_path), "--query", query, "--topk", "3", "--json", "--out", str(png)]
    assert main([*argv, "--no-progress"]) == 0
    found = json.loads(capsys.readouterr().out)[0]
    hits = found["results"]
    assert hits[0]["identity"] == f"nyala-{test[3].name[:4]}" and hits[0]["camera"] == test[3].name[6]
    assert found["identity"] == hits[0]["identity"]  # the query is a gallery image: its labels are known
    assert main(["search", "--index", str(index_path), "--query", query, "--topk", "1", "--no-progress"]) == 0
    assert f"identity nyala-{test[3].name[:4]}" in capsys.readouterr().out
    from svllreid.cli.search import _caption

    assert _caption(hits[0]) == f"{hits[0]['score']:.3f} · id {hits[0]['identity']} · cam {hits[0]['camera']}"
    assert Image.open(png).width > 3 * 64


def test_search_refuses_another_network(trained_run: Path, other_run: Path, gallery: Path, tmp_path: Path, capsys):
    index_path = tmp_path / "g.index"
    argv = ["index", "build", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(index_path)]
    assert main([*argv, "--no-progress"]) == 0
    query = str(next(gallery.glob("*.jpg")))
    assert main(["search", "--index", str(index_path), "--query", query, "--checkpoint", str(other_run)]) == 2
    assert "another network" in capsys.readouterr().err
    # Same architecture, other weights: the stage-1 checkpoint of the same run.
    stage1 = str(trained_run / "checkpoints" / "stage1.safetensors")
    assert main(["search", "--index", str(index_path), "--query", query, "--checkpoint", stage1]) == 2
    assert "other weights" in capsys.readouterr().err
    # A copy of the same weights elsewhere is fine.
    copy = tmp_path / "copy.safetensors"
    shutil.copy(trained_run / "checkpoints" / "model.safetensors", copy)
    assert main(["search", "--index", str(index_path), "--query", query, "--checkpoint", str(copy)]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "none.index"), "--query", query]) == 2
    assert capsys.readouterr().err.startswith("svllreid: error:")


def test_loaded_model_gives_the_training_features(trained_run: Path) -> None:
    """The network rebuilt from the checkpoint is the trained one (same activation, weights and transform)."""
    loaded = load_trained_model(trained_run)
    assert loaded.checkpoint.path.name == "model.safetensors"
    assert loaded.checkpoint.meta["quick_gelu"] is False
    assert loaded.image_size == (64, 32) and not loaded.model.training


def test_public_entry_points() -> None:
    import svllreid
    from svllreid.metrics import evaluate

    assert svllreid.evaluate is evaluate
    result = svllreid.evaluate([[0.0], [1.0]], [[0.0], [1.0]], [1, 2], [1, 2])
    assert result.mAP == 1.0 and result.protocol == "no-camera"
    assert callable(svllreid.k_reciprocal_rerank) and callable(svllreid.load_trained_model)
    assert svllreid.GalleryIndex is GalleryIndex


def test_eval_never_overwrites_an_earlier_default_folder(trained_run: Path, capsys) -> None:
    for _ in range(2):
        assert main(["eval", "--checkpoint", str(trained_run), "--flip", "--json", "--no-report"]) == 0
    folders = sorted(p.name for p in (trained_run / "eval").iterdir() if p.name.startswith("synthetic-flip"))
    assert len(folders) == 2 and folders[0] == "synthetic-flip", folders


def test_side_information_only_on_the_training_cameras(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from svllreid.evaluation.checkpoint_eval import uses_side_info

    def trained(sie: str | None) -> SimpleNamespace:
        spec = SimpleNamespace(sie=sie, num_cameras=6, num_views=0)
        meta = {"dataset": {"name": "folder", "root": str(tmp_path / "a")}}
        return SimpleNamespace(spec=spec, checkpoint=SimpleNamespace(meta=meta), trained_on="folder")

    def data(root: str, cameras: int = 6) -> SimpleNamespace:
        return SimpleNamespace(name="folder", root=str(tmp_path / root), num_cameras=cameras, num_views=0)

    assert uses_side_info(trained("camera"), data("a")) == (True, None)
    used, note = uses_side_info(trained("camera"), data("b"))  # same dataset name, other cameras
    assert not used and "left out" in note
    assert not uses_side_info(trained("camera"), data("a", cameras=8))[0]
    assert uses_side_info(trained(None), data("b")) == (False, None)  # no SIE: nothing to say


@pytest.mark.parametrize(
    ("regex", "message"),
    [("(", "is not a valid regular expression"), (r"^zz(\d+)", "does not match the file name")],
)
def test_extract_label_regex_errors(trained_run: Path, gallery: Path, regex: str, message: str, capsys) -> None:
    argv = ["extract", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", "x.npz"]
    assert main([*argv, "--pid-regex", regex]) == 2
    assert message in capsys.readouterr().err


def test_search_when_the_index_checkpoint_is_gone(trained_run: Path, gallery: Path, tmp_path: Path, capsys) -> None:
    moved = tmp_path / "model.safetensors"
    shutil.copy(trained_run / "checkpoints" / "model.safetensors", moved)
    index_path = tmp_path / "g.index"
    argv = ["index", "build", "--checkpoint", str(moved), "--images", str(gallery), "--out", str(index_path)]
    assert main([*argv, "--no-progress"]) == 0
    moved.unlink()
    query = str(next(gallery.glob("*.jpg")))
    assert main(["search", "--index", str(index_path), "--query", query]) == 2
    err = capsys.readouterr().err
    assert "which is not there any more" in err and "--checkpoint" in err


def test_eval_text_of_a_trained_reid_run(trained_run: Path, capsys: pytest.CaptureFixture[str]):
    """A trained ReID model's f_proj against its text encoder on the captions of its own test images."""
    import open_clip
    import torch

    from svllreid.inference.text_encoding import ReIDSides

    root = trained_run.parent.parent / "synthetic"  # the run's synthetic set, with its captions.jsonl
    args = ["eval-text", "--checkpoint", str(trained_run), "--dataset", "synthetic_captions", "--root", str(root)]
    assert main([*args, "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"].startswith("svll-tiny-rn") and result["captions"] == result["images"] > 0
    assert all(0 <= result[k] <= 1 for k in ("R@1", "R@5", "R@10", "mAP", "mINP"))
    assert result["R@1"] <= result["R@5"] <= result["R@10"]
    # The text side: the caption's end-of-text feature, exactly as over all 77 positions.
    model = load_trained_model(trained_run).model
    tokens = open_clip.get_tokenizer("svll-tiny-rn")(["a person in red", "someone with a long black coat"])
    sides = ReIDSides(model)
    with torch.no_grad():
        short = sides.encode_tokens(tokens)
        text = model.text_encoder
        full = text(text.embed_tokens(tokens), tokens.argmax(dim=1), length=tokens.shape[1])
    torch.testing.assert_close(short, torch.nn.functional.normalize(full, dim=1), atol=1e-5, rtol=1e-5)


def test_index_and_search_work_from_another_folder_and_after_a_move(
    trained_run: Path, gallery: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Built with relative paths in one folder, the index searches from any other folder (no false
    'checkpoint is gone', no unreadable tiles), and keeps working when it moves with its gallery."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(gallery, project / "photos")
    shutil.copy(trained_run / "checkpoints" / "model.safetensors", project / "model.safetensors")
    monkeypatch.chdir(project)
    argv = ["index", "build", "--checkpoint", "model.safetensors", "--images", "photos", "--out", "g.index"]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    query = str(next((project / "photos").glob("*.jpg")))
    args = ["search", "--index", str(project / "g.index"), "--query", query, "--topk", "3", "--json"]
    assert main([*args, "--out", "ranked.png", "--no-progress"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["results"]
    assert hits[0]["path"] == query and all(Path(h["path"]).is_file() for h in hits)
    # Moved together (checkpoint too): everything is found at the new place.
    moved = tmp_path / "moved"
    shutil.move(project, moved)
    query = str(next((moved / "photos").glob("*.jpg")))
    args = ["search", "--index", str(moved / "g.index"), "--query", query, "--topk", "3", "--json"]
    assert main([*args, "--no-progress"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["results"]
    assert hits[0]["path"] == query and all(str(moved) in h["path"] for h in hits)
    assert GalleryIndex.load(moved / "g.index").meta["checkpoint"] == str(moved / "model.safetensors")


def test_checks_come_before_the_work(trained_run: Path, gallery: Path, tmp_path: Path, capsys) -> None:
    """An output that cannot be written, or --topk 0, is refused before any image is encoded."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for argv in (
        ["extract", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(blocker / "f.npz")],
        ["index", "build", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(blocker / "g")],
    ):
        assert main([*argv, "--no-progress"]) == 2
        captured = capsys.readouterr()
        assert f"{blocker} is a file, not a folder" in captured.err
        assert "images/s" not in captured.out + captured.err  # nothing was extracted
    assert main(["extract", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(tmp_path)]) == 2
    assert "it is a folder; give a file name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["search", "--index", "g.index", "--query", "q.jpg", "--topk", "0"])
    assert stop.value.code == 2 and "--topk: must be a positive integer; got 0" in capsys.readouterr().err


def test_search_takes_several_queries_a_folder_or_a_list_file(trained_run: Path, gallery: Path, tmp_path: Path, capsys):
    index_path = tmp_path / "g.index"
    argv = ["index", "build", "--checkpoint", str(trained_run), "--images", str(gallery), "--out", str(index_path)]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    images = sorted(str(p) for p in gallery.glob("*.jpg"))[:3]
    listing = tmp_path / "ql.txt"
    listing.write_text("\n".join(images[:2]) + "\n")
    for queries, expected in (
        (images[:2], images[:2]),  # the multi-query form
        ([str(listing)], images[:2]),  # a list file, one path a line
        ([str(gallery / "more")], sorted(str(p) for p in (gallery / "more").glob("*.jpg"))),  # a folder
    ):
        assert main(["search", "--index", str(index_path), "--query", *queries, "--json", "--no-progress"]) == 0
        results = json.loads(capsys.readouterr().out)
        assert [r["query"] for r in results] == expected


def test_extract_labels_identity_folders_and_named_cameras(trained_run: Path, tmp_path: Path, capsys) -> None:
    """The README's identity-folder layout gives identities, camera names such as left/right become ids,
    and the mapping is written into the feature file, so eval-features runs on it without Python."""
    test = sorted((trained_run.parents[1] / "synthetic" / "bounding_box_test").glob("*.jpg"))[:12]
    photos = tmp_path / "animals"
    for i, image in enumerate(test):
        folder = photos / ("nyala-60" if i < 6 else "nyala-274")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / f"{i:03d}_{'left' if i % 2 else 'right'}.jpg")
    out = tmp_path / "f.npz"
    argv = ["extract", "--checkpoint", str(trained_run), "--images", str(photos), "--out", str(out)]
    assert main([*argv, "--identity-folders", "--camera-regex", r"_(left|right)\.", "--no-progress"]) == 0
    capsys.readouterr()
    with np.load(out) as data:
        pids, camids, paths = data["pids"], data["camids"], data["paths"]
        names = json.loads(str(data["label_names"]))
    assert names == {"pid": {"0": "nyala-274", "1": "nyala-60"}, "camera": {"0": "left", "1": "right"}}
    # Query and gallery extracted apart number their names apart; eval-features aligns them by name.
    query_dir = tmp_path / "query" / "nyala-60"
    query_dir.mkdir(parents=True)
    shutil.copy(next((photos / "nyala-60").glob("*_left.jpg")), query_dir / "q_left.jpg")
    query_out = tmp_path / "q.npz"
    qargv = ["extract", "--checkpoint", str(trained_run), "--images", str(tmp_path / "query"), "--out", str(query_out)]
    assert main([*qargv, "--identity-folders", "--camera-regex", r"_(left|right)\.", "--no-progress"]) == 0
    capsys.readouterr()
    with np.load(query_out) as data:
        assert json.loads(str(data["label_names"]))["pid"] == {"0": "nyala-60"}  # 0 here, 1 in the gallery file
    from svllreid.metrics.feature_file import read_feature_pair

    q, g = read_feature_pair(query_out, out)
    same = {
        int(pid) for pid, path in zip(g["pids"], g["paths"], strict=True) if Path(str(path)).parent.name == "nyala-60"
    }
    assert {int(q["pids"][0])} == same  # one numbering for both files
    left = {int(c) for c, path in zip(g["camids"], g["paths"], strict=True) if str(path).endswith("_left.jpg")}
    assert {int(q["camids"][0])} == left
    assert main(["eval-features", "--query", str(query_out), "--gallery", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_skipped"] == 0
    for path, pid, cam in zip(paths, pids, camids, strict=True):
        assert names["pid"][str(pid)] == Path(path).parent.name
        assert names["camera"][str(cam)] == Path(path).stem.split("_")[1]
    assert main(["eval-features", "--query", str(out), "--gallery", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"] == "camera"
    # An image directly in the folder has no identity folder: said so, before any encoding.
    shutil.copy(test[0], photos / "loose.jpg")
    assert main([*argv, "--identity-folders", "--no-progress"]) == 2
    assert "lies directly in" in capsys.readouterr().err
