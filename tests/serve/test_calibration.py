"""The same-identity threshold in ``svllreid serve``: every answer says which threshold its hits follow
(or that the model is uncalibrated), each hit of a photo or gallery query of a calibrated model says on
which side of it its score lies, and a threshold made for another network is refused at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from svllreid.inference.calibration import UNCALIBRATED
from tests.serve.conftest import CALIBRATED_ROW, calibration_for, with_calibration


def test_an_uncalibrated_model_says_so_and_decides_nothing(client: Any, world: dict) -> None:
    for answer in (
        client.post("/api/search", data={"gallery": str(CALIBRATED_ROW), "topk": "6"}).json(),
        client.post("/api/search", json={"text": world["captions"][0].caption, "topk": 4}).json(),
    ):
        assert answer["decision"]["calibrated"] is False and answer["decision"]["message"]
        assert answer["results"] and all("same_identity" not in hit for hit in answer["results"])
        assert {"query", "results", "gallery_size", "took_ms"} <= set(answer)  # the keys clients read stay
    photo = client.post("/api/search", data={"gallery": "3", "topk": "3"}).json()
    assert photo["decision"] == {"calibrated": False, "message": UNCALIBRATED}
    facts = client.get("/api/model").json()
    assert facts["decision"] == {"calibrated": False, "message": UNCALIBRATED}
    assert {"model", "index", "queries"} <= set(facts)


def test_a_calibrated_model_marks_each_hit_against_its_threshold(calibrated: dict, world: dict) -> None:
    client, calibration = calibrated["client"], calibrated["calibration"]
    threshold = calibration.threshold
    expected = {
        "calibrated": True,
        "threshold": threshold,
        "operating_point": "same identity at FPR 1e-3",
        "rule": f"same identity when cosine similarity >= {threshold:.4f}",
    }
    assert client.get("/api/model").json()["decision"] == expected

    answer = client.post("/api/search", data={"gallery": str(CALIBRATED_ROW), "topk": "12"}).json()
    assert answer["decision"] == expected
    hits = answer["results"]
    assert len(hits) == 12 and [hit["same_identity"] for hit in hits] == [hit["score"] >= threshold for hit in hits]
    assert {hit["same_identity"] for hit in hits} == {True, False}  # the threshold splits this gallery's hits

    # A photo (the same gallery image, uploaded) is decided too: itself, then the same hits.
    photo = Path(calibrated["service"].index.paths[CALIBRATED_ROW])
    files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    uploaded = client.post("/api/search", files=files, data={"topk": "5"}).json()
    assert uploaded["decision"] == expected
    assert all(hit["same_identity"] == (hit["score"] >= threshold) for hit in uploaded["results"])
    assert uploaded["results"][0]["same_identity"] is True  # the photo itself, score 1

    # A description's scores are on another scale: no decision, and no hit decided.
    text = client.post("/api/search", json={"text": world["captions"][0].caption, "topk": 4}).json()
    assert text["decision"]["calibrated"] is False and "description" in text["decision"]["message"]
    assert all("same_identity" not in hit for hit in text["results"])


def test_a_threshold_made_for_another_network_is_refused(world: dict, tmp_path: Path) -> None:
    from svllreid.errors import CalibrationError
    from svllreid.serve.search_service import SearchService

    copy = with_calibration(world, tmp_path, lambda index: calibration_for(index, 0.5, weights_sha256="f" * 64))
    with pytest.raises(CalibrationError, match="chosen on the features of another network"):
        SearchService.open(copy, device="cpu")
