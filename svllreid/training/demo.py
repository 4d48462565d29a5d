"""``svllreid demo``: the built-in recipe end to end, narrated step by step.

The steps (data, network, training, results) are reported through a ``say`` callback, so that the
command line prints them and a notebook or a test can collect them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svllreid.config import Config, load_config
from svllreid.data.datasets import get_dataset_entry
from svllreid.errors import ConfigError, DatasetError
from svllreid.evaluation.results import ResultRow
from svllreid.metrics.summary import format_verification
from svllreid.models.info import model_info
from svllreid.training.dataprep import prepare_data
from svllreid.training.run import RunResult, build_model, evaluate_random_init, method_name, train
from svllreid.version import __version__

__all__ = ["DEMO_RECIPE", "OWN_DATA_RECIPE", "DemoResult", "demo_config", "run_demo"]

#: The built-in recipe of ``svllreid demo`` (shipped with the package).
DEMO_RECIPE = Path(__file__).resolve().parents[1] / "resources" / "demo.yaml"
#: The built-in recipe for a user's own photos (``svllreid demo --dataset``, ``svllreid tune``): the demo's,
#: with what real photos need.
OWN_DATA_RECIPE = DEMO_RECIPE.with_name("own_data.yaml")


def demo_config(
    *,
    overrides: Sequence[str] = (),
    out: str = "runs",
    name: str | None = None,
    config: str | None = None,
    pretrained: str | None = None,
    dataset: str | None = None,
    root: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Config:
    """The demo's config: the built-in recipe (or ``config``) with ``overrides``; ``dataset`` replaces the
    synthetic data as a whole (and selects the own-data recipe, :data:`OWN_DATA_RECIPE`), ``pretrained``
    (only with a ``config`` of real-weight settings) the weights.

    Raises:
        ConfigError: ``root`` or ``options`` without ``dataset``; ``pretrained`` without ``config``.
    """
    if (root or options) and not dataset:
        raise ConfigError("--root and -o describe a real dataset: pass --dataset NAME with them")
    if pretrained and not config:
        raise ConfigError(
            "--pretrained needs the paper's settings for real weights: add --config, e.g. "
            "configs/market1501/svll_vit.yaml (the demo recipe trains a tiny network at 64×32)"
        )
    run_name = name or f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    values = [f"run.output_dir={out}", f"run.name={run_name}", *overrides]
    if pretrained:
        values.append(f"model.pretrained={pretrained}")
    own_data = dataset is not None and dataset != "synthetic"
    cfg = load_config(config or (OWN_DATA_RECIPE if own_data else DEMO_RECIPE), values)
    if dataset:  # replaces the data source as a whole (the synthetic options do not apply to it)
        cfg.data = dataclasses.replace(cfg.data, dataset=dataset, root=root or "", options=dict(options or {}))
    return cfg


@dataclass
class DemoResult:
    """The finished demo: its training run and the rows of its results table."""

    run: RunResult
    rows: list[ResultRow]
    seconds: float


def _weights_sentence(cfg: Config, source: str) -> str:
    if not cfg.model.pretrained:
        return (
            "RANDOMLY INITIALISED (model.pretrained=none): the network learns from scratch; the numbers are not "
            "the paper's (pass --pretrained and --config for a real run)"
        )
    if cfg.model.pretrained == "svll-synth":
        return (
            "starting from svllreid's 'svll-synth' CLIP: language-image pretraining on 2,000 captioned synthetic "
            "identities, none of them in this test set (docs/WEIGHTS.md). No real CLIP weights are available "
            "offline; pass --pretrained and --config for a real run"
        )
    return f"starting from {source}"


def run_demo(cfg: Config, *, say: Callable[[str], None], own_config: bool = False, progress: bool = True) -> DemoResult:
    """Data, network, training and the results table, each step told through ``say``.

    Args:
        own_config: the recipe is the user's (``--config``), not the built-in one (said in the first line).
    """
    started = time.perf_counter()
    recipe = (
        "your config"
        if own_config
        else ("the own-data recipe" if cfg.data.dataset != "synthetic" else "built-in recipe")
    )
    say(f"svllreid {__version__} demo: SVLL-ReID end to end ({recipe})")
    if cfg.data.dataset == "synthetic":
        what = "synthetic pedestrians (made once, then cached)"
    else:
        what = cfg.data.root or _default_root(cfg.data.dataset)
    say(f"[1/4] data: {cfg.data.dataset} — {what}")
    prepared = prepare_data(cfg)
    cfg, dataset = prepared.cfg, prepared.dataset
    counts = {"train": len(dataset.train), "query": len(dataset.query), "gallery": len(dataset.gallery)}
    say(
        f"      {dataset.num_train_ids} training identities, {dataset.num_cameras or 'no'} cameras; "
        + ", ".join(f"{k} {v} images" for k, v in counts.items())
        + f" ({time.perf_counter() - started:.1f} s)"
    )
    model = build_model(cfg, dataset)
    info = model_info(model)
    height, width = cfg.data.size
    say(
        f"[2/4] network: {cfg.model.arch} at {height}×{width}, "
        f"{info['parameters']['total'] / 1e6:.2f} M parameters — {_weights_sentence(cfg, model.load_report.source)}"
    )
    random = evaluate_random_init(cfg, dataset) if cfg.model.pretrained else None
    selecting = (
        "; the validation split is evaluated after every epoch to choose the checkpoint (the test set chooses nothing)"
        if dataset.validation is not None
        else ""
    )
    say(
        f"[3/4] training {method_name(cfg)}: the starting network is evaluated first, then stage 1 "
        f"({cfg.stage1.epochs} epochs: identity prompts{' + language self-supervision' if cfg.stage1.lang_ssl else ''}"
        f") and stage 2 ({cfg.stage2.epochs} epochs: image encoder"
        f"{' + vision self-supervision' if cfg.stage2.vis_ssl else ''}){selecting}"
    )
    result = train(cfg, progress=progress, prepared=prepared)
    assert result.evaluation is not None  # both stages ran
    say(f"[4/4] results ({result.evaluation['protocol']} protocol), in %:")
    for line in result.results_text(pretrained=bool(cfg.model.pretrained), random=random):
        say(f"      {line}")
    verification = format_verification(result.evaluation)
    if verification:  # "same person?" of the trained network: how well one threshold separates pairs
        say(f"      trained, {verification}")
    say(f"      report:  {result.report or '(not written; see the log above)'}")
    say(f"      run:     {result.run_dir}")
    seconds = time.perf_counter() - started
    say(f"done in {seconds:.0f} s")
    return DemoResult(result, result.rows(pretrained=bool(cfg.model.pretrained), random=random), seconds)


def _default_root(dataset: str) -> str:
    """Where a dataset read with an empty root comes from (its registry entry says), for the first line."""
    entry = get_dataset_entry(dataset)
    if entry.default_root is None:
        return "(no root given)"
    try:
        return f"{entry.default_root()} (its default root)"
    except DatasetError:  # no copy here: reading the dataset says so, with what to do
        return "(no root given)"
