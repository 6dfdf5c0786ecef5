"""QuadAttack (Paniagua, Grainger, Wu, AAAI 2024; spec gradient-attacks.md §8.2): at every step, project the
current features onto the ordered-top-K polyhedron by an exact QP and pull the features towards the projection;
the feature-space loss ||h − z*||² reaches the pixels by one backward pass (its gradient is 2(h − z*) whether or
not it flows through the solver)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from robustaudit.attacks.topk.ordered import OrderedTopKAttack
from robustaudit.attacks.topk.projection import TopKProjection
from robustaudit.attacks.topk.split import FeatureSplit


@dataclass(frozen=True, kw_only=True)
class QuadAttack(OrderedTopKAttack):
    name: ClassVar[str] = "quad"
    margin: float = 0.2

    def prepare(self, split: FeatureSplit, targets: torch.Tensor) -> TopKProjection:
        return TopKProjection(split.weight, split.bias, targets, self.margin)

    def loss(self, h: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, state: TopKProjection,
             unsolved: torch.Tensor) -> torch.Tensor:
        z, solved = state.project(h)
        unsolved += (~solved).long()
        return ((h - z) ** 2).sum(1)
