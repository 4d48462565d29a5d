"""Model folders (``save_pretrained`` / ``from_pretrained``), ``hf-hub:`` names through huggingface_hub's
cache (offline, against a cache laid out as the Hub lays it out), and ``svllreid push`` up to the upload."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import huggingface_hub
import numpy as np
import pytest
import yaml

import svllreid
from svllreid.cli import main
from svllreid.errors import CheckpointError, ExportError
from svllreid.inference.extractor import FeatureExtractor
from svllreid.inference.trained import load_trained_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def run(verification_run: Any) -> Path:
    """The session's tiny run (tests/conftest.py), which these tests only read: its eval.json holds the start
    evaluated too."""
    return verification_run.run_dir


@pytest.fixture(scope="module")
def images(run: Path) -> list[str]:
    return [str(p) for p in sorted((run.parents[1] / "synthetic" / "bounding_box_test").glob("*.jpg"))[:6]]


def hub_cache(tmp_path: Path, folder: Path, repo: str = "svll/tiny") -> Path:
    """A Hugging Face cache holding ``folder`` as ``repo``'s main revision, in the Hub's layout: blobs named by
    their hash, snapshots/<commit>/ linking to them, refs/main naming the commit."""
    cache = tmp_path / "hf-cache"
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        data = file.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", blob.name))
    return cache


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch):
    """HF_HUB_OFFLINE=1 for huggingface_hub, which reads its environment once, at import."""

    def use(cache: Path) -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    return use


def features(model: str | Path, images: list[str]) -> np.ndarray:
    return FeatureExtractor(model, device="cpu")(images)


def test_a_saved_folder_describes_itself_and_loads_bit_identical(run: Path, images: list[str], tmp_path: Path) -> None:
    saved = svllreid.save_pretrained(run, tmp_path / "tiny-model", license="cc-by-nc-sa-4.0")
    assert sorted(p.name for p in saved.folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((saved.folder / "config.json").read_text())
    evaluation = json.loads((run / "eval.json").read_text())
    assert config["architecture"]["arch"] == "svll-tiny-vit" and config["preprocessing"]["image_size"] == [64, 32]
    assert config["results"]["final"]["mAP"] == evaluation["final"]["mAP"]
    assert config["training"]["config"]["data"]["root"] == ""  # no path of the training machine
    assert config["identities"] is None
    card = (saved.folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "svllreid" and front["license"] == "cc-by-nc-sa-4.0"
    assert front["datasets"] == ["synthetic"] and "person-re-identification" in front["tags"]
    metric = front["model-index"][0]["results"][0]["metrics"][0]
    assert metric == {"type": "mAP", "value": round(100 * evaluation["final"]["mAP"], 2), "name": "mAP"}
    assert f"{100 * evaluation['untrained']['mAP']:.2f}" in card and "its pretrained start" in card
    assert f'svllreid.FeatureExtractor("{saved.folder}")' in card
    assert "{" not in card.split("---", 2)[2]  # every placeholder of the body filled in
    assert np.array_equal(features(saved.folder, images), features(run, images))
    trained = svllreid.from_pretrained(saved.folder, device="cpu")
    assert trained.weights_digest() == load_trained_model(run, "cpu").weights_digest()


def test_identity_names_come_from_the_training_set(run: Path, tmp_path: Path) -> None:
    saved = svllreid.save_pretrained(run, tmp_path / "named", identities=True)
    names = saved.config["identities"]
    assert len(names) == load_trained_model(run, "cpu").spec.num_classes and all(isinstance(n, str) for n in names)


def test_only_a_model_folder_is_replaced_and_only_with_overwrite(run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "kept"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ExportError, match="exists and is not a model folder; svllreid replaces nothing else"):
            svllreid.save_pretrained(run, folder, overwrite=overwrite)
    assert (folder / "notes.txt").read_text() == "mine"
    model = tmp_path / "model"
    svllreid.save_pretrained(run, model)
    with pytest.raises(ExportError, match="exists already; pass another folder, or overwrite"):
        svllreid.save_pretrained(run, model)
    (model / "stray.txt").write_text("x")
    svllreid.save_pretrained(run, model, overwrite=True, license="mit")
    assert not (model / "stray.txt").exists() and (model / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".model.*"))  # no staging or old copy left behind
    with pytest.raises(ExportError, match="holds the model being saved"):
        svllreid.save_pretrained(model, model, overwrite=True)
    with pytest.raises(ExportError, match="exists and is not a model folder"):
        svllreid.save_pretrained(run, run.parent, overwrite=True)  # a folder of runs is never replaced
    again = svllreid.save_pretrained(model, tmp_path / "copy")  # a folder saved again keeps what it knew
    assert again.config["results"] == json.loads((model / "config.json").read_text())["results"]
    assert again.config["license"] == "mit"


def test_hf_hub_names_load_offline_from_the_cache_pinned_to_their_revision(
    run: Path, images: list[str], tmp_path: Path, offline_hub
) -> None:
    saved = svllreid.save_pretrained(run, tmp_path / "tiny")
    offline_hub(hub_cache(tmp_path, saved.folder))
    expected = features(run, images)
    for name in ("hf-hub:svll/tiny", f"hf-hub:svll/tiny@{COMMIT}"):
        trained = svllreid.from_pretrained(name, device="cpu")
        assert trained.checkpoint.name == f"hf-hub:svll/tiny@{COMMIT}"
        assert trained.identity()["checkpoint"] == f"hf-hub:svll/tiny@{COMMIT}"
        assert np.array_equal(features(name, images), expected)
    # a command takes the name where it takes a checkpoint (extract here; all go through load_trained_model)
    out = tmp_path / "feats.npz"
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for image in images:
        shutil.copy(image, gallery)
    assert main(["extract", "--checkpoint", "hf-hub:svll/tiny", "--images", str(gallery), "--out", str(out)]) == 0
    assert np.allclose(np.load(out)["feats"], expected, atol=1e-6)
    with pytest.raises(CheckpointError, match=r"not in the Hugging Face cache .* HF_HUB_OFFLINE is set"):
        svllreid.from_pretrained("hf-hub:svll/missing", device="cpu")
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("a repository of something else")
    offline_hub(hub_cache(tmp_path / "second", other, repo="svll/other"))
    with pytest.raises(
        CheckpointError, match=r"hf-hub:svll/other \(its main revision\) holds no svllreid model folder"
    ):
        svllreid.from_pretrained("hf-hub:svll/other", device="cpu")


def test_a_folder_of_a_newer_version_or_with_a_missing_or_damaged_file_is_refused(run: Path, tmp_path: Path) -> None:
    saved = svllreid.save_pretrained(run, tmp_path / "model")
    newer = tmp_path / "newer"
    shutil.copytree(saved.folder, newer)
    config = json.loads((newer / "config.json").read_text())
    config.update(format_version=2, svllreid_version="9.0.0")
    (newer / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"written by svllreid 9\.0\.0 in model folder format v2.*pip install -U"):
        svllreid.from_pretrained(newer, device="cpu")
    missing = tmp_path / "missing"
    shutil.copytree(saved.folder, missing)
    (missing / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete model folder: model\.safetensors missing"):
        svllreid.from_pretrained(missing, device="cpu")
    no_config = tmp_path / "no-config"
    shutil.copytree(saved.folder, no_config)
    (no_config / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete model folder: config\.json missing"):
        svllreid.from_pretrained(no_config, device="cpu")
    damaged = tmp_path / "damaged"
    shutil.copytree(saved.folder, damaged)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(damaged / "model.safetensors"))
    tensors["neck.classifier.weight"] = tensors["neck.classifier.weight"] + 1
    save_file(tensors, str(damaged / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"does not match the checksum in config\.json"):
        svllreid.from_pretrained(damaged, device="cpu")


def test_push_refuses_without_a_token(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(["push", str(run), "--repo", "svll/tiny"]) == 1
    assert "needs a token with write access" in capsys.readouterr().err
    calls: list[str] = []
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda *a, **k: calls.append("upload"))
    with pytest.raises(ExportError, match=r"needs a token with write access.*hf auth login.*HF_TOKEN"):
        from svllreid.export.hub_push import push_to_hub

        push_to_hub(run, "svll/tiny")
    assert calls == []


def test_push_uploads_the_model_folder(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    sent: dict[str, object] = {}

    def create_repo(self, repo_id, **kwargs):  # type: ignore[no-untyped-def]
        sent["created"] = (repo_id, kwargs.get("private"))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):  # type: ignore[no-untyped-def]
        sent["repo"], sent["token"] = repo_id, self.token
        shutil.copytree(folder_path, tmp_path / "sent")
        return type(
            "Commit", (), {"oid": "feedbeef", "commit_url": f"https://huggingface.co/{repo_id}/commit/feedbeef"}
        )

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert main(["push", str(run), "--repo", "svll/tiny", "--token", "hf_test", "--private"]) == 0
    assert sent["created"] == ("svll/tiny", True) and sent["repo"] == "svll/tiny" and sent["token"] == "hf_test"
    files = sorted(p.name for p in (tmp_path / "sent").iterdir())
    assert files == ["README.md", "config.json", "model.safetensors"]
    assert 'from_pretrained("hf-hub:svll/tiny")' in (tmp_path / "sent" / "README.md").read_text()
    assert "load it anywhere as hf-hub:svll/tiny@feedbeef" in capsys.readouterr().out
    assert json.loads((tmp_path / "sent" / "config.json").read_text())["name"] == "svll/tiny"


def test_malformed_hub_names_and_a_failed_download_get_their_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    from svllreid.export.hub_push import push_to_hub

    with pytest.raises(CheckpointError, match=r"hf-hub:tiny .*a Hub model is named ORG/NAME"):
        svllreid.from_pretrained("hf-hub:tiny", device="cpu")
    with pytest.raises(CheckpointError, match=r"--repo 'svll/tiny/x'.*a Hub model is named ORG/NAME"):
        push_to_hub("unused", "svll/tiny/x", token="hf_test")

    def unreachable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise LocalEntryNotFoundError("connection error, and no cached snapshot")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(CheckpointError, match=r"could not be downloaded \(is the Hub reachable\?\) and is not in"):
        svllreid.from_pretrained("hf-hub:svll/tiny", device="cpu")
