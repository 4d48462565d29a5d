"""``svllreid convert``: the CLIP-ReID / SVLL-ReID authors' checkpoints in and out, on fixtures with their key
names and shapes at tiny widths (tests/authors_fixtures.py). The parity with their own code at full size is
benchmarks/converted_parity.py (tests/test_converted_parity.py runs it when SVLLREID_REFERENCE is set)."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from svllreid.cli import main
from svllreid.convert.authors_layout import read_authors_file
from svllreid.convert.importer import convert_authors_checkpoint
from svllreid.convert.settings import ConversionSettings, load_settings, released, released_names
from svllreid.convert.to_authors import write_authors_checkpoint
from svllreid.errors import CheckpointError, ConversionError
from svllreid.inference.text_query import DescriptionEncoder
from svllreid.inference.trained import load_trained_model
from tests.authors_fixtures import authors_state, save, tiny_clip, vit_features

TINY = ConversionSettings(origin="the test's settings", image_size=(64, 32), sie_coef=1.5)


def convert(tmp_path: Path, state: dict, name: str = "model", **kwargs: object):
    source = kwargs.pop("source", "clip-reid")
    settings = kwargs.pop("settings", TINY)
    file = save(state, tmp_path / f"{name}.pth")
    result = convert_authors_checkpoint(file, source, tmp_path / name, settings=settings, **kwargs)  # type: ignore[arg-type]
    return result, load_trained_model(tmp_path / name, "cpu")


def prompt_features(clip: torch.nn.Module, state: dict, pids: torch.Tensor) -> torch.Tensor:
    """Their prompts through open_clip's own text tower: saved prefix, learned words, saved suffix."""
    prompts = torch.cat(
        [
            state["prompt_learner.token_prefix"].float().expand(len(pids), -1, -1),
            state["prompt_learner.cls_ctx"][pids].float(),
            state["prompt_learner.token_suffix"].float().expand(len(pids), -1, -1),
        ],
        dim=1,
    )
    text = {k.removeprefix("text_encoder."): v.float() for k, v in state.items() if k.startswith("text_encoder.")}
    clip = clip.float()
    clip.load_state_dict(text, strict=False)
    x = clip.transformer(prompts + clip.positional_embedding, attn_mask=clip.attn_mask)
    x = clip.ln_final(x[:, 11])  # the template's end-of-text position
    return x @ clip.text_projection


def test_vit_with_sie_gives_the_features_of_the_authors_network(tmp_path: Path) -> None:
    state = authors_state(sie_rows=3, svll_heads="simclr", module_prefix=True, clip_dtype=torch.float16)
    result, trained = convert(tmp_path, state, source="svll-reid")
    plain = {k.removeprefix("module."): v for k, v in state.items()}
    images, cams = torch.randn(4, 3, 64, 32), torch.tensor([0, 2, 1, 0])
    with torch.no_grad():
        ours = trained.model.encode_image(images, cams)
    expected = vit_features(plain, images, stride=8, cams=cams, coef=1.5, heads=2)
    assert (ours - expected).abs().max() < 1e-5
    facts = result.facts
    assert facts["architecture"]["value"] == "svll-tiny-vit"
    assert facts["identities"]["value"] == 7 and "classifier" in facts["identities"]["how"]
    assert facts["patch stride"]["value"] == 8 and "inferred" in facts["patch stride"]["how"]
    assert facts["SIE"]["value"] == "camera" and facts["SIE coefficient"]["value"] == 1.5
    assert trained.spec.sie == "camera" and trained.spec.num_cameras == 3 and trained.spec.sie_coef == 1.5
    # Every tensor of theirs landed where svllreid keeps it (the fp16 values exactly, as fp32).
    weights = trained.model.state_dict()
    assert torch.equal(weights["neck.classifier.weight"], plain["classifier.weight"])
    assert torch.equal(weights["image_encoder.sie.table"], plain["cv_embed"])
    assert torch.equal(weights["vis_projector.net.4.bias"], plain["image_mlp.bn2.bias"])
    assert torch.equal(weights["lang_projector.net.6.weight"], plain["text_mlp.layer3.weight"])
    assert torch.equal(weights["image_encoder.visual.conv1.weight"], plain["image_encoder.conv1.weight"].float())
    assert trained.interpolation == "bilinear" and trained.config.data.pixel_mean == [0.5, 0.5, 0.5]
    assert (tmp_path / "model" / "conversion.json").is_file()


