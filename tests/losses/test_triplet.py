"""triplet_loss against an explicit loop over anchors, positives and negatives."""

from __future__ import annotations

import math

import pytest
import torch

from svllreid.losses import triplet_loss

# fp32: the expanded distance form leaves up to ~1e-3 of rounding noise on an anchor's distance to itself
# (sqrt of a ~1e-6 residual), the hardest positive of a singleton identity; the batch mean dilutes it.
TOL = {torch.float32: {"rtol": 1e-5, "atol": 2e-4}, torch.float64: {"rtol": 1e-9, "atol": 1e-9}}


def naive_triplet(features, labels, margin, normalize):
    """Hardest positive / negative from explicit pairwise distances, looping over every candidate."""
    rows, ids = features.double().tolist(), labels.tolist()
    if normalize:
        rows = [[v / max(math.sqrt(sum(u * u for u in row)), 1e-12) for v in row] for row in rows]

    def distance(i, j):
        # Same floor as the reference's clamp(min=1e-12) before the sqrt.
        return math.sqrt(max(sum((a - b) ** 2 for a, b in zip(rows[i], rows[j], strict=True)), 1e-12))

    terms = []
    for i in range(len(rows)):
        hardest_positive, hardest_negative = -1.0, math.inf
        for j in range(len(rows)):
            if ids[j] == ids[i]:
                hardest_positive = max(hardest_positive, distance(i, j))
            else:
                hardest_negative = min(hardest_negative, distance(i, j))
        if hardest_negative == math.inf:
            continue  # no negative: no triplet for this anchor
        gap = hardest_positive - hardest_negative
        terms.append(math.log(1 + math.exp(gap)) if margin is None else max(0.0, gap + margin))
    return sum(terms) / len(terms) if terms else 0.0


