"""``svllreid serve --model``: an exported file (here an OpenVINO IR) answers photo queries as the
checkpoint does, and the service says why it takes no descriptions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from svllreid.cli import main
from svllreid.inference.gallery_search import IMAGE_BRANCH_ONLY

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


def test_serve_answers_photos_with_an_exported_file_and_says_why_not_descriptions(
    world: dict[str, Any], service: Any, tmp_path: Path, capsys
) -> None:
    pytest.importorskip("openvino", reason="OpenVINO files need the openvino extra")
    from svllreid.serve.search_service import SearchService

    ir = tmp_path / "served.xml"
    assert main(["export", "--checkpoint", str(world["checkpoint"]), "--format", "openvino", "--out", str(ir)]) == 0
    capsys.readouterr()
    by_ir = SearchService.open(world["index"], model_file=ir)
    facts = by_ir.describe()
    assert facts["model"]["runtime"] == "openvino" and facts["model"]["model_file"] == str(ir)
    assert facts["queries"]["text"] is False and facts["queries"]["text_unavailable"] == IMAGE_BRANCH_ONLY
    photo = Path(world["images"][5]).read_bytes()
    got = by_ir.answer([by_ir.image_query(photo, 6)])[0].results
    expected = service.answer([service.image_query(photo, 6)])[0].results
    assert [h["path"] for h in got] == [h["path"] for h in expected]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(got, expected, strict=True)) < 1e-5
    with pytest.raises(ValueError, match="holds only the image branch"):
        by_ir.text_query("a person in red", 5)