def test_learned_prompts_encode_as_in_the_authors_network_and_free_text_needs_clip_weights(tmp_path: Path) -> None:
    clip = tiny_clip("svll-tiny-vit")
    state = authors_state(clip=clip)
    result, trained = convert(tmp_path, state)
    pids = torch.tensor([0, 3, 6])
    expected = prompt_features(tiny_clip("svll-tiny-vit"), state, pids)
    with torch.no_grad():
        assert (trained.model.encode_text(pids) - expected).abs().max() < 1e-5
    assert result.text == "prompts" and trained.text_support == "prompts"
    with pytest.raises(CheckpointError, match=r"without CLIP's token embedding.*--clip-weights"):
        DescriptionEncoder(trained)

    weights = tmp_path / "clip.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    result, trained = convert(tmp_path, state, name="with-clip", clip_weights=str(weights))
    assert result.text == "free-text" and "match CLIP" in result.facts["prompt template"]["how"]
    with torch.no_grad():
        assert (trained.model.encode_text(pids) - expected).abs().max() < 1e-5
        described = DescriptionEncoder(trained).encode(["a man in a red coat"]).feats
        tokens = __import__("open_clip").get_tokenizer("svll-tiny-vit")(["a man in a red coat"])
        text = {k.removeprefix("text_encoder."): v.float() for k, v in state.items() if k.startswith("text_encoder.")}
        clip.load_state_dict(text, strict=False)
        direct = F.normalize(clip.float().encode_text(tokens), dim=-1)
    assert (described - direct).abs().max() < 1e-5


def test_clip_weights_of_another_clip_are_refused(tmp_path: Path) -> None:
    state = authors_state(clip=tiny_clip("svll-tiny-vit", seed=0))
    with pytest.raises(ConversionError, match="not the CLIP this checkpoint was trained from"):
        convert(tmp_path, state, clip_weights="svll-synth")


def test_resnet_baseline_and_simsiam_files(tmp_path: Path) -> None:
    state = authors_state("svll-tiny-rn", text=False, size=(64, 32))
    result, trained = convert(tmp_path, state, settings=None)
    assert result.facts["architecture"]["value"] == "svll-tiny-rn"
    assert result.facts["image size"]["value"] == [64, 32] and "inferred" in result.facts["image size"]["how"]
    assert "ResNet" in result.facts["normalisation"]["how"] and trained.config.data.pixel_std[0] == 0.229
    assert result.text == "none"
    with torch.no_grad():
        assert trained.model.encode_image(torch.randn(2, 3, 64, 32)).isfinite().all()
    assert torch.equal(
        trained.model.state_dict()["image_encoder.visual.attnpool.positional_embedding"],
        state["image_encoder.attnpool.positional_embedding"].float(),
    )
    with pytest.raises(CheckpointError, match=r"baseline without prompts.*photo only"):
        trained.require_free_text()

    result, _ = convert(tmp_path, authors_state(svll_heads="simsiam"), name="simsiam", source="svll-reid")
    assert len(result.dropped) == 9 and any("SimSiam" in note for note in result.notes)


def test_round_trip_to_the_authors_layout_and_back(tmp_path: Path) -> None:
    state = authors_state(sie_rows=3, svll_heads="simclr")
    _, trained = convert(tmp_path, state, source="svll-reid")
    written = write_authors_checkpoint(trained, "svll-reid", tmp_path / "theirs", any_architecture=True)
    with pytest.raises(ConversionError, match="builds ViT-B-16 and RN50 only; this model is svll-tiny-vit"):
        write_authors_checkpoint(trained, "svll-reid", tmp_path / "theirs")
    back = read_authors_file(written.checkpoint)
    assert sorted(back) == sorted(state)
    assert all(back[k].shape == state[k].shape and torch.equal(back[k].float(), state[k].float()) for k in state)
    config = written.config.read_text()
    assert "STRIDE_SIZE: [8, 8]" in config and "SIE_CAMERA: True" in config and "SIE_COE: 1.5" in config
    assert "NECK_FEAT: 'before'" in config
    clip_reid = write_authors_checkpoint(trained, "clip-reid", tmp_path / "clip.pth", any_architecture=True)
    assert not any(k.startswith(("image_mlp.", "text_mlp.")) for k in read_authors_file(clip_reid.checkpoint))


