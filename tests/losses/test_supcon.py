"""supcon_loss against an explicit per-anchor, per-positive loop."""

from __future__ import annotations

import math

import pytest
import torch

from svllreid.losses import supcon_loss

TOL = {torch.float32: {"rtol": 1e-5, "atol": 1e-5}, torch.float64: {"rtol": 1e-10, "atol": 1e-10}}


def naive_supcon(anchors, contrasts, anchor_labels, contrast_labels, temperature=1.0):
    """Loop over anchors and positives with Python floats; anchors without a positive are skipped."""
    a, c = anchors.double().tolist(), contrasts.double().tolist()
    al, cl = anchor_labels.tolist(), contrast_labels.tolist()
    per_anchor = []
    for i in range(len(a)):
        logits = [sum(x * y for x, y in zip(a[i], c[j], strict=True)) / temperature for j in range(len(c))]
        denominator = sum(math.exp(v) for v in logits)
        positives = [j for j in range(len(c)) if cl[j] == al[i]]
        if not positives:
            continue
        per_anchor.append(-sum(math.log(math.exp(logits[p]) / denominator) for p in positives) / len(positives))
    return sum(per_anchor) / len(per_anchor) if per_anchor else 0.0


def _batch(seed, num_anchors, num_contrasts, dim, num_ids, dtype):
    gen = torch.Generator().manual_seed(seed)
    anchors = 0.5 * torch.randn(num_anchors, dim, generator=gen, dtype=dtype)
    contrasts = 0.5 * torch.randn(num_contrasts, dim, generator=gen, dtype=dtype)
    contrast_labels = torch.randint(num_ids, (num_contrasts,), generator=gen)
    # Anchor labels drawn from the contrasts' so that every anchor has at least one positive.
    anchor_labels = contrast_labels[torch.randint(num_contrasts, (num_anchors,), generator=gen)]
    return anchors, contrasts, anchor_labels, contrast_labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("num_anchors", "num_contrasts", "dim", "num_ids"), [(8, 8, 16, 3), (5, 12, 8, 4), (12, 4, 6, 2), (1, 1, 4, 1)]
)
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_matches_naive(dtype, seed, num_anchors, num_contrasts, dim, num_ids, temperature):
    anchors, contrasts, anchor_labels, contrast_labels = _batch(seed, num_anchors, num_contrasts, dim, num_ids, dtype)
    loss = supcon_loss(anchors, contrasts, anchor_labels, contrast_labels, temperature=temperature)
    expected = naive_supcon(anchors, contrasts, anchor_labels, contrast_labels, temperature)
    assert loss.shape == () and loss.dtype == dtype
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=dtype), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_image_to_text_and_text_to_image_differ(dtype):
    gen = torch.Generator().manual_seed(3)
    image, text = torch.randn(6, 8, generator=gen, dtype=dtype), torch.randn(6, 8, generator=gen, dtype=dtype)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    i2t, t2i = supcon_loss(image, text, labels, labels), supcon_loss(text, image, labels, labels)
    torch.testing.assert_close(i2t, torch.tensor(naive_supcon(image, text, labels, labels), dtype=dtype), **TOL[dtype])
    torch.testing.assert_close(t2i, torch.tensor(naive_supcon(text, image, labels, labels), dtype=dtype), **TOL[dtype])
    assert not torch.isclose(i2t, t2i)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_anchors_without_positive_are_skipped(dtype):
    anchors, contrasts, _, contrast_labels = _batch(4, 6, 9, 8, 3, dtype)
    anchor_labels = torch.tensor([0, 7, 1, 8, 2, 0])  # 7 and 8 never occur among the contrasts
    loss = supcon_loss(anchors, contrasts, anchor_labels, contrast_labels % 3)
    kept = torch.tensor([0, 2, 4, 5])
    expected = supcon_loss(anchors[kept], contrasts, anchor_labels[kept], contrast_labels % 3)
    torch.testing.assert_close(loss, expected, **TOL[dtype])
    naive = naive_supcon(anchors, contrasts, anchor_labels, contrast_labels % 3)
    torch.testing.assert_close(loss, torch.tensor(naive, dtype=dtype), **TOL[dtype])


