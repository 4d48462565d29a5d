"""benchmarks/converted_parity.py against the authors' own code: a file their make_model saves, converted
by ``svllreid convert`` and back, gives their network's features. Runs when SVLLREID_REFERENCE names a
checkout of Syliz517/CLIP-ReID or BinWangGzhu/SVLL-ReID (about a minute per repository on a 2-core CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = os.environ.get("SVLLREID_REFERENCE", "")
BUILDERS = ("make_model_clipreid.py", "make_model_svllreid.py")


def is_checkout(path: str) -> bool:
    return bool(path) and any((Path(path) / "model" / builder).is_file() for builder in BUILDERS)


@pytest.mark.slow
@pytest.mark.skipif(
    not is_checkout(REFERENCE),
    reason="SVLLREID_REFERENCE does not name a checkout of Syliz517/CLIP-ReID or BinWangGzhu/SVLL-ReID",
)
def test_converted_authors_checkpoints_give_their_networks_features(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import converted_parity

    report_file = tmp_path / "converted.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "converted_parity.py"), "--reference", REFERENCE]
    cmd += ["--json", str(report_file)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=840)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_file.read_text())
    expected = {case.name for case in converted_parity.CASES if case.checkout == report["reference"]}
    assert expected and set(report["cases"]) == expected and report["failed"] == []
    for figures in report["cases"].values():
        assert figures["image_max_abs"] <= 1e-5 and figures["reverse_max_abs"] <= 1e-5
        assert figures["reverse_tensors_max_abs"] == 0.0
        assert figures["reverse_file"]["missing"] == [] and figures["reverse_file"]["unexpected"] == []
        assert figures["text_max_rel"] <= 1e-4 and figures["reverse_text_max_rel"] <= 1e-4
    free_text = [f for f in report["cases"].values() if f["case"]["free_text"]]
    assert free_text and all(f["text_support"] == "free-text" and f["free_text_max_abs"] <= 1e-5 for f in free_text)
    for figures in report["cases"].values():  # the file saved as from several GPUs had the prefix
        assert figures["file"]["module_prefix"] == figures["case"]["module_prefix"]
