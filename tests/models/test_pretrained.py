"""Pretrained weights: OpenAI archives, open_clip checkpoints, safetensors, tags, and errors."""

from __future__ import annotations

import pickle

import open_clip
import pytest
import torch
from safetensors.torch import save_file

import svllreid
from svllreid.errors import PretrainedError
from svllreid.models.pretrained import build_clip
from tests.models.helpers import save_openai_archive

ARCH = "svll-tiny-vit"


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(7)
    clip = open_clip.create_model(ARCH)
    return {k: v.detach().clone() for k, v in clip.state_dict().items()}


def reid_outputs(model: svllreid.models.ReIDModel) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    torch.manual_seed(3)
    images = torch.randn(2, 3, 128, 64)
    tokens = open_clip.get_tokenizer(ARCH)(["a person in a red coat"])
    with torch.no_grad():
        text = model.text_encoder(model.text_encoder.embed_tokens(tokens), tokens.argmax(-1))
        return model.encode_image(images), text


def build(pretrained: str | None, **kwargs):
    return svllreid.create_model(ARCH, num_classes=4, image_size=(128, 64), pretrained=pretrained, **kwargs)


def test_round_trip_through_every_file_format(tmp_path, source):
    ckpt = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in source.items()}}, ckpt)
    plain = tmp_path / "plain.bin"
    torch.save(source, plain)
    safe = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, str(safe))
    archive = save_openai_archive(source, tmp_path / "ViT-tiny.pt")

    outputs = {}
    for name, path in (("ckpt", ckpt), ("plain", plain), ("safetensors", safe), ("archive", archive)):
        # The archive implies QuickGELU (OpenAI's activation); compare like with like.
        model = build(str(path), force_quick_gelu=True)
        outputs[name] = reid_outputs(model)
        assert model.load_report.kind == ("openai-archive" if name == "archive" else "state-dict")
    for name in ("plain", "safetensors", "archive"):
        torch.testing.assert_close(outputs[name][0], outputs["ckpt"][0], atol=0, rtol=0)
        torch.testing.assert_close(outputs[name][1], outputs["ckpt"][1], atol=0, rtol=0)
    # Loaded weights are the file's: the text projection equals the source exactly.
    model = build(str(ckpt))
    torch.testing.assert_close(model.text_encoder.text_projection.detach(), source["text_projection"])
    assert not torch.equal(reid_outputs(build(None))[0], outputs["ckpt"][0])


def test_openai_archive_selects_quick_gelu_and_accepts_fp16(tmp_path, source):
    half = {k: v.half() if v.is_floating_point() else v for k, v in source.items()}
    model = build(str(save_openai_archive(half, tmp_path / "fp16.pt")))
    assert model.load_report.quick_gelu is True
    assert all(p.dtype == torch.float32 for p in model.parameters())
    plain = tmp_path / "plain.pt"
    torch.save(source, plain)
    assert build(str(plain)).load_report.quick_gelu is False  # the architecture's own activation


def test_mismatched_architecture_is_a_clear_error(tmp_path):
    rn = tmp_path / "rn.pt"
    torch.save(open_clip.create_model("svll-tiny-rn").state_dict(), rn)
    with pytest.raises(PretrainedError) as err:
        build(str(rn))
    message = str(err.value)
    assert f"do not match architecture '{ARCH}'" in message
    assert "missing keys" in message and "unexpected keys" in message
    assert "The file fits: svll-tiny-rn" in message


def test_shape_mismatch_is_listed(tmp_path, source):
    bad = dict(source)
    bad["text_projection"] = torch.zeros(64, 32)
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    with pytest.raises(PretrainedError, match=r"1 mis-shaped keys, e\.g\. text_projection: file \(64, 32\) vs model"):
        build(str(path))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_unreadable_and_unsafe_files(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match=r"cannot read weights from .*junk\.pt"):
        build(str(junk))

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(PretrainedError, match="cannot read weights"):
        build(str(evil))
    assert "this must never run" not in capsys.readouterr().out  # weights_only: nothing executed
    with pytest.raises(PretrainedError, match="weights file not found"):
        build(str(tmp_path / "missing.pt"))


def test_tags(monkeypatch):
    with pytest.raises(PretrainedError, match=r"neither a weights file nor an open_clip pretrained tag of RN50\. Tags"):
        build_clip("RN50", "laion400m")
    monkeypatch.setattr("svllreid.models.pretrained._reachable", lambda cfg, timeout=3.0: False)
    monkeypatch.setattr("svllreid.models.pretrained._cached_download", lambda cfg: None)
    with pytest.raises(PretrainedError, match=r"not cached and their download host cannot be reached.*pretrained=/"):
        build_clip("ViT-B-16", "openai")


def test_tag_uses_open_clips_cache(tmp_path, monkeypatch, source):
    archive = save_openai_archive(source, tmp_path / "cached.pt")
    monkeypatch.setattr("open_clip.get_pretrained_cfg", lambda arch, tag: {"url": "https://x/y.pt", "quick_gelu": True})
    monkeypatch.setattr("svllreid.models.pretrained._cached_download", lambda cfg: archive)
    clip, report = build_clip(ARCH, "openai")
    assert report.kind == "tag" and report.quick_gelu
    torch.testing.assert_close(clip.text_projection.detach(), source["text_projection"])


def test_unknown_architecture():
    with pytest.raises(PretrainedError, match=r"unknown architecture 'ViT-B-61'\. Did you mean ViT-B-16"):
        build_clip("ViT-B-61")
