"""Checkpoints: round trip, atomic writes, safe reads, clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import svllreid
from svllreid.errors import CheckpointError
from svllreid.inference.checkpoint import (
    load_model_state,
    load_optimizer_state,
    read_checkpoint,
    restore_rng,
    write_checkpoint,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return svllreid.create_model("svll-tiny-vit", num_classes=4, image_size=(64, 32))


def trained_optimizer(model):
    params = model.prepare_stage(1)
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    loss = model.encode_text(torch.tensor([0, 1, 2])).square().sum()
    loss.backward()
    optimizer.step()
    return optimizer


def test_round_trip_model_optimizer_rng(tmp_path, model):
    optimizer = trained_optimizer(model)
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    path = write_checkpoint(
        tmp_path / "c.safetensors", model, {"stage": 1, "epoch": 3}, optimizer=optimizer, with_rng=True
    )
    expected = (random.random(), np.random.rand(), torch.rand(3))
    ckpt = read_checkpoint(path)
    assert ckpt.meta["stage"] == 1 and ckpt.meta["epoch"] == 3 and ckpt.meta["svllreid_version"]
    torch.manual_seed(99)
    fresh = svllreid.create_model("svll-tiny-vit", num_classes=4, image_size=(64, 32))
    load_model_state(fresh, ckpt)
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    new_optimizer = torch.optim.Adam(fresh.prepare_stage(1).values(), lr=1e-3)
    load_optimizer_state(new_optimizer, ckpt)
    old_state = optimizer.state_dict()["state"][0]
    new_state = new_optimizer.state_dict()["state"][0]
    assert torch.equal(old_state["exp_avg"], new_state["exp_avg"]) and torch.equal(old_state["step"], new_state["step"])
    restore_rng(ckpt)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert again[0] == expected[0] and again[1] == expected[1] and torch.equal(again[2], expected[2])


def test_tensors_that_share_memory_are_written_as_copies_and_the_rest_as_they_are(tmp_path) -> None:
    """Tied weights (one tensor under two names) and a parameter that is a part of another's storage are
    copied for safetensors, which refuses shared memory; the file holds every name with its values."""
    tied = torch.nn.Module()
    tied.encoder = torch.nn.Linear(3, 4, bias=False)
    tied.decoder = torch.nn.Linear(4, 3, bias=False)
    tied.decoder.weight = torch.nn.Parameter(tied.encoder.weight.T)  # a view of the encoder's weight
    tied.head = torch.nn.Linear(3, 4, bias=False)
    tied.head.weight = tied.encoder.weight  # the same tensor under a second name
    tied.register_buffer("part", torch.arange(10.0)[2:6])  # a part of a larger storage
    path = write_checkpoint(tmp_path / "tied.safetensors", tied, {"stage": 2})
    saved = read_checkpoint(path).group("model")
    assert saved.keys() == tied.state_dict().keys()
    for name, value in tied.state_dict().items():
        assert torch.equal(saved[name], value), name
    before = tied.encoder.weight.detach().clone()
    with torch.no_grad():
        tied.encoder.weight.add_(1.0)  # the model trains on: the file keeps what was written
    assert torch.equal(read_checkpoint(path).group("model")["encoder.weight"], before)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, model, monkeypatch):
    path = write_checkpoint(tmp_path / "last.safetensors", model, {"epoch": 1})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr("safetensors.torch.save_file", crash)  # the writer svllreid.fileio calls
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(path, model, {"epoch": 2})
    assert path.read_bytes() == before  # the last good checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temporary left behind
    assert read_checkpoint(path).meta["epoch"] == 1


def test_reading_errors(tmp_path, model):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        read_checkpoint(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match=r"not an svllreid checkpoint.*model\.pretrained"):
        read_checkpoint(plain)


def test_loading_into_another_model_is_an_error(tmp_path, model):
    path = write_checkpoint(tmp_path / "c.safetensors", model, {})
    other = svllreid.create_model("svll-tiny-vit", num_classes=7, image_size=(64, 32))
    with pytest.raises(CheckpointError, match=r"does not fit this model: .*mis-shaped.*prompt_learner.cls_ctx"):
        load_model_state(other, read_checkpoint(path))


def test_run_directory_resolves_to_last_checkpoint(tmp_path, model):
    write_checkpoint(tmp_path / "checkpoints" / "last.safetensors", model, {"epoch": 4})
    assert read_checkpoint(tmp_path).meta["epoch"] == 4


def test_a_corrupted_checkpoint_is_reported_not_loaded(tmp_path, model, capsys) -> None:
    """Four bytes of a weight turned into a NaN: the digest written with the file catches it on read;
    verify=False (the library's fast path) reads it as it is."""
    path = write_checkpoint(tmp_path / "model.safetensors", model, {"stage": 2, "epoch": 1})
    assert read_checkpoint(path).meta["content_sha256"]  # sound: read and verified
    data = bytearray(path.read_bytes())
    data[-8:-4] = np.array([np.nan], dtype=np.float32).tobytes()  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"is corrupt: its content no longer matches the digest"):
        read_checkpoint(path)
    unverified = read_checkpoint(path, verify=False)
    assert any(bool(torch.isnan(t).any()) for t in unverified.tensors.values() if t.is_floating_point())
    # The command line says so too, without a traceback.
    from PIL import Image

    from svllreid.cli import main

    (tmp_path / "photos").mkdir()
    Image.new("RGB", (16, 32)).save(tmp_path / "photos" / "a.jpg")
    argv = [
        "extract",
        "--checkpoint",
        str(path),
        "--images",
        str(tmp_path / "photos"),
        "--out",
        str(tmp_path / "f.npz"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("svllreid: error: ") and "is corrupt" in err and "Traceback" not in err


def test_a_full_disk_gets_a_clean_message_and_keeps_the_last_checkpoint(tmp_path, model, monkeypatch) -> None:
    from safetensors import SafetensorError

    from svllreid.errors import DiskFullError
    from svllreid.fileio import atomic_write_bytes

    path = write_checkpoint(tmp_path / "last.safetensors", model, {"epoch": 1})
    before = path.read_bytes()

    def full(*args, **kwargs):  # what safetensors' writer raises on a full disk
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    monkeypatch.setattr("safetensors.torch.save_file", full)
    with pytest.raises(
        DiskFullError,
        match=r"the disk holding .* is full .*could not write last\.safetensors; its previous version is intact",
    ):
        write_checkpoint(path, model, {"epoch": 2})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]
    # Python's own OSError from a plain write: the same message, for a file that did not exist yet.
    import errno

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", no_space)
    with pytest.raises(DiskFullError, match="nothing was written there"):
        atomic_write_bytes(tmp_path / "eval.json", b"{}")
