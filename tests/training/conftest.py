"""One spawn of two gloo processes for the DDP tests of this folder: test_distributed's single steps, then
test_train's training runs, in the same two processes. Each spawned process imports torch and svllreid
again (seconds on two cores), so one start serves both files; each test reads what its part saved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch.multiprocessing as mp


@dataclass
class DdpLaunch:
    #: test_distributed's results: ``rank<R>.pt`` of each process.
    steps: Path
    #: test_train's runs by batch semantics: each run's folder (``rank<R>.pt`` and ``runs/ddp``).
    runs: dict[str, Path]


def _launch_worker(rank: int, port: int, steps: str, runs: list[tuple[int, list[str], str]]) -> None:
    from tests.training.test_distributed import WORLD, _worker
    from tests.training.test_train import _ddp_worker

    _worker(rank, port, steps)
    _ddp_worker(rank, WORLD, runs)


@pytest.fixture(scope="session")
def ddp_launch(tmp_path_factory: pytest.TempPathFactory) -> DdpLaunch:
    from tests.training.test_distributed import WORLD, _free_port
    from tests.training.test_train import ddp_run_plan

    steps = tmp_path_factory.mktemp("ddp-steps")
    folders, runs = ddp_run_plan(tmp_path_factory)
    mp.spawn(_launch_worker, args=(_free_port(), str(steps), runs), nprocs=WORLD, join=True)
    return DdpLaunch(steps, folders)
