"""Choosing the checkpoint on the validation split: the start, then every few stage-2 epochs, the best
kept, and (optionally) training stopped when it stops improving.

:class:`Selection` is the bookkeeping only (what was measured, which is best, whether to stop); the run
evaluates, writes ``best.safetensors`` and stores :meth:`Selection.state` in its checkpoints, so that a
resumed run chooses exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SELECTION_METRIC", "Selection"]

#: The validation metric the best checkpoint maximises.
SELECTION_METRIC = "mAP"


@dataclass
class Selection:
    """The validation history of a run's stage 2 and the choice it makes.

    Epoch 0 is the start: the network before stage 2 changed its image encoder (the pretrained or random
    weights; stage 1 trains only the prompts). A later epoch is best only if it is strictly better than
    every earlier one, so a run that never beats its start delivers the start.

    Attributes:
        every: evaluate every this many stage-2 epochs (and after the last).
        patience: stop after this many evaluations in a row without a new best; 0 never stops early.
        history: ``{"epoch", "summary"}`` of every evaluation, in order.
        best_epoch: the epoch of the best evaluation so far (None before the start is measured).
        stale: evaluations since the last new best.
        stopped_at: the epoch after which training stopped early, if it did.
    """

    every: int = 1
    patience: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    stale: int = 0
    stopped_at: int | None = None

    def due(self, epoch: int, last_epoch: int) -> bool:
        """Whether the validation split is evaluated after stage-2 ``epoch``."""
        return epoch == last_epoch or (self.every > 0 and epoch % self.every == 0)

    def score(self, epoch: int) -> float:
        return float(self.summary(epoch)[SELECTION_METRIC])

    def summary(self, epoch: int) -> dict[str, Any]:
        for entry in self.history:
            if entry["epoch"] == epoch:
                return dict(entry["summary"])
        raise KeyError(f"epoch {epoch} was not evaluated on the validation split")

    @property
    def best_score(self) -> float | None:
        return None if self.best_epoch is None else self.score(self.best_epoch)

    @property
    def last_epoch(self) -> int | None:
        return self.history[-1]["epoch"] if self.history else None

    def record(self, epoch: int, summary: dict[str, Any]) -> bool:
        """Add the validation result after ``epoch`` (0 = the start); True when it is the new best."""
        self.history.append({"epoch": epoch, "summary": dict(summary)})
        best = self.best_score
        if best is None or float(summary[SELECTION_METRIC]) > best:
            self.best_epoch, self.stale = epoch, 0
            return True
        self.stale += 1
        return False

    def should_stop(self) -> bool:
        """Whether ``patience`` evaluations in a row brought no new best."""
        return self.patience > 0 and self.stale >= self.patience

    @property
    def start_is_best(self) -> bool:
        return self.best_epoch == 0

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores (JSON)."""
        return {
            "every": self.every,
            "patience": self.patience,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "stale": self.stale,
            "stopped_at": self.stopped_at,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], *, every: int, patience: int) -> Selection:
        """The selection a checkpoint stored, with this run's ``every`` and ``patience``."""
        return cls(
            every=every,
            patience=patience,
            history=list(state.get("history", [])),
            best_epoch=state.get("best_epoch"),
            stale=int(state.get("stale", 0)),
            stopped_at=state.get("stopped_at"),
        )

    def verdict(self) -> str:
        """One sentence on what was chosen, for the log and the report."""
        if self.best_epoch is None:
            return "the validation split was not evaluated"
        start = self.score(0) if self.history and self.history[0]["epoch"] == 0 else None
        best = 100 * (self.best_score or 0.0)
        if self.start_is_best:
            return (
                f"no stage-2 epoch beat the start on the validation split ({SELECTION_METRIC} {best:.2f}): "
                "the delivered model is the start, and training made it no better"
            )
        gain = f", {100 * (self.best_score or 0.0) - 100 * start:+.2f} on the start" if start is not None else ""
        return f"best on the validation split: stage-2 epoch {self.best_epoch} ({SELECTION_METRIC} {best:.2f}{gain})"
