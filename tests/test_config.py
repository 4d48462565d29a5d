"""Typed configs: YAML layers, overrides, unknown keys, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from svllreid.config import Config, config_to_yaml, load_config, save_config
from svllreid.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_method():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.stage1.lr == 3.5e-4 and cfg.stage1.warmup_epochs == 5
    assert cfg.stage2.ids_per_batch * cfg.stage2.images_per_id == 64
    assert cfg.stage2.milestones == [30, 50] and cfg.stage2.id_weight == 0.25
    assert cfg.stage2.triplet_margin == 0.3 and cfg.stage2.label_smoothing == 0.1
    assert cfg.eval.rerank_k1 == 20 and cfg.eval.rerank_k2 == 6 and cfg.eval.rerank_lambda == 0.3
    assert cfg.data.image_size == [256, 128]


def test_overrides_are_typed():
    cfg = load_config(None, ["stage2.lr=1e-5", "data.image_size=[128,64]", "model.pretrained=/w/ViT-B-16.pt"])
    assert cfg.stage2.lr == 1e-5 and isinstance(cfg.stage2.lr, float)
    assert cfg.data.image_size == [128, 64]
    assert cfg.model.pretrained == "/w/ViT-B-16.pt"


def test_dataset_options_are_free_form():
    cfg = load_config(None, ["data.options.test_size=1600", "data.options.camera_regex=c(\\d)"])
    assert cfg.data.options == {"test_size": 1600, "camera_regex": "c(\\d)"}


SYNTHETIC = REPO / "configs" / "synthetic_tiny.yaml"  # data.options: ids, cameras, images_per_camera, seed


def test_another_dataset_starts_its_options_afresh():
    # Before: the synthetic set's options stayed, and the folder parser failed on them.
    assert load_config(SYNTHETIC).data.options["ids"] == 100
    cfg = load_config(SYNTHETIC, ["data.dataset=folder", "data.root=/photos"])
    assert cfg.data.dataset == "folder" and cfg.data.options == {}
    cfg = load_config(SYNTHETIC, ["data.dataset=folder", "data.options.camera_regex=_(left|right)"])
    assert cfg.data.options == {"camera_regex": "_(left|right)"}
    same = load_config(SYNTHETIC, ["data.dataset=synthetic", "data.options.ids=40"])
    assert same.data.options == {"ids": 40, "cameras": 6, "images_per_camera": 4, "seed": 0}


@pytest.mark.parametrize("empty", ["{}", "null"])
def test_empty_dataset_options_replace_the_earlier_ones(empty: str):
    # Before: data.options={} merged into the file's options (no change), and data.options=null was refused.
    assert load_config(SYNTHETIC, [f"data.options={empty}"]).data.options == {}
    cfg = load_config(SYNTHETIC, [f"data.options={empty}", "data.options.seed=3"])
    assert cfg.data.options == {"seed": 3}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("stage2.lrr=1", "unknown config key 'stage2.lrr'.*did you mean 'stage2.lr'"),
        ("stag1.lr=1", "unknown config key 'stag1'.*did you mean 'stage1'"),
        ("data.imagesize=[1,2]", "did you mean 'data.image_size'"),
        ("model.zzz=1", r"unknown config key 'model.zzz' in override 'model.zzz=1' \(valid keys here: arch"),
    ],
)
def test_unknown_keys_name_the_key_and_closest(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [override])


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stage1:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=rf"'stage1.epochz' in {path}.*did you mean 'stage1.epochs'"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("stage2.lr=fast", "could not be converted to Float"),
        ("model.sie=cameras", "model.sie must be one of"),
        ("run.precision=fp8", "run.precision must be one of"),
        ("run.batch_semantics=local", "run.batch_semantics must be one of 'global', 'per_process'; got 'local'"),
        ("data.test_interpolation=nearest", "data.test_interpolation must be one of 'bilinear', 'bicubic'"),
        ("model.vis_ssl_bn_init=ones", "model.vis_ssl_bn_init must be one of 'uniform', 'pytorch'; got 'ones'"),
        ("data.flip_prob=2", r"data.flip_prob must be within \[0, 1\]"),
        ("stage2.milestones=[50,30]", "must be increasing"),
        ("stage2", "must look like key.sub=value"),
        ("model=3", "must be a mapping"),
        ("data.image_size=wide", r"data.image_size must be \[height, width\] > 0 or auto; got 'wide'"),
        ("data.image_size=[64]", r"data.image_size must be \[height, width\] > 0 or auto; got \[64\]"),
        ("data.image_area=0", "data.image_area must be positive; got 0"),
        ("data.validation_ids=-3", "data.validation_ids must be a number of identities >= 0 or auto; got -3"),
        ("data.validation_ids=some", "data.validation_ids must be a number of identities >= 0 or auto; got 'some'"),
        ("eval.every=-1", "eval.every must be non-negative; got -1"),
        ("eval.patience=-2", "eval.patience must be non-negative; got -2"),
    ],
)
def test_invalid_values(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [override])


def test_bases_and_override_order(tmp_path):
    (tmp_path / "base.yaml").write_text("stage1:\n  epochs: 10\n  lr: 0.1\nrun:\n  seed: 1\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nstage1:\n  epochs: 20\n")
    cfg = load_config(tmp_path / "child.yaml", ["run.seed=7"])
    assert (cfg.stage1.epochs, cfg.stage1.lr, cfg.run.seed) == (20, 0.1, 7)


def test_base_cycle_and_missing_file(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["stage2.vis_ssl=true", "data.options.test_size=2400", "stage2.grad_clip=5.0"])
    saved = save_config(cfg, tmp_path / "run")
    assert saved.name == "config.yaml"
    assert load_config(saved) == cfg
    assert config_to_yaml(load_config(saved)) == config_to_yaml(cfg)


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_loads(path):
    load_config(path)


def test_yaml_1_1_words_stay_strings(tmp_path):
    # YAML 1.1 reads off/on/yes/no as booleans; configs use YAML 1.2 booleans (true/false only).
    assert load_config(None, ["data.check=off"]).data.check == "off"
    (tmp_path / "c.yaml").write_text("data:\n  check: off\n  cache_images: true\nrun:\n  name: yes\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.data.check, cfg.data.cache_images, cfg.run.name) == ("off", True, "yes")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stage2.lr=-1", "stage2.lr must be positive; got -1"),
        ("stage1.lr=0", "stage1.lr must be positive; got 0"),
        ("stage2.weight_decay=-0.1", "stage2.weight_decay must be non-negative"),
        ("stage2.label_smoothing=1.0", r"stage2.label_smoothing must be within \[0, 1\)"),
        ("pretrain.min_lr=-1e-6", "pretrain.min_lr must be non-negative"),
        ("stage2.lr=.nan", "stage2.lr must be positive; got nan"),
    ],
)
def test_rates_and_weights_out_of_range_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
