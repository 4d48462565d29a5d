"""Typed configuration: one dataclass per concern, YAML files, ``a.b=c`` overrides.

Only the command line and the factories read these objects; library functions take plain
arguments. A YAML file may build on others with ``base: other.yaml`` (or a list of files),
resolved relative to the file that names them; later files and command-line overrides win.
Every key is checked against the dataclasses: an unknown or misspelt key is an error that
names the key and the closest valid one.
"""

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union, cast, get_args, get_origin, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from svllreid.errors import ConfigError
from svllreid.fileio import atomic_write_text

# The fields with a fixed set of string choices. The type checker sees each as a Literal of its choices;
# at runtime they are plain ``str`` fields, so OmegaConf reads and merges them as any string (it rejects
# Literal fields before 2.4 and would replace the messages below with its own), and ``__post_init__``
# checks the choice (``_choice``), so a built config holds one of them.
if TYPE_CHECKING:
    DatasetCheck = Literal["quick", "full", "off"]
    Interpolation = Literal["bilinear", "bicubic"]
    SideInfo = Literal["none", "camera", "view", "camera_view"]
    BatchNormInit = Literal["uniform", "pytorch"]
    PromptMask = Literal["element", "token", "swap", "swap_reference", "mix"]
    EvalSplitName = Literal["", "train", "val", "test"]
    Precision = Literal["auto", "fp32", "bf16", "fp16"]
    BatchSemantics = Literal["global", "per_process"]
else:
    DatasetCheck = Interpolation = SideInfo = BatchNormInit = PromptMask = EvalSplitName = Precision = str
    BatchSemantics = str

__all__ = [
    "AUTO",
    "BASE_KEY",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "PretrainConfig",
    "RunConfig",
    "Stage1Config",
    "Stage2Config",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "parse_override",
    "save_config",
]


#: The value of the settings chosen from the data when training starts (data.image_size, data.validation_ids).
AUTO = "auto"


