"""nt_xent_loss against an explicit loop over the 2N rows and their denominators."""

from __future__ import annotations

import math

import pytest
import torch

from svllreid.losses import nt_xent_loss

TOL = {torch.float32: {"rtol": 1e-5, "atol": 1e-5}, torch.float64: {"rtol": 1e-10, "atol": 1e-10}}


def naive_nt_xent(z1, z2, temperature, labels=None, exclude_same_label=False):
    """-log(exp(s_pos) / sum over kept k != i of exp(s_ik)), averaged over the 2N rows."""
    rows = z1.double().tolist() + z2.double().tolist()
    rows = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in rows]
    n = len(rows) // 2
    ids = labels.tolist() * 2 if labels is not None else None
    total = 0.0
    for i in range(2 * n):
        positive = i + n if i < n else i - n
        sims = [sum(a * b for a, b in zip(rows[i], rows[k], strict=True)) / temperature for k in range(2 * n)]
        denominator = 0.0
        for k in range(2 * n):
            if k == i or (exclude_same_label and k != positive and ids[k] == ids[i]):
                continue
            denominator += math.exp(sims[k])
        total -= math.log(math.exp(sims[positive]) / denominator)
    return total / (2 * n)


def _views(seed, n, dim, dtype, num_ids=None):
    gen = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, dim, generator=gen, dtype=dtype)
    z2 = z1 + 0.5 * torch.randn(n, dim, generator=gen, dtype=dtype)  # correlated views, like augmentations
    labels = torch.randint(num_ids, (n,), generator=gen) if num_ids else None
    return z1, z2, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("n", "dim"), [(1, 4), (2, 3), (8, 16), (13, 8)])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_matches_naive(dtype, seed, n, dim, temperature):
    z1, z2, _ = _views(seed, n, dim, dtype)
    loss = nt_xent_loss(z1, z2, temperature=temperature)
    assert loss.shape == () and loss.dtype == dtype
    torch.testing.assert_close(loss, torch.tensor(naive_nt_xent(z1, z2, temperature), dtype=dtype), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("n", "num_ids"), [(1, 1), (6, 2), (10, 4), (9, 9)])
def test_exclude_same_label_matches_naive(dtype, seed, n, num_ids):
    z1, z2, labels = _views(seed, n, 8, dtype, num_ids)
    loss = nt_xent_loss(z1, z2, temperature=0.2, labels=labels, exclude_same_label=True)
    expected = naive_nt_xent(z1, z2, 0.2, labels, exclude_same_label=True)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=dtype), **TOL[dtype])


def test_labels_are_ignored_without_exclude_same_label():
    z1, z2, labels = _views(3, 8, 8, torch.float64, num_ids=2)
    torch.testing.assert_close(nt_xent_loss(z1, z2, labels=labels), nt_xent_loss(z1, z2))
    # ...and excluding does change the value when labels repeat.
    assert not torch.isclose(nt_xent_loss(z1, z2, labels=labels, exclude_same_label=True), nt_xent_loss(z1, z2))


def test_distinct_labels_exclude_nothing():
    z1, z2, _ = _views(4, 7, 8, torch.float64)
    loss = nt_xent_loss(z1, z2, labels=torch.arange(7) * 3, exclude_same_label=True)
    torch.testing.assert_close(loss, nt_xent_loss(z1, z2))


def test_single_pair_is_zero():
    z1, z2, _ = _views(5, 1, 6, torch.float64)
    z1.requires_grad_()
    loss = nt_xent_loss(z1, z2)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z1.grad).all()


def test_identical_projections():
    z = torch.ones(5, 4, dtype=torch.float64, requires_grad=True)
    # All similarities equal: the positive is 1 of the 2N - 1 terms.
    loss = nt_xent_loss(z, z)
    torch.testing.assert_close(loss, torch.tensor(math.log(9), dtype=torch.float64))
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # One shared label leaves only the positive in each denominator.
    same = nt_xent_loss(z, z, labels=torch.zeros(5, dtype=torch.long), exclude_same_label=True)
    torch.testing.assert_close(same, torch.tensor(0.0, dtype=torch.float64))


def test_orthogonal_known_value():
    # N = 2, views equal, samples orthogonal: s_pos = 1/t, the other two terms are 0.
    z1 = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    torch.testing.assert_close(nt_xent_loss(z1, z1, temperature=t), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("exclude", [False, True])
def test_large_inputs_stay_finite(dtype, exclude):
    z1, z2, labels = _views(6, 8, 16, dtype, num_ids=3)
    z1, z2 = (100 * z1).requires_grad_(), (100 * z2).requires_grad_()
    loss = nt_xent_loss(z1, z2, temperature=0.01, labels=labels, exclude_same_label=exclude)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


def test_gradients_match_finite_differences():
    z1, z2, labels = _views(7, 4, 5, torch.float64, num_ids=2)
    z1.requires_grad_()
    z2.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: nt_xent_loss(a, b, temperature=0.3), (z1, z2))
    assert torch.autograd.gradcheck(
        lambda a, b: nt_xent_loss(a, b, temperature=0.3, labels=labels, exclude_same_label=True), (z1, z2)
    )


@pytest.mark.parametrize("exclude_same_label", [False, True])
def test_bf16_autocast_leaves_the_loss_and_its_gradient_in_fp32(exclude_same_label):
    """Cosines stay fp32 under autocast (bf16 rounds them before the temperature multiplies by 10)."""
    z1, z2, labels = _views(8, 16, 64, torch.float32, num_ids=5)
    results = {}
    for amp in (False, True):
        a = z1.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = nt_xent_loss(a, z2, labels=labels, exclude_same_label=exclude_same_label)
        loss.backward()
        results[amp] = (loss.detach(), a.grad)
    assert results[True][0].dtype == torch.float32
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-6, atol=1e-6)


def test_no_host_sync_on_meta_device():
    z1 = torch.randn(4, 3, device="meta", requires_grad=True)
    labels = torch.zeros(4, dtype=torch.long, device="meta")
    loss = nt_xent_loss(z1, torch.randn(4, 3, device="meta"), labels=labels, exclude_same_label=True)
    loss.backward()
    assert loss.shape == () and z1.grad.shape == (4, 3)


@pytest.mark.parametrize(("shape1", "shape2"), [((4, 3), (5, 3)), ((4, 3), (4, 2)), ((4,), (4,)), ((0, 3), (0, 3))])
def test_shape_errors(shape1, shape2):
    with pytest.raises(ValueError, match=r"z1 and z2 must both be \[N, D\]"):
        nt_xent_loss(torch.randn(shape1), torch.randn(shape2))


def test_exclude_same_label_needs_labels():
    with pytest.raises(ValueError, match="exclude_same_label=True needs labels"):
        nt_xent_loss(torch.randn(3, 2), torch.randn(3, 2), exclude_same_label=True)


def test_labels_shape_error():
    with pytest.raises(ValueError, match=r"labels must be \[N\] = \[3\]"):
        nt_xent_loss(torch.randn(3, 2), torch.randn(3, 2), labels=torch.zeros(4, dtype=torch.long))


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be positive"):
        nt_xent_loss(torch.randn(3, 2), torch.randn(3, 2), temperature=-1.0)