def test_no_positive_at_all_is_zero_with_grad():
    anchors = torch.randn(4, 5, requires_grad=True)
    contrasts = torch.randn(3, 5, requires_grad=True)
    loss = supcon_loss(anchors, contrasts, torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(anchors.grad, torch.zeros_like(anchors))
    assert torch.equal(contrasts.grad, torch.zeros_like(contrasts))


def test_identical_features_give_log_of_contrast_count():
    # All logits equal, so every log-prob is -log(C) whatever the positives.
    features = torch.ones(5, 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 2])
    loss = supcon_loss(features, torch.ones(7, 4, dtype=torch.float64), labels, torch.tensor([0, 1, 2, 0, 1, 2, 2]))
    torch.testing.assert_close(loss, torch.tensor(math.log(7), dtype=torch.float64))


def test_known_value_two_by_two():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    contrasts = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    # Logits [[1, 0], [0, 2]]: -(log(e/(e+1)) + log(e^2/(1+e^2))) / 2.
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-2.0))) / 2
    torch.testing.assert_close(supcon_loss(anchors, contrasts, labels, labels), torch.tensor(expected).double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_inputs_stay_finite(dtype):
    anchors, contrasts, anchor_labels, contrast_labels = _batch(5, 8, 8, 16, 3, dtype)
    anchors = (100 * anchors).requires_grad_()
    contrasts = (100 * contrasts).requires_grad_()
    loss = supcon_loss(anchors, contrasts, anchor_labels, contrast_labels)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert torch.isfinite(anchors.grad).all() and torch.isfinite(contrasts.grad).all()


def test_gradients_match_finite_differences():
    anchors, contrasts, anchor_labels, contrast_labels = _batch(6, 4, 5, 3, 2, torch.float64)
    anchors.requires_grad_()
    contrasts.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, c: supcon_loss(a, c, anchor_labels, contrast_labels, temperature=0.7), (anchors, contrasts)
    )


def test_bf16_autocast_leaves_the_loss_and_its_gradient_in_fp32():
    """Raw dot products of unnormalised features (norm about 20) stay fp32 under autocast."""
    anchors, contrasts, anchor_labels, contrast_labels = _batch(7, 16, 16, 64, 4, torch.float32)
    anchors, contrasts = 2.5 * anchors, 0.1 * contrasts  # logits of order 10, as stage 1's
    results = {}
    for amp in (False, True):
        a = anchors.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = supcon_loss(a, contrasts, anchor_labels, contrast_labels)
        loss.backward()
        results[amp] = (loss.detach(), a.grad)
    assert results[True][0].dtype == torch.float32
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-6, atol=1e-6)


def test_no_host_sync_on_meta_device():
    # Meta tensors have no data: any .item(), .tolist() or data-dependent branch would raise here.
    anchors = torch.randn(4, 3, device="meta", requires_grad=True)
    loss = supcon_loss(
        anchors,
        torch.randn(5, 3, device="meta"),
        torch.zeros(4, dtype=torch.long, device="meta"),
        torch.zeros(5, dtype=torch.long, device="meta"),
    )
    loss.backward()
    assert loss.shape == () and anchors.grad.shape == (4, 3)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (((4, 3), (5, 2), (4,), (5,)), "anchors and contrasts must be"),
        (((4, 3), (5, 3), (5,), (5,)), "labels must be"),
        (((4, 3), (5, 3), (4,), (4,)), "labels must be"),
        (((4,), (5, 3), (4,), (5,)), "anchors and contrasts must be"),
    ],
)
def test_shape_errors(shapes, message):
    a, c, al, cl = shapes
    with pytest.raises(ValueError, match=message):
        supcon_loss(
            torch.randn(a), torch.randn(c), torch.zeros(al, dtype=torch.long), torch.zeros(cl, dtype=torch.long)
        )


def test_temperature_must_be_positive():
    x, labels = torch.randn(2, 3), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature must be positive"):
        supcon_loss(x, x, labels, labels, temperature=0.0)
