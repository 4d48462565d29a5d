"""The search benchmark runs with --small (a test of the script, not a timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from svllreid.search import BACKENDS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "search_speed.py"


@pytest.mark.slow
def test_search_benchmark_small_lists_every_backend() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--small"], capture_output=True, text=True, check=True, timeout=300
    )
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("backend"))
    assert "recall@10" in header.split()
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in BACKENDS}
    assert set(rows) == set(BACKENDS)
    has_faiss = subprocess.run([sys.executable, "-c", "import faiss"], capture_output=True).returncode == 0
    for backend, fields in rows.items():
        if backend != "exact" and not has_faiss:
            assert "skipped: faiss is not installed" in " ".join(fields)
            continue
        recall = float(fields[-5])  # from the right: the params column may be empty
        assert 0.9 <= recall <= 1.0, fields
        if backend in ("exact", "faiss-flat"):
            assert recall >= 0.99  # exhaustive; only float32 rounding against the float64 reference