def test_settings_from_a_release_name_and_from_the_authors_config(tmp_path: Path) -> None:
    names = released_names()
    assert len(names) == 33 and "clip-reid/vit-sie-olp/msmt17" in names and "svll-reid/vit/occ_duke" in names
    msmt = released("clip-reid/vit-sie-olp/msmt17")
    assert (msmt.stride, msmt.sie_coef, msmt.identities, msmt.cameras, msmt.image_size) == (
        12,
        1.0,
        1041,
        15,
        (256, 128),
    )
    assert released("clip-reid/cnn/veri").pixel_mean == (0.485, 0.456, 0.406)
    theirs = tmp_path / "vit_clipreid.yml"
    theirs.write_text(
        "MODEL:\n  NAME: 'ViT-B-16'\n  STRIDE_SIZE: [12, 12]\n  SIE_CAMERA: True\n"
        "INPUT:\n  SIZE_TEST: [256, 128]\n  PIXEL_MEAN: [0.5, 0.5, 0.5]\n  PIXEL_STD: [0.5, 0.5, 0.5]\n"
        "TEST:\n  NECK_FEAT: 'before'\nDATASETS:\n  NAMES: ('market1501')\n"
    )
    settings = load_settings(str(theirs))
    assert settings is not None
    assert (settings.sie, settings.sie_coef, settings.cameras, settings.dataset) == ("camera", 3.0, 6, "market1501")
    assert any("SIE_COE is not in" in note for note in settings.notes)
    with pytest.raises(ConversionError, match="neither a released setting"):
        load_settings("clip-reid/vit/nowhere")


# --- item 5 of issue 26: bad input, each with its message --------------------------------------------


@pytest.mark.parametrize(
    ("keys", "looks_like"),
    [
        ({"base.pos_embed": (1, 5, 8), "base.blocks.0.norm1.weight": (8,), "classifier.weight": (3, 8)}, "TransReID"),
        ({"conv1.conv.weight": (8, 3, 7, 7), "conv2.0.conv1.conv.weight": (8, 8, 1, 1)}, "torchreid's OSNet"),
        (
            {"visual.conv1.weight": (8, 3, 16, 16), "token_embedding.weight": (10, 8), "text_projection": (8, 4)},
            "plain CLIP",
        ),
    ],
)
def test_another_codebase_is_named_with_what_convert_accepts(tmp_path: Path, keys: dict, looks_like: str) -> None:
    file = save({k: torch.zeros(shape) for k, shape in keys.items()}, tmp_path / "other.pth")
    with pytest.raises(
        ConversionError, match=f"looks like .*{looks_like}.*convert takes the state_dict that CLIP-ReID"
    ):
        convert_authors_checkpoint(file, "clip-reid", tmp_path / "out")


def test_a_torchscript_archive_is_named_as_clip_weights(tmp_path: Path) -> None:
    archive = tmp_path / "ViT-B-16.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(archive))
    with pytest.raises(ConversionError, match=r"TorchScript archive.*--clip-weights"):
        convert_authors_checkpoint(archive, "clip-reid", tmp_path / "out")


