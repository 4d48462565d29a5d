"""The fit loop's logging: what metrics.jsonl records per flush."""

from __future__ import annotations

import json

import torch
from torch import nn

from svllreid.distributed import DistInfo
from svllreid.training.optim import build_adam
from svllreid.training.trainer import MetricsLog, StagePlan, Trainer


class SometimesTask(nn.Module):
    """Term ``always`` on every step, term ``sometimes`` only on steps whose batch has ``has`` set."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = {"always": self.weight * batch["value"].sum()}
        if bool(batch["has"].all()):
            terms["sometimes"] = self.weight * 10 * batch["value"].sum()
        return terms


def test_a_term_skipped_in_some_steps_is_averaged_over_the_steps_that_had_it(tmp_path):
    task = SometimesTask()
    optimizer = build_adam(dict(task.named_parameters()), lr=0.0, weight_decay=0.0)  # lr 0: the weight stays 1
    values = [1.0, 2.0, 3.0, 4.0]
    has = [True, False, False, True]
    batches = [{"value": torch.tensor([v]), "has": torch.tensor([h])} for v, h in zip(values, has, strict=True)]
    metrics = MetricsLog(tmp_path)
    trainer = Trainer(
        torch.device("cpu"), amp_dtype=None, dist=DistInfo(), metrics=metrics, log_every=4, progress=False
    )
    plan = StagePlan("stage1", 1, lambda epoch: 1.0)
    trainer.fit(task, optimizer, plan, lambda epoch: batches)
    metrics.close()
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["loss_always"] == 2.5  # (1 + 2 + 3 + 4) / 4
    assert record["loss_sometimes"] == 25.0  # (10 + 40) / 2 steps that had it, not / 4
    assert record["loss"] == 27.5
