"""BNNeck + ID classifier, and SVLL's self-supervision projection heads."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["BN_INITS", "BNNeckClassifier", "BatchNormInit", "ProjectionHead"]


class BNNeckClassifier(nn.Module):
    """BatchNorm1d with its bias frozen at zero, then a bias-free linear ID classifier.

    Returns the logits; :attr:`bn` is exposed for features after the neck.
    """

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bn(features))


#: How a projection head's BatchNorm layers start: ``uniform`` draws weight and bias from U(0, 1), as the
#: SVLL-ReID authors' vision projector does; ``pytorch`` keeps PyTorch's weight 1 and bias 0.
BN_INITS = ("uniform", "pytorch")
BatchNormInit = Literal["uniform", "pytorch"]


class ProjectionHead(nn.Module):
    """SimCLR-style MLP: Linear -> BN -> ReLU -> Linear -> BN -> ReLU -> Linear.

    Args:
        in_dim: input width (512 for language, the image width for vision).
        hidden_dim: 4096 in the paper.
        out_dim: 256 in the paper.
        kaiming: Kaiming-normal (fan-in, ReLU gain) init of the linear weights.
        bn_init: the BatchNorm layers' init, one of :data:`BN_INITS`.

    The reference initialises its vision projector with ``kaiming=True, bn_init="uniform"`` and
    leaves its language projector at PyTorch's defaults (``kaiming=False, bn_init="pytorch"``).
    The uniform BatchNorm init matters: with weight 1 and bias 0 the self-supervision gradient
    reaching the encoder at initialisation is about twice as large (norm 20.2-21.1 against
    9.2-10.4 for svll-tiny-rn at 96×32 on 64 PKU training images, 3 seeds, CPU fp32).
    """

    def __init__(
        self,
        in_dim: int,
        *,
        hidden_dim: int = 4096,
        out_dim: int = 256,
        kaiming: bool = False,
        bn_init: BatchNormInit = "pytorch",
    ):
        super().__init__()
        if bn_init not in BN_INITS:
            raise ValueError(f"bn_init must be one of {', '.join(BN_INITS)}; got {bn_init!r}")
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        for layer in self.net:
            if kaiming and isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            elif bn_init == "uniform" and isinstance(layer, nn.BatchNorm1d):
                nn.init.uniform_(layer.weight)
                nn.init.uniform_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
