"""PubDef (Sitawarin et al., ICLR 2024): defend against transfer attacks from *public* models by training on
fixed transfer examples crafted on a few of them. Spec defence-training.md, Part A.

Threat model: the attacker crafts x' on a public source model s and submits it once; no queries, no white box.
PubDef is not white-box robust and is never reported as such.

    1. copies_j = PGD(source_j, x_train), uniform random start, step eps/4, 10 steps, source in eval mode; fixed
       (never regenerated against the defended model: the difference from adversarial training)
    2. L = w_0 · CE(f(x), y) + Σ_j w_j · CE(f(copies_j), y),  w_0 = Σ_j w_j = 1/2 (the paper's 1 : 1/K ... weights)
Source choice (the game): the attacker picks a source, the defender the training sources. With the matrix
A[i, s] = accuracy of source s on examples crafted on source i, training on s covers attacker i to the extent
that i's examples fool s (small A[i, s]); the defender picks the k sources minimising the worst attacker's best
cover, max_i min_{s ∈ S} A[i, s] (a k-center problem: exact over all subsets when there are few, else greedy).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robustaudit.attacks.transfer.iterative import TransferAttack
from robustaudit.defend.adversarial import random_start
from robustaudit.models.base import GradModel
from robustaudit.threat import ThreatModel

PGD = TransferAttack(momentum=False, steps=10)


def transfer_copy(source: GradModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int,
                  batch_size: int = 256) -> torch.Tensor:
    """PubDef's offline copy of (x, y) for one source: PGD-10 from a uniform random start, step eps/4."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        start = random_start(xb, threat, gen)
        parts.append(PGD.craft([source], xb, yb, threat, seed=seed + i, start=start, step=threat.eps / 4))
    return torch.cat(parts)


def transfer_matrix(sources: Sequence[GradModel], x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
                    seed: int) -> torch.Tensor:
    """A[i, s]: accuracy of source s on PGD examples crafted on source i (the diagonal is white-box)."""
    copies = [transfer_copy(m, x, y, threat, seed=seed + 7919 * i) for i, m in enumerate(sources)]
    return torch.tensor([[float((s.predict_labels(c.to(s.device)).cpu() == y).float().mean()) for s in sources]
                         for c in copies])


def choose_sources(matrix: torch.Tensor, k: int) -> list[int]:
    """The k training sources minimising max_i min_{s in S} A[i, s] (ties: the lower mean cover); exact when
    there are at most 20,000 subsets, greedy otherwise."""
    n = matrix.shape[0]
    k = min(k, n)

    def cost(subset: Iterable[int]) -> tuple[float, float]:
        cover = matrix[:, list(subset)].min(1).values
        return float(cover.max()), float(cover.mean())

    if math.comb(n, k) <= 20_000:
        return list(min(itertools.combinations(range(n), k), key=cost))
    chosen: list[int] = []
    while len(chosen) < k:
        chosen.append(min((s for s in range(n) if s not in chosen), key=lambda s: cost([*chosen, s])))
    return sorted(chosen)


def pubdef_loss(net: nn.Module, x: torch.Tensor, copies: Sequence[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Clean cross-entropy with weight 1/2 plus each source's copy with weight 1/(2K) (per sub-dataset means)."""
    adv = sum(F.cross_entropy(net(c), y) for c in copies) / (2 * len(copies))
    return 0.5 * F.cross_entropy(net(x), y) + adv
