"""How spread out features are: mean pairwise cosine, the first principal direction, effective rank."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from svllreid.metrics.spread import COLLAPSE_MEAN_COSINE, collapse_warning, feature_spread


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_cosine_equals_the_mean_over_explicit_pairs(dtype):
    feats = torch.randn(23, 7, generator=torch.Generator().manual_seed(0), dtype=dtype) * 5 + 1
    unit = F.normalize(feats.double(), dim=1)
    pairs = [float(unit[i] @ unit[j]) for i, j in itertools.combinations(range(len(unit)), 2)]
    spread = feature_spread(feats)
    assert spread["mean_cosine"] == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)
    assert spread["images"] == 23


def test_spectrum_of_known_shapes():
    generator = torch.Generator().manual_seed(1)
    isotropic = feature_spread(torch.randn(4000, 8, generator=generator))
    assert isotropic["effective_rank"] > 7.5 and isotropic["top_direction_share"] < 0.2
    assert abs(isotropic["mean_cosine"]) < 0.01
    along = torch.randn(500, 1, generator=generator) * torch.tensor([[0.0, 1.0, 0.0]])  # spread along one axis only
    flat = feature_spread(along + torch.tensor([[10.0, 0.0, 0.0]]))
    assert flat["top_direction_share"] > 0.99 and flat["effective_rank"] < 1.1
    same = feature_spread(torch.ones(5, 4))
    assert same["mean_cosine"] == pytest.approx(1.0) and same["effective_rank"] == 1.0


def test_collapse_is_a_mean_cosine_above_the_threshold():
    offset = torch.zeros(200, 16)
    offset[:, 0] = 1.0
    generator = torch.Generator().manual_seed(2)
    healthy = feature_spread(offset + 0.5 * torch.randn(200, 16, generator=generator))
    collapsed = feature_spread(offset + 0.01 * torch.randn(200, 16, generator=generator))
    assert healthy["mean_cosine"] < COLLAPSE_MEAN_COSINE < collapsed["mean_cosine"]
    assert collapse_warning(healthy, "the test set") is None
    warning = collapse_warning(collapsed, "the test set")
    assert warning is not None and "collapsed" in warning and "stage2.lr" in warning and "svllreid tune" in warning


def test_too_few_rows_are_refused():
    with pytest.raises(ValueError, match="N >= 2"):
        feature_spread(torch.ones(1, 3))
