"""`svllreid search --text`: descriptions through a checkpoint's text encoder against the gallery's
f_proj, end to end on captioned synthetic people, with the shipped pretrained CLIP inside the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from svllreid.cli import main
from svllreid.inference.text_query import DescriptionEncoder
from svllreid.inference.trained import load_trained_model
from tests.captioned_gallery import build_captioned_gallery


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The captioned gallery of :func:`tests.captioned_gallery.build_captioned_gallery`, without labels."""
    return build_captioned_gallery(tmp_path_factory.mktemp("text-search"))


def search_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["search", *args, "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def test_text_search_ranks_the_gallery_by_f_proj_against_the_checkpoints_text_encoder(gallery, capsys) -> None:
    captions = gallery["captions"][::5][:8]
    listing = search_json(
        capsys, "--index", str(gallery["index"]), "--topk", "5", "--text", *[c.caption for c in captions]
    )
    assert [item["query"] for item in listing] == [c.caption for c in captions]
    assert all(item["kind"] == "text" and len(item["results"]) == 5 for item in listing)
    # Reference: f_proj of every gallery image and the text encoder on the full 77-token caption, by hand.
    trained = load_trained_model(gallery["checkpoint"], "cpu")
    paths = [r["path"] for r in listing[0]["results"]]
    pixels = torch.stack(
        [trained.transform(Image.open(p).convert("RGB").resize((32, 64), Image.BILINEAR)) for p in paths]
    )
    unknown = torch.full((len(paths),), -1)
    with torch.no_grad():
        fproj = F.normalize(trained.model.image_features(pixels, unknown, unknown).f_proj, dim=1)
    text = DescriptionEncoder(trained).encode([captions[0].caption]).feats
    expected = (text @ fproj.T)[0].numpy()
    np.testing.assert_allclose([r["score"] for r in listing[0]["results"]], expected, atol=2e-3)
    assert np.all(np.diff([r["score"] for r in listing[0]["results"]]) <= 0)


def test_descriptions_find_their_person_far_above_chance(gallery, capsys) -> None:
    captions = gallery["captions"]
    listing = search_json(
        capsys, "--index", str(gallery["index"]), "--topk", "1", "--text", *[c.caption for c in captions]
    )
    person = {c.path: c.pid for c in captions}
    hits = np.mean([person[item["results"][0]["path"]] == c.pid for item, c in zip(listing, captions, strict=True)])
    assert hits >= 3 / 12, f"text-to-image R@1 {hits:.2f} for 12 people (chance {1 / 12:.2f})"


def test_text_search_writes_the_ranked_picture_with_the_description(gallery, capsys) -> None:
    out = gallery["folder"] / "ranked.png"
    assert main(["search", "--index", str(gallery["index"]), "--text", "a person in a red top", "--topk", "4",
                 "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "query 'a person in a red top': top 4 of" in printed and "f_proj" in printed
    with Image.open(out) as picture:
        assert picture.width > 4 * 64 and picture.height >= 128


def test_text_search_errors_say_what_to_do(gallery, tmp_path: Path, capsys) -> None:
    from svllreid.search import GalleryIndex

    old = GalleryIndex.load(gallery["index"])
    meta = {k: v for k, v in old.meta.items() if k != "text_dim"}
    GalleryIndex.build(old.feats, old.paths, meta=meta).save(tmp_path / "old.npz")
    assert main(["search", "--index", str(tmp_path / "old.npz"), "--text", "a man"]) != 0
    assert "rebuild it with `svllreid index build" in capsys.readouterr().err
    assert main(["search", "--index", str(gallery["index"]), "--text", "  "]) != 0
    assert "description 1 is empty" in capsys.readouterr().err
    assert main(["search", "--index", str(gallery["index"]), "--text", "a", "--model", "x.onnx"]) != 0
    assert "text search needs the checkpoint's text encoder" in capsys.readouterr().err


def test_a_description_over_77_tokens_is_reported(gallery, capsys) -> None:
    long = "a person with a red top and " * 20
    assert main(["search", "--index", str(gallery["index"]), "--text", long, "--device", "cpu"]) == 0
    assert "reaches the 77-token limit" in capsys.readouterr().err