def test_a_truncated_file_is_reported_as_such(tmp_path: Path) -> None:
    file = save(authors_state(), tmp_path / "whole.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(ConversionError, match=r"probably truncated or damaged.*download it again"):
        convert_authors_checkpoint(cut, "clip-reid", tmp_path / "out")
    assert not (tmp_path / "out").exists()


class _RunsCode:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {_RunsCode.marker}",))

    marker = ""


def test_a_pickle_that_wants_to_run_code_is_refused_not_run(tmp_path: Path) -> None:
    _RunsCode.marker = str(tmp_path / "ran")
    file = tmp_path / "evil.pth"
    with file.open("wb") as handle:
        pickle.dump({"classifier.weight": torch.zeros(2, 2), "payload": _RunsCode()}, handle)
    with pytest.raises(ConversionError, match="never runs code from a file"):
        convert_authors_checkpoint(file, "clip-reid", tmp_path / "out")
    assert not (tmp_path / "ran").exists()


def test_inferred_facts_that_disagree_with_the_config_name_both_values(tmp_path: Path) -> None:
    state = authors_state(sie_rows=3)
    wrong_classes = ConversionSettings(origin="market.yaml", image_size=(64, 32), identities=751)
    with pytest.raises(ConversionError, match=r"identities = 7, but market\.yaml says 751"):
        convert(tmp_path, state, settings=wrong_classes)
    wrong_cameras = ConversionSettings(origin="market.yaml", image_size=(64, 32), sie="camera", cameras=6)
    with pytest.raises(ConversionError, match=r"cameras = 3, but market\.yaml says 6"):
        convert(tmp_path, state, settings=wrong_cameras)
    wrong_stride = ConversionSettings(origin="market.yaml", image_size=(64, 32), stride=16)
    with pytest.raises(ConversionError, match=r"does not fit market\.yaml: 64×32 at stride 16"):
        convert(tmp_path, state, settings=wrong_stride)


def test_the_command_line_converts_lists_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    file = save(authors_state(sie_rows=3), tmp_path / "ViT-B-16_60.pth")
    settings = tmp_path / "tiny.yaml"
    settings.write_text("image_size: [64, 32]\nsie: camera\ncameras: 3\nsie_coef: 1.0\ndataset: market1501\n")
    out = tmp_path / "converted"
    assert main(["convert", "--from", "clip-reid", str(file), "--config", str(settings), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"patch stride\s+8\s+\(inferred", printed) and re.search(
        r"SIE coefficient\s+1.0\s+\(given", printed
    )
    assert "the learned prompts; free-text search needs CLIP's token embedding" in printed
    assert main(["convert", "--from", "clip-reid", str(file), "--config", str(settings), "--out", str(out)]) == 2
    assert "holds a converted model already; pass another --out, or --overwrite" in capsys.readouterr().err
    assert main(["convert", "--list"]) == 0
    assert "clip-reid/vit-sie-olp/msmt17" in capsys.readouterr().out
    assert main(["convert", "--to", "clip-reid", str(out), "--out", str(tmp_path / "back.pth")]) == 2
    assert "the authors' code builds ViT-B-16 and RN50 only" in capsys.readouterr().err


def test_a_converted_model_searches_by_photo_and_by_description_and_exports(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from safetensors.torch import save_file

    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))
    clip = tiny_clip("svll-tiny-vit")
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    file = save(authors_state(clip=clip), tmp_path / "ViT_60.pth")
    model = tmp_path / "converted"
    args = ["convert", "--from", "clip-reid", str(file), "--out", str(model), "--clip-weights", str(weights)]
    assert main([*args, "--config", str(_settings(tmp_path))]) == 0
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    pictures = sorted((Path(__file__).parents[1] / "data" / "pku-reid-subset" / "images").glob("*.jpg"))[:8]
    for picture in pictures:
        (gallery / picture.name).write_bytes(picture.read_bytes())
    index = tmp_path / "gallery.index"
    assert main(["index", "build", "--checkpoint", str(model), "--images", str(gallery), "--out", str(index)]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(index), "--query", str(gallery / pictures[0].name), "--json"]) == 0
    by_photo = json.loads(capsys.readouterr().out)
    assert Path(by_photo[0]["results"][0]["path"]).name == pictures[0].name  # the image itself ranks first
    assert main(["search", "--index", str(index), "--text", "a man in a red coat", "--topk", "3", "--json"]) == 0
    by_text = json.loads(capsys.readouterr().out)[0]["results"]
    scores = [hit["score"] for hit in by_text]
    assert len(by_text) == 3 and scores == sorted(scores, reverse=True)
    # BoxMOT's route for a network its CLIP builder cannot hold is an ONNX export, checked against the network
    # before it is written (the plain --format onnx shares that exporter; tests/export covers it)
    assert main(["export", "--checkpoint", str(model), "--format", "boxmot", "--out", str(tmp_path)]) == 0
    assert "ONNX for BoxMOT's ONNX backend" in capsys.readouterr().out
    assert (tmp_path / "osnet_x0_25_market1501-svll-tiny-vit.onnx").stat().st_size > 0


def _settings(tmp_path: Path) -> Path:
    settings = tmp_path / "tiny.yaml"
    settings.write_text("image_size: [64, 32]\ndataset: market1501\nkind: person\n")
    return settings


