"""cross_entropy_label_smooth against an explicit per-sample, per-class loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from svllreid.losses import cross_entropy_label_smooth

TOL = {torch.float32: {"rtol": 1e-5, "atol": 1e-5}, torch.float64: {"rtol": 1e-10, "atol": 1e-10}}


def naive_smoothed_ce(logits, targets, epsilon):
    """Sum over classes of -q_k log p_k with q = (1 - eps) onehot + eps / K, averaged over samples."""
    rows, labels = logits.double().tolist(), targets.tolist()
    total = 0.0
    for row, label in zip(rows, labels, strict=True):
        num_classes = len(row)
        log_normaliser = math.log(sum(math.exp(v) for v in row))
        for k, value in enumerate(row):
            q = (1 - epsilon) * (k == label) + epsilon / num_classes
            total -= q * (value - log_normaliser)
    return total / len(rows)


def _batch(seed, batch, num_classes, dtype):
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, num_classes, generator=gen, dtype=dtype)
    targets = torch.randint(num_classes, (batch,), generator=gen)
    return logits, targets


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("batch", "num_classes"), [(8, 5), (1, 3), (16, 40), (6, 1)])
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3, 1.0])
def test_matches_naive(dtype, seed, batch, num_classes, epsilon):
    logits, targets = _batch(seed, batch, num_classes, dtype)
    loss = cross_entropy_label_smooth(logits, targets, epsilon=epsilon)
    assert loss.shape == () and loss.dtype == dtype
    torch.testing.assert_close(
        loss, torch.tensor(naive_smoothed_ce(logits, targets, epsilon), dtype=dtype), **TOL[dtype]
    )


def test_default_epsilon_is_point_one():
    logits, targets = _batch(3, 8, 6, torch.float64)
    expected = torch.tensor(naive_smoothed_ce(logits, targets, 0.1), dtype=torch.float64)
    torch.testing.assert_close(cross_entropy_label_smooth(logits, targets), expected)


def test_zero_epsilon_is_plain_cross_entropy():
    logits, targets = _batch(4, 10, 7, torch.float64)
    torch.testing.assert_close(
        cross_entropy_label_smooth(logits, targets, epsilon=0.0), F.cross_entropy(logits, targets)
    )


def test_uniform_logits_give_log_k():
    logits = torch.zeros(4, 9, dtype=torch.float64)
    loss = cross_entropy_label_smooth(logits, torch.tensor([0, 3, 8, 8]), epsilon=0.2)
    torch.testing.assert_close(loss, torch.tensor(math.log(9), dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_logits_stay_finite(dtype):
    logits, targets = _batch(5, 8, 5, dtype)
    logits = (100 * logits).requires_grad_()
    loss = cross_entropy_label_smooth(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and torch.isfinite(logits.grad).all()


def test_gradients_match_finite_differences():
    logits, targets = _batch(6, 5, 4, torch.float64)
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: cross_entropy_label_smooth(x, targets, epsilon=0.2), (logits,))


def test_runs_under_bf16_autocast():
    gen = torch.Generator().manual_seed(7)
    features, weight = torch.randn(8, 16, generator=gen), torch.randn(5, 16, generator=gen, requires_grad=True)
    targets = torch.randint(5, (8,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = features @ weight.T
        loss = cross_entropy_label_smooth(logits, targets)
    loss.backward()
    reference = cross_entropy_label_smooth(features @ weight.detach().T, targets)
    assert torch.isfinite(loss) and torch.isfinite(weight.grad).all()
    torch.testing.assert_close(loss.float(), reference, rtol=5e-2, atol=5e-2)


def test_no_host_sync_on_meta_device():
    logits = torch.randn(4, 3, device="meta", requires_grad=True)
    loss = cross_entropy_label_smooth(logits, torch.zeros(4, dtype=torch.long, device="meta"))
    loss.backward()
    assert loss.shape == () and logits.grad.shape == (4, 3)


@pytest.mark.parametrize(("logits_shape", "targets_shape"), [((4, 3), (3,)), ((4,), (4,)), ((4, 3), (4, 1))])
def test_shape_errors(logits_shape, targets_shape):
    with pytest.raises(ValueError, match=r"logits must be \[B, K\] and targets \[B\]"):
        cross_entropy_label_smooth(torch.randn(logits_shape), torch.zeros(targets_shape, dtype=torch.long))


@pytest.mark.parametrize("epsilon", [-0.1, 1.5])
def test_epsilon_range(epsilon):
    with pytest.raises(ValueError, match=r"epsilon must lie in \[0, 1\]"):
        cross_entropy_label_smooth(torch.randn(2, 3), torch.zeros(2, dtype=torch.long), epsilon=epsilon)