LABELS = {
    "pk": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    "with_singletons": [0, 0, 1, 2, 2, 2, 3, 4, 4, 5],
    "all_singletons": [0, 1, 2, 3, 4, 5],
    "two": [7, 3],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("label_set", list(LABELS))
@pytest.mark.parametrize("margin", [0.3, 1.5, None])
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_naive(dtype, seed, label_set, margin, normalize):
    labels = torch.tensor(LABELS[label_set])
    gen = torch.Generator().manual_seed(seed)
    # Shuffle so that identities are not contiguous.
    labels = labels[torch.randperm(len(labels), generator=gen)]
    features = 0.5 * torch.randn(len(labels), 8, generator=gen, dtype=dtype)
    loss = triplet_loss(features, labels, margin=margin, normalize=normalize)
    assert loss.shape == () and loss.dtype == dtype
    expected = torch.tensor(naive_triplet(features, labels, margin, normalize), dtype=dtype)
    torch.testing.assert_close(loss, expected, **TOL[dtype])


def test_known_value_on_a_line():
    features = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    # d_ap = [1, 1, 4, 4], d_an = [3, 2, 2, 6]: only anchor 2 violates, by 4 - 2 + 0.3.
    torch.testing.assert_close(triplet_loss(features, labels), torch.tensor(2.3 / 4, dtype=torch.float64))
    soft = sum(math.log1p(math.exp(gap)) for gap in (1 - 3, 1 - 2, 4 - 2, 4 - 6)) / 4
    torch.testing.assert_close(triplet_loss(features, labels, margin=None), torch.tensor(soft, dtype=torch.float64))


def test_singleton_identity_is_its_own_hardest_positive():
    features = torch.tensor([[0.0], [1.0], [3.0], [7.0], [20.0]], dtype=torch.float64)
    # Identity 5 is alone: d_ap = 1e-6 (itself), d_an = 13; the others as in the line example but with 20 as a
    # far negative. Per anchor: relu(1 - 3 + 2), relu(1 - 2 + 2), relu(4 - 2 + 2), relu(4 - 6 + 2), relu(1e-6 - 13 + 2).
    loss = triplet_loss(features, torch.tensor([0, 0, 1, 1, 5]), margin=2.0)
    torch.testing.assert_close(loss, torch.tensor((0 + 1 + 4 + 0 + 0) / 5, dtype=torch.float64))
    soft = triplet_loss(features, torch.tensor([0, 0, 1, 1, 5]), margin=None)
    expected = sum(math.log1p(math.exp(gap)) for gap in (-2, -1, 2, -2, 1e-6 - 13)) / 5
    torch.testing.assert_close(soft, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("margin", [0.3, None])
def test_single_identity_is_zero_with_grad(margin):
    features = torch.randn(5, 4, requires_grad=True)
    loss = triplet_loss(features, torch.full((5,), 3), margin=margin)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


@pytest.mark.parametrize("normalize", [False, True])
def test_identical_features_give_the_margin(normalize):
    features = torch.ones(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    # Every distance is the 1e-6 floor: relu(0 + 0.3) and softplus(0) = log 2.
    torch.testing.assert_close(triplet_loss(features, labels, normalize=normalize), torch.tensor(0.3).double())
    loss = triplet_loss(features, labels, margin=None, normalize=normalize)
    torch.testing.assert_close(loss, torch.tensor(math.log(2)).double())
    loss.backward()
    assert torch.isfinite(features.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("margin", [0.3, None])
def test_large_inputs_stay_finite(dtype, margin):
    gen = torch.Generator().manual_seed(5)
    features = (100 * torch.randn(12, 16, generator=gen, dtype=dtype)).requires_grad_()
    labels = torch.tensor(LABELS["pk"])
    loss = triplet_loss(features, labels, margin=margin)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(features.grad).all()
    expected = naive_triplet(features.detach(), labels, margin, False)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=dtype), rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("margin", [0.3, None])
def test_gradients_match_finite_differences(margin):
    gen = torch.Generator().manual_seed(6)
    features = torch.randn(8, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    # margin 3 keeps every hinge active, so the check sees gradients and not just zeros.
    active = 3.0 if margin is not None else None
    assert torch.autograd.gradcheck(lambda x: triplet_loss(x, labels, margin=active), (features,))
    assert torch.autograd.gradcheck(lambda x: triplet_loss(x, labels, margin=active, normalize=True), (features,))


@pytest.mark.parametrize("normalize", [False, True])
def test_bf16_autocast_leaves_the_loss_and_its_gradient_in_fp32(normalize):
    """Distances stay fp32 under autocast: in bf16 they err by up to 0.07 at norm 20 (margin 0.3)."""
    gen = torch.Generator().manual_seed(7)
    features = 2.5 * torch.randn(12, 64, generator=gen)  # norms about 20, as unnormalised ReID features
    labels = torch.tensor(LABELS["pk"])
    grads = {}
    for amp in (False, True):
        x = features.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = triplet_loss(x, labels, margin=3.0, normalize=normalize)  # every hinge active
        loss.backward()
        grads[amp] = (loss.detach(), x.grad)
    assert grads[True][0].dtype == torch.float32
    torch.testing.assert_close(grads[True][0], grads[False][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grads[True][1], grads[False][1], rtol=1e-6, atol=1e-6)


def test_half_precision_inputs_do_not_overflow():
    features = (100 * torch.randn(6, 64)).half()  # squared norms ~6e5 > fp16 max
    loss = triplet_loss(features, torch.tensor([0, 0, 1, 1, 2, 2]))
    torch.testing.assert_close(loss, triplet_loss(features.float(), torch.tensor([0, 0, 1, 1, 2, 2])))


def test_no_host_sync_on_meta_device():
    features = torch.randn(4, 3, device="meta", requires_grad=True)
    for margin in (0.3, None):
        loss = triplet_loss(features, torch.zeros(4, dtype=torch.long, device="meta"), margin=margin)
        loss.backward()
        assert loss.shape == () and features.grad.shape == (4, 3)


@pytest.mark.parametrize(("features_shape", "labels_shape"), [((4, 3), (3,)), ((4,), (4,)), ((4, 3), (4, 2))])
def test_shape_errors(features_shape, labels_shape):
    with pytest.raises(ValueError, match=r"features must be \[B, D\] and labels \[B\]"):
        triplet_loss(torch.randn(features_shape), torch.zeros(labels_shape, dtype=torch.long))