@pytest.mark.parametrize(
    ("rows", "cameras", "views", "mode", "expected"),
    [
        (6, 3, 2, None, ("camera_view", 3, 2)),  # the table's rows are the dataset's camera-view pairs
        (2, 3, 2, None, ("view", 0, 2)),
        (3, 3, 2, None, ("camera", 3, 0)),
        (6, None, 2, "camera_view", ("camera_view", 3, 2)),  # the mode given, the cameras derived
    ],
)
def test_the_sie_table_tells_cameras_views_or_both(
    tmp_path: Path, rows: int, cameras: int | None, views: int, mode: str | None, expected: tuple
) -> None:
    settings = ConversionSettings(
        origin="veri.yaml", image_size=(64, 32), sie=mode, sie_coef=1.0, cameras=cameras, views=views
    )
    state = authors_state(sie_rows=rows)
    result, trained = convert(tmp_path, state, settings=settings)
    spec = trained.spec
    assert (spec.sie, spec.num_cameras, spec.num_views) == expected
    assert result.facts["SIE"]["value"] == expected[0]
    cams, view_ids = torch.tensor([0, 2, 1]).clamp(max=max(spec.num_cameras - 1, 0)), torch.tensor([1, 0, 1])
    row = {"camera": cams, "view": view_ids, "camera_view": cams * spec.num_views + view_ids}[spec.sie]
    images = torch.randn(3, 3, 64, 32)
    with torch.no_grad():  # the camera and view ids reach the table's rows as the authors index them
        ours = trained.model.encode_image(images, cams, view_ids)
    expected_features = vit_features(state, images, stride=8, cams=row, coef=1.0, heads=2)
    assert (ours - expected_features).abs().max() < 1e-5


def test_a_vehicle_template_read_with_clip_weights_builds_the_vehicle_prompts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    clip = tiny_clip("svll-tiny-vit")
    state = authors_state(clip=clip, kind="vehicle")
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    result, trained = convert(tmp_path, state, clip_weights=str(weights))
    assert trained.spec.kind == "vehicle" and result.facts["prompt template"]["value"].endswith("vehicle.")
    texts = ["a person in a red coat", "a white vehicle"]  # the template's words embed as CLIP's own
    tokens = __import__("open_clip").get_tokenizer("svll-tiny-vit")(texts)
    with torch.no_grad():
        described = DescriptionEncoder(trained).encode(texts).feats
        text = {k.removeprefix("text_encoder."): v.float() for k, v in state.items() if k.startswith("text_encoder.")}
        clip.load_state_dict(text, strict=False)
        direct = F.normalize(clip.float().encode_text(tokens), dim=-1)
    assert (described - direct).abs().max() < 1e-5


def test_a_grid_that_fits_several_sizes_takes_the_authors_size(tmp_path: Path) -> None:
    from svllreid.convert.importer import _Facts, _geometry

    tokens = torch.zeros(211, 8)  # a 21×10 grid: 256×128 at stride 12, or 320×160 at 15, or 288×144 at 13
    ours = {
        "image_encoder.visual.positional_embedding": tokens,
        "image_encoder.visual.conv1.weight": torch.zeros(8, 3, 16, 16),
    }
    facts = _Facts()
    assert _geometry(ours, True, None, facts) == ((256, 128), 12)
    assert "the authors' input size (it also fits 320×160 stride 15" in facts.values["image size"]["how"]
    tokens = torch.zeros(1 + 21 * 21, 8)  # 256×256 at stride 12 (VeRi, VehicleID) or 224×224 at 10
    assert _geometry({**ours, "image_encoder.visual.positional_embedding": tokens}, True, None, _Facts()) == (
        (256, 256),
        12,
    )


def test_svllreid_eval_of_a_converted_model_reaches_its_model_card(tmp_path: Path, market_root: Path) -> None:
    import json

    import yaml

    from svllreid.export.pretrained import save_pretrained

    state = authors_state(sie_rows=3)
    file = save(state, tmp_path / "ViT_60.pth")
    model = tmp_path / "converted"
    settings = ConversionSettings(origin="tiny", image_size=(64, 32), sie_coef=1.0, dataset="market1501")
    convert_authors_checkpoint(file, "clip-reid", model, settings=settings)
    args = ["eval", "--checkpoint", str(model), "--dataset", "market1501", "--root", str(market_root)]
    assert main(args) == 0
    measured = json.loads((model / "eval" / "market1501" / "eval.json").read_text())["result"]
    saved = save_pretrained(model, tmp_path / "folder")
    card = (saved.folder / "README.md").read_text()
    metric = yaml.safe_load(card.split("---")[1])["model-index"][0]["results"][0]["metrics"][0]
    assert metric["value"] == round(100 * measured["mAP"], 2)
    row = f"| this model (`svllreid eval`, market1501) | market1501 | {measured['protocol']} |"
    assert f"{row} {100 * measured['mAP']:.2f}" in card
    assert "converted with `svllreid convert` from the clip-reid authors' checkpoint `ViT_60.pth`" in card
    # the same weights converted again keep their evaluation; other weights over it do not get it
    convert_authors_checkpoint(file, "clip-reid", model, settings=settings, overwrite=True)
    assert "market1501" in save_pretrained(model, tmp_path / "same").config["results"]["evaluated"]
    other = save(authors_state(sie_rows=3, seed=5), tmp_path / "other.pth")
    convert_authors_checkpoint(other, "clip-reid", model, settings=settings, overwrite=True)
    assert "evaluated" not in save_pretrained(model, tmp_path / "other").config["results"]


