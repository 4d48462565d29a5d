"""Learning-rate schedules and optimiser groups (METHOD.md 3.2, 3.3)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from svllreid.training.optim import apply_lr, build_adam, cosine_with_warmup, multistep_with_warmup


def test_stage1_cosine_with_warmup_values():
    factor = cosine_with_warmup(epochs=120, warmup_epochs=5, warmup_lr=1e-5, min_lr=1e-6, base_lr=3.5e-4)
    lr = [3.5e-4 * factor(e) for e in range(1, 121)]
    assert lr[0] == pytest.approx(1e-5 + 1 * (3.5e-4 - 1e-5) / 5)  # epoch 1 of the warm-up
    assert lr[3] == pytest.approx(1e-5 + 4 * (3.5e-4 - 1e-5) / 5)
    cosine = 1e-6 + 0.5 * (3.5e-4 - 1e-6) * (1 + math.cos(math.pi * 5 / 120))  # not shifted by the warm-up
    assert lr[4] == pytest.approx(cosine)
    assert lr[59] == pytest.approx(1e-6 + 0.5 * (3.5e-4 - 1e-6))
    assert lr[119] == pytest.approx(1e-6)
    assert all(a >= b for a, b in itertools.pairwise(lr[4:]))


def test_stage2_warmup_multistep_values():
    factor = multistep_with_warmup([30, 50], gamma=0.1, warmup_epochs=10, warmup_factor=0.1)
    assert factor(1) == pytest.approx(0.1 * 0.9 + 0.1)
    assert factor(5) == pytest.approx(0.1 * 0.5 + 0.5)
    assert factor(10) == pytest.approx(1.0)
    assert factor(29) == pytest.approx(1.0)
    assert factor(30) == pytest.approx(0.1)
    assert factor(50) == pytest.approx(0.01)
    assert factor(60) == pytest.approx(0.01)


def test_adam_groups_and_bias_factor():
    layer = torch.nn.Linear(3, 2)
    params = dict(layer.named_parameters())
    optimizer = build_adam(params, lr=5e-6, weight_decay=1e-4, bias_lr_factor=2.0)
    weights, biases = optimizer.param_groups
    assert weights["params"] == [layer.weight] and biases["params"] == [layer.bias]
    assert (weights["lr"], biases["lr"]) == (5e-6, 1e-5)
    assert weights["weight_decay"] == biases["weight_decay"] == 1e-4
    assert apply_lr(optimizer, 0.1) == pytest.approx(5e-7)
    assert biases["lr"] == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="nothing to optimise"):
        build_adam({}, lr=1e-3, weight_decay=0.0)
