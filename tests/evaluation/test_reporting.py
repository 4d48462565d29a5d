"""The report's pictures name identities as the dataset does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from svllreid.data.types import EvalSplit, Sample
from svllreid.evaluation import reporting
from svllreid.evaluation.model_eval import ModelEvaluation
from svllreid.metrics.ranking import evaluate


def test_ranked_lists_and_the_test_embedding_use_the_identity_names(tmp_path: Path, monkeypatch) -> None:
    query = [Sample(str(tmp_path / f"q{i}.jpg"), pid, 0, -1) for i, pid in enumerate((60, 75, 88))]
    gallery = [Sample(str(tmp_path / f"g{i}.jpg"), pid, 1, -1) for i, pid in enumerate((60, 60, 75, 75, 88, 88))]
    split = EvalSplit("default", query, gallery)
    rng = np.random.default_rng(0)
    feats = torch.from_numpy(rng.normal(size=(9, 8)).astype(np.float32))
    result = evaluate(feats[:3], feats[3:], [s.pid for s in query], [s.pid for s in gallery], [0] * 3, [1] * 6, topk=3)
    names = {60: "nyala-060", 75: "nyala-075"}
    lists = dict(reporting.ranked_lists(split, result, names))
    captions = {c for lst in lists.values() for c in [lst.query_caption, *lst.gallery_captions]}
    assert captions <= {
        "id nyala-060 · cam 1",
        "id nyala-075 · cam 1",
        "id 88 · cam 1",
        "id nyala-060 · cam 2",
        "id nyala-075 · cam 2",
        "id 88 · cam 2",
    }
    assert any("nyala" in c for c in captions)
    seen = {}
    monkeypatch.setattr(reporting, "plot_embedding", lambda *args, **kwargs: seen.update(kwargs) or Path("x"))
    evaluation = ModelEvaluation({}, [(split, result)], query + gallery, feats, identity_names=names)
    reporting.write_test_embedding(evaluation, tmp_path / "e.png")
    assert seen["identity_names"] == {60: "nyala-060", 75: "nyala-075", 88: "88"}