def test_convert_writes_only_a_new_folder_or_over_an_earlier_conversion(tmp_path: Path) -> None:
    from svllreid.inference.checkpoint import read_checkpoint

    file = save(authors_state(), tmp_path / "ViT_60.pth")
    run = tmp_path / "my-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ConversionError, match=r"holds something else than a conversion \(no conversion\.json\)"):
            convert_authors_checkpoint(file, "clip-reid", run, settings=TINY, overwrite=overwrite)
    assert (run / "config.yaml").read_text() == "mine" and not (run / "checkpoints" / "model.safetensors").exists()
    out = tmp_path / "converted"
    convert_authors_checkpoint(file, "clip-reid", out, settings=TINY)
    with pytest.raises(ConversionError, match="holds a converted model already; pass another --out, or --overwrite"):
        convert_authors_checkpoint(file, "clip-reid", out, settings=TINY)
    convert_authors_checkpoint(file, "clip-reid", out, settings=TINY, overwrite=True)
    assert read_checkpoint(out).meta["converted"]["file"] == "ViT_60.pth"  # the folder reads as a checkpoint
    trained = load_trained_model(out, "cpu")
    first = write_authors_checkpoint(trained, "clip-reid", tmp_path / "back.pth", any_architecture=True)
    with pytest.raises(ConversionError, match=r"back\.pth and .*back\.yml exist already; pass another --out"):
        write_authors_checkpoint(trained, "clip-reid", tmp_path / "back.pth", any_architecture=True)
    assert write_authors_checkpoint(trained, "clip-reid", first.checkpoint, any_architecture=True, overwrite=True)


def test_incomplete_files_and_malformed_settings_get_messages(tmp_path: Path) -> None:
    state = authors_state()
    del state["image_encoder.positional_embedding"]
    with pytest.raises(ConversionError, match=r"lacks tensors every CLIP-ReID / SVLL-ReID network has"):
        convert(tmp_path, state)
    settings = tmp_path / "bad.yaml"
    for text, message in (
        ("image_size: 256\n", r"image_size is 256; it must be \[height, width\]"),
        ("stride: '8'\n", "stride is '8'; it must be a positive integer"),
        ("sie: cameras\n", "sie is 'cameras'; it must be none, camera, view or camera_view"),
        ("colour: red\n", r"unknown setting\(s\) colour"),
    ):
        settings.write_text(text)
        with pytest.raises(ConversionError, match=message):
            load_settings(str(settings))


def test_a_setting_of_another_method_or_an_ambiguous_sie_table_is_refused(tmp_path: Path) -> None:
    baseline = ConversionSettings(origin="clip-reid/vit-baseline/x", image_size=(64, 32), text=False)
    with pytest.raises(ConversionError, match="has learned prompts, but clip-reid/vit-baseline/x describes a baseline"):
        convert(tmp_path, authors_state(), settings=baseline)
    square = ConversionSettings(origin="square.yaml", image_size=(64, 32), cameras=4, views=4)
    with pytest.raises(ConversionError, match=r"4 rows, which fit camera or view .* say which with 'sie'"):
        convert(tmp_path, authors_state(sie_rows=4), settings=square)


def test_a_vehicle_dataset_in_the_settings_gives_the_vehicle_template(tmp_path: Path) -> None:
    state = authors_state(kind="vehicle")
    settings = ConversionSettings(origin="veri.yaml", image_size=(64, 32), dataset="veri776")
    result, trained = convert(tmp_path, state, settings=settings)
    assert trained.spec.kind == "vehicle" and result.facts["prompt template"]["value"].endswith("vehicle.")
    pids = torch.tensor([1, 4])
    with torch.no_grad():
        ours = trained.model.encode_text(pids)
    assert (ours - prompt_features(tiny_clip("svll-tiny-vit"), state, pids)).abs().max() < 1e-5
