"""The compiled query encoder: the traced image branch makes the network's features at any batch size,
survives the cache, and is refused whenever it might not be the index's network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import svllreid
from svllreid.config import config_to_dict, load_config
from svllreid.inference.checkpoint import write_checkpoint
from svllreid.inference.query_encoder import QueryEncoder, cache_file, load_query_encoder
from svllreid.inference.trained import TrainedModel, load_index_model, load_trained_model


def write_tiny_checkpoint(path: Path, arch: str, **spec: object) -> Path:
    """An untrained tiny network saved as 'svllreid train' saves one (randomly initialised, with the
    BNNeck statistics moved off their defaults so that eval mode matters)."""
    torch.manual_seed(0)
    model = svllreid.create_model(arch, num_classes=5, image_size=(64, 32), **spec)  # type: ignore[arg-type]
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    config = load_config(None, ["data.image_size=[64,32]", f"model.arch={arch}"])
    meta = {"spec": model.spec.to_dict(), "quick_gelu": False, "config": config_to_dict(config), "stage": 2}
    return write_checkpoint(path, model, meta)


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SVLLREID_ENCODER_CACHE", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "vit-sie": write_tiny_checkpoint(folder / "vit.safetensors", "svll-tiny-vit", num_cameras=3, sie="camera"),
        "rn": write_tiny_checkpoint(folder / "rn.safetensors", "svll-tiny-rn"),
    }


def unknown_side_info_features(trained: TrainedModel, images: torch.Tensor) -> torch.Tensor:
    unknown = torch.full((len(images),), -1, dtype=torch.long)
    with torch.no_grad():
        return trained.model.encode_image(images, unknown, unknown)


@pytest.mark.parametrize("name", ["vit-sie", "rn"])
def test_the_traced_image_path_makes_the_network_features_at_any_batch(checkpoints, name) -> None:
    trained = load_trained_model(checkpoints[name], "cpu")
    encoder = trained.query_encoder()
    assert encoder is not None
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 2, 7):
        images = torch.randn(batch, 3, 64, 32, generator=generator)
        with torch.no_grad():
            traced = encoder.model.encode_image(images)
        expected = unknown_side_info_features(trained, images)
        assert traced.shape == expected.shape
        assert float((traced - expected).abs().max()) <= 1e-6, batch


def test_cached_encoder_round_trip_and_what_it_is_checked_against(checkpoints, own_cache) -> None:
    path = checkpoints["vit-sie"]
    trained = load_trained_model(path, "cpu")
    identity = trained.identity()
    assert load_query_encoder(path, identity) is None  # nothing cached yet
    stored = trained.cache_query_encoder()
    assert stored == cache_file(trained.checkpoint.meta["content_sha256"]) and stored.parent.parent == own_cache
    loaded = load_query_encoder(path, identity)
    assert isinstance(loaded, QueryEncoder)
    assert loaded.image_size == (64, 32) and loaded.interpolation == trained.interpolation
    assert loaded.mean == tuple(trained.config.data.pixel_mean) and loaded.std == tuple(trained.config.data.pixel_std)
    image = torch.randint(0, 256, (3, 64, 32), dtype=torch.uint8)
    assert torch.equal(loaded.transform(image), trained.transform(image))
    images = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        traced = loaded.model.encode_image(images)
    assert float((traced - unknown_side_info_features(trained, images)).abs().max()) < 1e-6
    # Another network's or other weights' identity: not this encoder (the full path explains why).
    assert load_query_encoder(path, {**identity, "weights_sha256": "0" * 64}) is None
    assert load_query_encoder(path, {**identity, "spec": {**identity["spec"], "stride": 4}}) is None


def test_a_damaged_or_disabled_cache_entry_is_not_used(checkpoints, monkeypatch) -> None:
    path = checkpoints["rn"]
    trained = load_trained_model(path, "cpu")
    stored = trained.cache_query_encoder()
    assert stored is not None and load_query_encoder(path, trained.identity()) is not None
    monkeypatch.setenv("SVLLREID_ENCODER_CACHE", "0")
    assert load_query_encoder(path, trained.identity()) is None
    monkeypatch.delenv("SVLLREID_ENCODER_CACHE")
    data = bytearray(stored.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zeros over part of the stored tensors
    stored.write_bytes(bytes(data))
    assert load_query_encoder(path, trained.identity()) is None
    stored.write_bytes(b"not a TorchScript archive")
    assert load_query_encoder(path, trained.identity()) is None
    assert trained.cache_query_encoder() == stored  # the damaged entry is compiled again ...
    assert load_query_encoder(path, trained.identity()) is not None  # ... and used from then on


def test_the_cache_is_off_with_the_environment_variable(checkpoints, monkeypatch, own_cache) -> None:
    monkeypatch.setenv("SVLLREID_ENCODER_CACHE", "0")
    trained = load_trained_model(checkpoints["rn"], "cpu")
    assert trained.cache_query_encoder() is None
    assert not (own_cache / "query-encoders").exists()


def test_index_model_loads_the_cached_encoder_and_caches_it_after_a_full_load(checkpoints, tmp_path) -> None:
    path = checkpoints["vit-sie"]
    identity = {**load_trained_model(path, "cpu").identity(), "checkpoint": str(path)}
    first = load_index_model(identity, tmp_path / "g.index", device="cpu")
    assert isinstance(first, TrainedModel)  # nothing cached: the network is rebuilt, and compiled for next time
    second = load_index_model(identity, tmp_path / "g.index", device="cpu")
    assert isinstance(second, QueryEncoder)
    assert isinstance(load_index_model(identity, tmp_path / "g.index", device="cpu", compiled=False), TrainedModel)
