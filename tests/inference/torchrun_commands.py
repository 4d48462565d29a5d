"""Run several ``svllreid`` commands in one torchrun launch, as ``torchrun -m svllreid COMMAND`` runs one:

    python -m torch.distributed.run --standalone --nproc-per-node 2 torchrun_commands.py PLAN.json OUT_DIR

PLAN.json is a list of argument lists; ``{rank}`` in an argument becomes the process's rank (for a test
of processes that see different inputs). Each process writes ``OUT_DIR/rank<R>.json``: every command's
exit code, standard output, standard error and seconds. One launch for several commands because each launch
costs seconds (two interpreters importing torch); the commands find the process group joined already
and leave it for the next one, as they leave a caller's own group.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import torch.distributed as dist

from svllreid.cli import main


def run(plan: list[list[str]], out_dir: Path) -> None:
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo")
    results = []
    for argv in plan:
        argv = [arg.replace("{rank}", str(rank)) for arg in argv]
        out, err = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        seconds = time.perf_counter() - started
        results.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue(), "seconds": seconds})
    (out_dir / f"rank{rank}.json").write_text(json.dumps(results, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