def _choice(section: str, name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{section}.{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _positive(section: str, name: str, value: float, allow_zero: bool = False) -> None:
    if not value >= 0 or (value == 0 and not allow_zero):  # NaN is neither
        kind = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{section}.{name} must be {kind}; got {value}")


@dataclass
class DataConfig:
    """Which dataset, and how images become tensors."""

    dataset: str = "synthetic"
    root: str = ""
    #: Parser-specific options, e.g. ``test_size`` for VehicleID or ``camera_regex`` for folders.
    options: dict[str, Any] = field(default_factory=dict)
    #: [height, width] of the network's input, or "auto": the training images' median aspect ratio at about
    #: ``image_area`` pixels (sides multiples of 8), chosen when training starts and recorded in config.yaml.
    image_size: Any = field(default_factory=lambda: [256, 128])
    #: The pixel budget (height × width) of ``image_size=auto``: 256×128, the paper's person input.
    image_area: int = 32768
    pixel_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    pixel_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    #: Resize filter of the test pipeline (also stage 1's feature cache): "bilinear", torchvision's
    #: default on PIL images and so the reference's, or "bicubic". Training images resize bicubically.
    test_interpolation: Interpolation = "bilinear"
    padding: int = 10
    flip_prob: float = 0.5
    erasing_prob: float = 0.5
    #: Random erasing of SVLL's two self-supervision views: probability and erased area fraction.
    ssl_erasing_prob: float = 0.5
    ssl_erasing_area: float = 0.33
    num_workers: int = 4
    #: Keep decoded, resized uint8 images in shared memory so each image is decoded once per run.
    cache_images: bool = False
    #: Hold this many random training identities out as a validation query/gallery split, evaluated beside
    #: the test splits, to choose settings and the checkpoint on without the test set; 0 = none; "auto" =
    #: a fifth of them for a user's own data (folder, pku), none for the paper's benchmarks and synthetic data.
    validation_ids: Any = "auto"
    validation_seed: int = 0
    #: Dataset validation when training starts: "quick" (structure, names, splits), "full"
    #: (also decodes every image) or "off".
    check: DatasetCheck = "quick"

    def __post_init__(self) -> None:
        if self.image_size != AUTO:
            size = list(self.image_size) if isinstance(self.image_size, list | tuple) else [self.image_size]
            if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
                raise ConfigError(f"data.image_size must be [height, width] > 0 or auto; got {self.image_size!r}")
            self.image_size = size
        _positive("data", "image_area", self.image_area)
        if self.validation_ids != AUTO and not (isinstance(self.validation_ids, int) and self.validation_ids >= 0):
            raise ConfigError(
                f"data.validation_ids must be a number of identities >= 0 or auto; got {self.validation_ids!r}"
            )
        for name in ("pixel_mean", "pixel_std"):
            if len(getattr(self, name)) != 3:
                raise ConfigError(f"data.{name} needs 3 values (R, G, B); got {list(getattr(self, name))}")
        if min(self.pixel_std) <= 0:
            raise ConfigError(f"data.pixel_std must be positive; got {list(self.pixel_std)}")
        for name in ("flip_prob", "erasing_prob", "ssl_erasing_prob", "ssl_erasing_area"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"data.{name} must be within [0, 1]; got {getattr(self, name)}")
        _positive("data", "padding", self.padding, allow_zero=True)
        _positive("data", "num_workers", self.num_workers, allow_zero=True)
        _choice("data", "check", self.check, ("quick", "full", "off"))
        _choice("data", "test_interpolation", self.test_interpolation, ("bilinear", "bicubic"))

    @property
    def size(self) -> tuple[int, int]:
        """``image_size`` as (height, width); an ``auto`` size must have been resolved (when training starts).

        Raises:
            ConfigError: ``image_size`` is still ``auto``.
        """
        if self.image_size == AUTO:
            raise ConfigError("data.image_size=auto is chosen from the training images when training starts")
        return int(self.image_size[0]), int(self.image_size[1])


@dataclass
class ModelConfig:
    """The network: CLIP backbone, patch stride, side-information embedding, SSL heads."""

    arch: str = "ViT-B-16"
    #: OpenAI/open_clip checkpoint file, open_clip pretrained tag, or svllreid's shipped "svll-synth";
    #: None (or "none") = random initialisation.
    pretrained: Optional[str] = None  # noqa: UP045 (OmegaConf needs typing.Optional)
    #: ViT patch stride; None = the patch size (16 for ViT-B/16), 12 = overlapping patches. Unused by ResNets.
    stride: Optional[int] = None  # noqa: UP045
    #: ResNet last-stage stride (1 for ReID).
    last_stride: int = 1
    sie: SideInfo = "none"
    sie_coef: float = 1.0
    #: Width of SVLL's projection heads (4096 -> 256 in the paper).
    ssl_hidden_dim: int = 4096
    ssl_out_dim: int = 256
    #: BatchNorm init of the vision projector: "uniform" = weight and bias from U(0, 1) (the reference),
    #: "pytorch" = weight 1, bias 0 (PyTorch's default, and svllreid's before this option).
    vis_ssl_bn_init: BatchNormInit = "uniform"
    #: QuickGELU: None = automatic (on for OpenAI weights), true = force it.
    force_quick_gelu: Optional[bool] = None  # noqa: UP045

    def __post_init__(self) -> None:
        if isinstance(self.pretrained, str) and self.pretrained.strip().lower() in ("", "none", "null", "random"):
            self.pretrained = None  # model.pretrained=none: random initialisation
        if self.stride is not None:
            _positive("model", "stride", self.stride)
        _choice("model", "sie", self.sie, ("none", "camera", "view", "camera_view"))
        if self.last_stride not in (1, 2):
            raise ConfigError(f"model.last_stride must be 1 or 2; got {self.last_stride}")
        _positive("model", "ssl_hidden_dim", self.ssl_hidden_dim)
        _positive("model", "ssl_out_dim", self.ssl_out_dim)
        _choice("model", "vis_ssl_bn_init", self.vis_ssl_bn_init, ("uniform", "pytorch"))


@dataclass
class Stage1Config:
    """Stage 1: prompt learning against frozen encoders (plus language self-supervision)."""

    epochs: int = 120
    batch_size: int = 64
    lr: float = 3.5e-4
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    warmup_lr: float = 1e-5
    min_lr: float = 1e-6
    lang_ssl: bool = False
    lang_ssl_weight: float = 0.8
    #: The two views of language self-supervision: ``element`` (the reference's ``mask``, the default),
    #: ``token``, ``swap`` (svllreid's: the 12 used positions permuted among themselves), ``swap_reference``
    #: (the reference's: positions of all 77 permuted, which mostly moves padding into the prompt) or
    #: ``mix`` (svllreid's own design: the reference's mix branch cannot run). See models/prompts.py.
    prompt_mask: PromptMask = "element"
    prompt_mask_prob: float = 0.5
    #: The reference never optimises the language projector; True trains it.
    train_lang_projector: bool = False

    def __post_init__(self) -> None:
        _positive("stage1", "epochs", self.epochs, allow_zero=True)
        _positive("stage1", "batch_size", self.batch_size)
        _positive("stage1", "lr", self.lr)
        for name in ("weight_decay", "warmup_epochs", "warmup_lr", "min_lr", "lang_ssl_weight"):
            _positive("stage1", name, getattr(self, name), allow_zero=True)
        _choice("stage1", "prompt_mask", self.prompt_mask, ("element", "token", "swap", "swap_reference", "mix"))
        if not 0.0 <= self.prompt_mask_prob <= 1.0:
            raise ConfigError(f"stage1.prompt_mask_prob must be within [0, 1]; got {self.prompt_mask_prob}")


@dataclass
class Stage2Config:
    """Stage 2: image-encoder fine-tuning (plus vision self-supervision)."""

    epochs: int = 60
    ids_per_batch: int = 16
    images_per_id: int = 4
    lr: float = 5e-6
    weight_decay: float = 1e-4
    bias_lr_factor: float = 2.0
    warmup_epochs: int = 10
    warmup_factor: float = 0.1
    milestones: list[int] = field(default_factory=lambda: [30, 50])
    gamma: float = 0.1
    id_weight: float = 0.25
    triplet_weight: float = 1.0
    i2t_weight: float = 1.0
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    #: Batch-hard triplet on L2-normalised features (cosine geometry, as features are ranked) instead of
    #: the reference's unnormalised ones.
    triplet_normalize: bool = False
    vis_ssl: bool = False
    vis_ssl_weight: float = 0.8
    #: Exclude other images of the same identity from the NT-Xent negatives (the reference keeps them).
    ssl_exclude_same_id: bool = False
    #: NT-Xent temperature of the vision self-supervision (the reference's 0.1).
    ssl_temperature: float = 0.1
    #: Encode the image and its two self-supervision views in one batched pass (encoders without BatchNorm).
    single_pass: bool = True
    #: Let the views' passes update the encoder's BatchNorm running statistics (ResNets). Off: only the
    #: clean images do, so the statistics used at test time do not drift toward occluded views.
    views_update_bn_stats: bool = False
    grad_clip: Optional[float] = None  # noqa: UP045 (OmegaConf needs typing.Optional)
    #: After every epoch, log the within- and between-identity spread of f12 on a fixed probe set of
    #: training images (one forward pass over 64 images; svllreid.training.dynamics).
    probe_spread: bool = True
    #: With vision self-supervision, on each epoch's first batch, log the cosine between its gradient on the
    #: image encoder and the other losses' gradient, and their norm ratio. Two extra backward passes per
    #: epoch: measured 0.39-0.41 s of 11.6-11.8 s epochs (3.4 %) on the tiny synthetic recipe, less on
    #: longer epochs (svllreid.training.dynamics). Not under DDP.
    probe_gradients: bool = True

    def __post_init__(self) -> None:
        _positive("stage2", "epochs", self.epochs, allow_zero=True)
        _positive("stage2", "ids_per_batch", self.ids_per_batch)
        _positive("stage2", "images_per_id", self.images_per_id)
        _positive("stage2", "ssl_temperature", self.ssl_temperature)
        for name in ("lr", "bias_lr_factor", "warmup_factor", "gamma"):
            _positive("stage2", name, getattr(self, name))
        for name in ("weight_decay", "warmup_epochs", "id_weight", "triplet_weight", "i2t_weight", "triplet_margin"):
            _positive("stage2", name, getattr(self, name), allow_zero=True)
        _positive("stage2", "vis_ssl_weight", self.vis_ssl_weight, allow_zero=True)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"stage2.label_smoothing must be within [0, 1); got {self.label_smoothing}")
        if self.grad_clip is not None:
            _positive("stage2", "grad_clip", self.grad_clip)
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"stage2.milestones must be increasing; got {list(self.milestones)}")


