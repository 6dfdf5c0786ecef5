"""The ordered top-K baselines in QuadAttack's framework (spec gradient-attacks.md §8.4).

CW^K (the top-K extension of Carlini & Wagner, κ = 0):
    L = (1/K)·[ Σ_{i=2..K} max(0, max_{j ∉ {t_1..t_{i−1}}} z_j − min_{l<i} z_{t_l})
               + max(0, max_{j ∉ T} z_j − min_{l≤K} z_{t_l}) ]
Adversarial Distillation (Zhang & Wu 2019), knowledge-agnostic: L = KL(P_AD || softmax(z)) with
    P_AD = softmax(s), s = 0 except s[t_i] = α − (i − 1)·β (α = 10, β = 0.3). The released port adds a GloVe
    class-name similarity prior to s; class names are not part of a model, so robustaudit uses the variant
    without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from robustaudit.attacks.topk.ordered import OrderedTopKAttack
from robustaudit.attacks.topk.split import FeatureSplit

_BIG = 1e9


@dataclass(frozen=True, kw_only=True)
class CWK(OrderedTopKAttack):
    name: ClassVar[str] = "cwk"
    kappa: float = 0.0

    def loss(self, h: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, state: Any,
             unsolved: torch.Tensor) -> torch.Tensor:
        n, k = targets.shape
        # excluded[:, m] marks t_1..t_{m+1}: term m+1 compares the best class outside them with their smallest
        excluded = F.one_hot(targets, logits.shape[1]).cumsum(1).bool()
        target_logits = logits.gather(1, targets)
        total = torch.zeros(n, device=logits.device)
        for m in range(k):
            rival = logits.masked_fill(excluded[:, m], -_BIG).amax(1)
            total = total + (rival - target_logits[:, : m + 1].amin(1) + self.kappa).clamp_min(0)
        return total / k


@dataclass(frozen=True, kw_only=True)
class AdversarialDistillation(OrderedTopKAttack):
    name: ClassVar[str] = "ad"
    alpha: float = 10.0
    beta: float = 0.3

    def prepare(self, split: FeatureSplit, targets: torch.Tensor) -> torch.Tensor:
        n, k = targets.shape
        s = torch.zeros(n, split.linear.out_features)
        s.scatter_(1, targets.cpu(), (self.alpha - self.beta * torch.arange(k, dtype=torch.float32)).expand(n, k))
        return F.softmax(s, dim=1).to(split.weight.device)

    def loss(self, h: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, state: torch.Tensor,
             unsolved: torch.Tensor) -> torch.Tensor:
        p = state.to(logits.device)
        return (p * (p.clamp_min(1e-30).log() - F.log_softmax(logits, dim=1))).sum(1)
