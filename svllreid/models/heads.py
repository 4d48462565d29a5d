"""BNNeck + ID classifier, and SVLL's self-supervision projection heads."""

from __future__ import annotations

import torch
from torch import nn


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


class ProjectionHead(nn.Module):
    """SimCLR-style MLP: Linear -> BN -> ReLU -> Linear -> BN -> ReLU -> Linear.

    Args:
        in_dim: input width (512 for language, the image width for vision).
        hidden_dim: 4096 in the paper.
        out_dim: 256 in the paper.
        kaiming: Kaiming-normal init of the linear weights (the vision head in the reference).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 256, kaiming: bool = False):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        if kaiming:
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    nn.init.kaiming_normal_(layer.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