@dataclass
class PretrainConfig:
    """Language-image pretraining (``svllreid pretrain``): CLIP's contrastive loss on a caption dataset.

    The ``data`` section names the caption dataset; its ``image_size`` must be the architecture's own
    input size (so the weights load anywhere at their native geometry).
    """

    epochs: int = 10
    #: Pairs per step (the global batch under DDP with run.batch_semantics=global).
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.2
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    min_lr: float = 1e-6
    grad_clip: Optional[float] = None  # noqa: UP045 (OmegaConf needs typing.Optional)
    #: Split for the text-to-image evaluation before and after training ("" = none).
    eval_split: EvalSplitName = "test"
    #: Store the final weights (clip.safetensors) in fp16: half the size, for shipping.
    save_fp16: bool = False

    def __post_init__(self) -> None:
        _positive("pretrain", "epochs", self.epochs, allow_zero=True)
        _positive("pretrain", "batch_size", self.batch_size)
        _positive("pretrain", "lr", self.lr)
        for name in ("weight_decay", "warmup_epochs", "warmup_lr", "min_lr"):
            _positive("pretrain", name, getattr(self, name), allow_zero=True)
        if self.grad_clip is not None:
            _positive("pretrain", "grad_clip", self.grad_clip)
        _choice("pretrain", "eval_split", self.eval_split, ("", "train", "val", "test"))


