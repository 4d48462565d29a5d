"""``svllreid tune``: a small, time-budgeted search for the settings that matter most on a user's own data,
chosen on its validation split (the test set is not even evaluated).

The search is greedy, one setting at a time, each step keeping the best value so far:

1. the stage-2 learning rate: the recipe's, 3× lower, 3× higher, 10× lower;
2. the weight of the image-to-text loss (:data:`I2T_WEIGHTS`), which on few photos per identity pulls every
   image toward prompts learned from a couple of images;
3. the weight λ_V of the vision self-supervision (off, the recipe's, the paper's 0.8);
4. the number of stage-2 epochs, from where the winner's validation curve peaked: twice as many when it
   peaked at the end, half as many when it peaked in the first half (ties go to the shorter run).

Every trial delivers the best of its evaluated epochs (checkpoint selection on the validation split), so a
trial's score is its best validation mAP. With several seeds the score is their mean. A trial that would
not fit in what is left of the budget (judged from the trials before it) is skipped, and the table says so.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svllreid.config import Config, config_to_yaml, load_config
from svllreid.errors import ConfigError
from svllreid.fileio import atomic_write_text
from svllreid.training.dataprep import prepare_data
from svllreid.training.run import train

__all__ = ["Trial", "TuneResult", "tune"]

#: The learning rates tried, as multiples of the recipe's, in order.
LR_FACTORS = (1.0, 1 / 3, 3.0, 1 / 10)
#: The weights of the stage-2 image-to-text loss tried.
I2T_WEIGHTS = (1.0, 0.25, 0.0)
#: The vision self-supervision weights tried besides the recipe's.
VIS_SSL_WEIGHTS = (0.0, 0.2, 0.8)


@dataclass
class Trial:
    """One trained setting: its overrides, the best validation mAP (mean over seeds), the epoch where
    each seed peaked, and its time; ``skipped`` says why it did not run."""

    step: str
    overrides: dict[str, Any]
    score: float | None = None
    best_epochs: list[int] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str = ""


@dataclass
class TuneResult:
    trials: list[Trial]
    chosen: dict[str, Any]
    config: Config
    config_path: Path
    seconds: float


def _with(cfg: Config, overrides: dict[str, Any]) -> Config:
    """``cfg`` with dotted ``overrides`` (``stage2.lr`` ...), checked like any config."""
    values: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, name = key.split(".", 1)
        values.setdefault(section, {})[name] = value
    sections = {s: dataclasses.replace(getattr(cfg, s), **v) for s, v in values.items()}
    return dataclasses.replace(cfg, **sections)


def _epoch_overrides(cfg: Config, epochs: int) -> dict[str, Any]:
    """``stage2.epochs`` with its warm-up and learning-rate milestones scaled to it."""
    scale = epochs / cfg.stage2.epochs
    milestones = sorted({max(1, min(epochs, round(m * scale))) for m in cfg.stage2.milestones})
    warmup = min(cfg.stage2.warmup_epochs, max(0, epochs - 1))
    return {"stage2.epochs": epochs, "stage2.milestones": milestones, "stage2.warmup_epochs": warmup}


def tune(
    cfg: Config,
    *,
    out: str | Path,
    budget_s: float = 1800.0,
    seeds: Sequence[int] = (1,),
    keep_checkpoints: bool = False,
    say: Callable[[str], None] = print,
) -> TuneResult:
    """Search the settings of :mod:`this module <svllreid.training.tune>` on ``cfg``'s validation split and
    write the chosen config to ``out/chosen.yaml`` (with ``out/tune.json``: every trial).

    Raises:
        ConfigError: the dataset has no validation split to choose on.
    """
    started = time.perf_counter()
    out = Path(out)
    prepared = prepare_data(cfg)
    if prepared.dataset.validation is None:
        raise ConfigError(
            f"tune chooses settings on a validation split, and {prepared.dataset.name} has none: "
            "data.validation_ids=auto holds identities out only for your own data (folder, pku) with enough of "
            "them; set data.validation_ids=N"
        )
    base = dataclasses.replace(
        prepared.cfg,
        eval=dataclasses.replace(prepared.cfg.eval, test=False, before_training=False),
        run=dataclasses.replace(prepared.cfg.run, report=False, output_dir=str(out), name=""),
    )
    for choice in prepared.choices:
        say(choice)
    trials: list[Trial] = []
    chosen: dict[str, Any] = {}
    seen: dict[tuple[tuple[str, Any], ...], Trial] = {}

    def run_trial(step: str, overrides: dict[str, Any]) -> Trial:
        key = _key(base, overrides)
        if key in seen:  # the same settings as an earlier trial: its result stands
            say(f"      {_describe(overrides) or 'the recipe'}: as trial {trials.index(seen[key]) + 1}")
            return seen[key]
        trial = Trial(step, overrides)
        trials.append(trial)
        seen[key] = trial
        done = [t for t in trials if t.score is not None]
        if done:  # judge the time this one needs from the ones before it, by stage-2 epochs
            per_epoch = statistics.fmean(t.seconds / _epochs(base, t.overrides) for t in done)
            need = per_epoch * _epochs(base, overrides)
            left = budget_s - (time.perf_counter() - started)
            if need > left:
                trial.skipped = f"budget: needs about {need:.0f} s, {max(left, 0):.0f} s left"
                say(f"  {len(trials):>2}. {_describe(overrides)}: skipped ({trial.skipped})")
                return trial
        t0 = time.perf_counter()
        scores = []
        for seed in seeds:
            name = f"trial-{len(trials):02d}-seed{seed}"
            settings = _with(base, {**overrides, "run.seed": seed, "run.name": name})
            result = train(settings, progress=False, prepared=dataclasses.replace(prepared, cfg=settings))
            assert result.selection is not None and result.selection.best_score is not None
            scores.append(result.selection.best_score)
            trial.best_epochs.append(int(result.selection.best_epoch or 0))
            if not keep_checkpoints:  # a trial's numbers are in its eval.json; its weights are not needed
                shutil.rmtree(result.run_dir / "checkpoints", ignore_errors=True)
        trial.score, trial.seconds = statistics.fmean(scores), time.perf_counter() - t0
        say(
            f"  {len(trials):>2}. {_describe(overrides)}: validation mAP {100 * trial.score:.2f} "
            f"(best epoch {', '.join(map(str, trial.best_epochs))}; {trial.seconds:.0f} s)"
        )
        return trial

    def best_of(step: str, candidates: list[dict[str, Any]]) -> None:
        say(f"{step}:")
        ran = [run_trial(step, {**chosen, **c}) for c in candidates]
        scored = [t for t in ran if t.score is not None]
        if scored:
            winner = max(scored, key=lambda t: t.score or 0.0)  # the first of equal scores: the cheaper order
            chosen.update(winner.overrides)

    lr = base.stage2.lr
    best_of("stage-2 learning rate", [{"stage2.lr": float(f"{lr * f:.3g}")} for f in LR_FACTORS])
    best_of("image-to-text loss weight", [{"stage2.i2t_weight": w} for w in I2T_WEIGHTS])
    if base.stage2.vis_ssl:
        weights = sorted({base.stage2.vis_ssl_weight, *VIS_SSL_WEIGHTS}, key=lambda w: w != base.stage2.vis_ssl_weight)
        best_of("vision self-supervision weight λ_V", [{"stage2.vis_ssl_weight": w} for w in weights])
    best_of("stage-2 epochs", _epoch_candidates(base, chosen, trials))
    config = _with(dataclasses.replace(prepared.cfg, run=dataclasses.replace(prepared.cfg.run, name="")), chosen)
    seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    chosen_path = out / "chosen.yaml"
    header = [
        f"# Chosen by svllreid tune in {seconds:.0f} s on the validation split of {prepared.dataset.name} "
        f"({prepared.dataset.root}),",
        f"# {len([t for t in trials if t.score is not None])} trials (seeds {list(seeds)}); the test set was not "
        "evaluated. The choices: " + (_describe(chosen) or "the recipe as it was") + ".",
        f"# Train it: svllreid train {chosen_path}",
    ]
    atomic_write_text(chosen_path, "\n".join(header) + "\n" + config_to_yaml(config))
    load_config(chosen_path)  # it reads back
    payload = {
        "seconds": seconds,
        "budget_s": budget_s,
        "seeds": list(seeds),
        "chosen": chosen,
        "trials": [dataclasses.asdict(t) for t in trials],
    }
    atomic_write_text(out / "tune.json", json.dumps(payload, indent=2))
    return TuneResult(trials, chosen, config, chosen_path, seconds)


def _key(base: Config, overrides: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The settings that differ from ``base`` (a trial's identity: the same settings are the same trial)."""
    differ = []
    for name, value in overrides.items():
        section, key = name.split(".", 1)
        if getattr(getattr(base, section), key) != value:
            differ.append((name, tuple(value) if isinstance(value, list) else value))
    return tuple(sorted(differ))


def _epochs(base: Config, overrides: dict[str, Any]) -> int:
    return int(overrides.get("stage2.epochs", base.stage2.epochs))


def _describe(overrides: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in overrides.items() if k not in ("stage2.milestones", "stage2.warmup_epochs"))


def _epoch_candidates(base: Config, chosen: dict[str, Any], trials: list[Trial]) -> list[dict[str, Any]]:
    """The current choice, and twice or half its epochs where its validation curve says so."""
    current = _epochs(base, chosen)
    runs = [t for t in trials if t.score is not None and _key(base, t.overrides) == _key(base, chosen)]
    peaks = runs[-1].best_epochs if runs else []
    candidates = [_epoch_overrides(base, current)]
    if peaks and max(peaks) >= current:  # still improving at the end
        candidates.append(_epoch_overrides(base, 2 * current))
    elif peaks and max(peaks) <= current // 2 and current >= 4:
        candidates.insert(0, _epoch_overrides(base, max(peaks)))  # shorter first: it wins ties
    return candidates
