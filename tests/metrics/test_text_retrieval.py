"""Text-to-image retrieval equals a slow, per-caption reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from svllreid.data.types import Caption
from svllreid.evaluation.text_eval import retrieval_targets
from svllreid.metrics.text_retrieval import format_retrieval, retrieval_summary, text_to_image
from tests.reference.ranking_reference import text_to_image_reference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_text_to_image_equals_the_slow_reference(seed: int):
    rng = np.random.default_rng(seed)
    num_images, num_captions, dim = 60, 90, 16
    image_ids = rng.integers(0, 15, num_images)
    caption_ids = rng.integers(0, 17, num_captions)  # ids 15, 16 have no image: skipped
    centres = rng.normal(size=(17, dim))
    images = centres[image_ids] + rng.normal(scale=1.5, size=(num_images, dim))
    texts = centres[caption_ids] * rng.uniform(0.5, 3.0, size=(num_captions, 1)) + rng.normal(size=(num_captions, dim))
    fast = text_to_image(torch.tensor(texts), torch.tensor(images, dtype=torch.float32), caption_ids, image_ids)
    slow = text_to_image_reference(texts, images, caption_ids, image_ids, max_rank=10)
    assert fast.num_evaluated == slow["num_evaluated"] == int(np.isin(caption_ids, image_ids).sum())
    np.testing.assert_allclose(fast.cmc, slow["cmc"], atol=1e-12)
    assert fast.mAP == pytest.approx(slow["mAP"], abs=1e-6)
    assert fast.mINP == pytest.approx(slow["mINP"], abs=1e-6)
    assert 0 < fast.mAP < 1  # neither trivial nor perfect: the comparison means something


def test_targets_match_by_identity_or_by_the_image_itself():
    captions = [
        Caption("/a.jpg", "one", 7, "test"),
        Caption("/a.jpg", "two", 7, "test"),
        Caption("/b.jpg", "three", 7, "test"),
        Caption("/c.jpg", "four", -1, "test"),
        Caption("/d.jpg", "five", -1, "test"),
    ]
    targets = retrieval_targets(captions)
    assert targets.image_paths == ["/a.jpg", "/b.jpg", "/c.jpg", "/d.jpg"]
    assert targets.image_ids.tolist()[:2] == [7, 7]
    unknown_c, unknown_d = targets.image_ids[2], targets.image_ids[3]
    assert unknown_c != unknown_d and unknown_c < -1 and unknown_d < -1
    assert targets.caption_ids.tolist() == [7, 7, 7, unknown_c, unknown_d]
    # A caption of an image without identity matches that image alone.
    feats = torch.eye(4)
    result = text_to_image(feats[[0, 0, 1, 2, 3]], feats, targets.caption_ids, targets.image_ids)
    assert result.num_evaluated == 5 and result.mAP == pytest.approx(1.0)  # ties go to the lower index
    summary = retrieval_summary(result, "toy", "test", 4)
    assert summary["R@1"] == 1.0 and summary["images"] == 4 and summary["captions"] == 5
    assert "R@1" in format_retrieval({"toy": summary})


def test_dimension_mismatch_is_explained():
    with pytest.raises(ValueError, match="one space"):
        text_to_image(torch.zeros(2, 4), torch.zeros(3, 5), np.zeros(2), np.zeros(3))