@dataclass
class EvalConfig:
    """Evaluation protocol options."""

    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    max_rank: int = 50
    flip: bool = False
    batch_size: int = 256
    #: Also evaluate the network before training (reported next to the final result; always done when
    #: there is a validation split, whose start it completes).
    before_training: bool = False
    #: With a validation split (data.validation_ids): evaluate it at the start of stage 2 and every this many
    #: stage-2 epochs (and after the last), keep the best as checkpoints/best.safetensors and deliver it as
    #: model.safetensors; 0 = the start and the last epoch only (the better of the two is delivered).
    every: int = 1
    #: Stop stage 2 after this many validation evaluations in a row without a new best; 0 = never early.
    patience: int = 0
    #: Evaluate on the test splits (the start and the delivered network). ``svllreid tune`` turns it off:
    #: settings are chosen on the validation split, and the test set is not even looked at.
    test: bool = True

    def __post_init__(self) -> None:
        _positive("eval", "max_rank", self.max_rank)
        _positive("eval", "batch_size", self.batch_size)
        _positive("eval", "every", self.every, allow_zero=True)
        _positive("eval", "patience", self.patience, allow_zero=True)


@dataclass
class RunConfig:
    """Where and how a run executes."""

    output_dir: str = "runs"
    name: str = ""
    seed: int = 1234
    device: str = "auto"
    precision: Precision = "auto"
    #: Under DDP (torchrun): "global" = the configured batch sizes (stage1.batch_size, stage2's P×K) are
    #: the batch of all W processes together, each process taking 1/W of it, and the contrastive losses
    #: gather their negatives from every process (the reference); "per_process" = every process takes
    #: the whole configured batch (W times the global batch at the same learning rate), losses per process.
    batch_semantics: BatchSemantics = "global"
    log_every: int = 20
    #: Write report.html and its figures at the end of training.
    report: bool = True

    def __post_init__(self) -> None:
        _choice("run", "precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        _choice("run", "batch_semantics", self.batch_semantics, ("global", "per_process"))
        _positive("run", "log_every", self.log_every)


@dataclass
class Config:
    """The whole configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


BASE_KEY = "base"


class _Yaml12BoolLoader(yaml.SafeLoader):
    """SafeLoader where only true/false are booleans (YAML 1.2), so ``check: off`` stays a string."""


_Yaml12BoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12BoolLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12BoolLoader)  # a SafeLoader subclass: no arbitrary objects


def _field_types(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _unknown_key_error(path: str, key: str, valid: Sequence[str], source: str) -> ConfigError:
    prefix = f"{path}." if path else ""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
    return ConfigError(
        f"unknown config key '{prefix}{key}' in {source}{hint} (valid keys here: {', '.join(sorted(valid))})"
    )


def _check_keys(values: Mapping[str, Any], cls: type, source: str, path: str = "") -> None:
    """Raise ConfigError for the first key of ``values`` that ``cls`` does not define."""
    types = _field_types(cls)
    for key, value in values.items():
        if key not in types:
            raise _unknown_key_error(path, str(key), list(types), source)
        sub = _unwrap_optional(types[key])
        if dataclasses.is_dataclass(sub):
            where = f"{path}.{key}" if path else key
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{where}' in {source} must be a mapping; got {value!r}")
            _check_keys(value, cast(type, sub), source, where)  # a field's type: the dataclass itself


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict[str, Any], str]]:
    """Return the layers of ``path`` (its bases first, then itself) with their source names."""
    path = path.expanduser().resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"config files include each other in a cycle: {chain}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _yaml_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections, not {type(data).__name__}")
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    layers: list[tuple[dict[str, Any], str]] = []
    for base in bases:
        layers.extend(_read_yaml(path.parent / base, (*seen, path)))
    layers.append((data, str(path)))
    return layers


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into the dotted key and the YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value (e.g. stage2.lr=1e-5)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = _yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Build a :class:`Config` from defaults, a YAML file (with its bases) and overrides.

    Args:
        path: YAML file; None uses the built-in defaults only.
        overrides: ``key.sub=value`` strings, applied last, in order.

    Raises:
        ConfigError: unknown keys, wrong types, invalid values or unreadable files.
    """
    layers = _read_yaml(Path(path)) if path is not None else []
    for text in overrides:
        key, value = parse_override(text)
        layers.append((_nest(key, value), f"override {text!r}"))
    return _merge(layers)


def config_from_dict(values: Mapping[str, Any], source: str = "a saved config") -> Config:
    """A :class:`Config` from a nested dict such as :func:`config_to_dict` gives (checked like a file)."""
    return _merge([(dict(values), source)])


def _dataset_options_first(merged: Any, values: dict[str, Any]) -> dict[str, Any]:
    """``data.options`` belong to one dataset: a layer that names another dataset starts its options afresh
    (the synthetic set's ``ids`` mean nothing to a folder), and ``data.options={}`` or ``null`` empties
    them, where a merge would keep the earlier ones. Returns the layer's values to merge."""
    data = values.get("data")
    if not isinstance(data, Mapping):
        return values
    data = dict(data)
    switched = "dataset" in data and data["dataset"] != merged.data.dataset
    emptied = "options" in data and not data["options"]  # {} or null
    if switched or emptied:
        merged.data.options = {}
    if emptied:
        del data["options"]
    return {**values, "data": data}


def _merge(layers: Sequence[tuple[dict[str, Any], str]]) -> Config:
    merged = OmegaConf.structured(Config)
    for values, source in layers:
        _check_keys(values, Config, source)
        try:
            # Into ``merged`` itself: OmegaConf.merge would first deep-copy the whole config, once per layer
            # (two thirds of the time of a load with a dozen overrides). The layer is a fresh container.
            merged = OmegaConf.unsafe_merge(merged, _dataset_options_first(merged, values))
        except OmegaConfBaseException as err:
            raise ConfigError(f"invalid value in {source}: {_omegaconf_message(err)}") from err
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid configuration: {_omegaconf_message(err)}") from err


def _omegaconf_message(err: OmegaConfBaseException) -> str:
    # OmegaConf appends a multi-line "full_key/object_type" trailer; the first line says it all.
    return str(err).strip().splitlines()[0]


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict of a config (for JSON, checkpoints and printing)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


class _ConfigDumper(yaml.SafeDumper):
    """Block-style sections with short lists on one line (``image_size: [256, 128]``)."""


_ConfigDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def config_to_yaml(cfg: Config) -> str:
    """The resolved config as YAML text that :func:`load_config` reads back to an equal config."""
    return yaml.dump(config_to_dict(cfg), Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False)


def save_config(cfg: Config, run_dir: str | Path) -> Path:
    """Write the resolved config to ``run_dir/config.yaml`` and return its path."""
    target = Path(run_dir) / "config.yaml"
    atomic_write_text(target, config_to_yaml(cfg))
    return target
