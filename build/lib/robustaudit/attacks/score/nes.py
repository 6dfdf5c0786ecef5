"""NES: natural-evolution-strategies gradient estimates driving signed PGD steps (spec black-box-attacks.md §4.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustaudit.attacks.base import Attack, Context, FirstSuccess
from robustaudit.ops.lp import per_example
from robustaudit.ops.zo import ProbeLoss, antithetic_gradient
from robustaudit.types import Access


@dataclass(frozen=True, kw_only=True)
class NES(Attack):
    """NES, Linf (L2 by normalised steps), score-based black box; Ilyas et al., "Black-box Adversarial Attacks
    with Limited Queries and Information", ICML 2018.

    Gaussian antithetic estimates of the cross-entropy gradient, momentum, a signed step and the plateau rule
    that halves the step when the minimised loss stops falling.
    Cost: samples + 1 queries per iteration (probes + success check), at most n_queries per example; a fooled
    example stops at once.

    >>> NES(n_queries=2000)(as_score_only(model), x, y, ThreatModel(eps=0.05))  # doctest: +SKIP
    """

    name = "nes"
    requires = Access.SCORES
    n_queries: int = 10_000
    samples: int = 50  # probes per estimate (25 antithetic pairs)
    sigma: float = 1e-3
    lr_max: float = 1e-2
    lr_min: float = 5e-5
    momentum: float = 0.9
    plateau: int = 5
    drop: float = 2.0

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        oracle, bounds = ctx.oracle, ctx.threat.bounds
        oracle.limit(self.n_queries)
        sign = 1.0 if ctx.threat.targeted else -1.0  # the loss is descended towards a target, ascended away from y
        found = FirstSuccess(x)
        act = torch.arange(len(x), device=x.device)
        xc, m = x.clone(), torch.zeros_like(x)
        lr = torch.full((len(x),), self.lr_max, device=x.device)
        hist = torch.zeros(len(x), self.plateau, device=x.device)
        seen = torch.zeros(len(x), dtype=torch.long, device=x.device)
        pairs = max(self.samples // 2, 1)
        for it in range(self.n_queries):
            act = act[oracle.affordable(act)]
            if len(act) == 0:
                break
            act = act[found.update(ctx, oracle.scores(xc[act], act), xc[act], act, y)]
            act = act[oracle.affordable(act, 2 * pairs + 1)]  # an estimate, and the check of its step
            if len(act) == 0:
                break
            u = ctx.noise("normal", torch.empty(len(act), pairs, *x.shape[1:], device=x.device), act, self.name, it)
            g, mean_loss = antithetic_gradient(self._loss(ctx, y), xc[act], act, u, self.sigma, bounds)
            m[act] = self.momentum * m[act] + (1 - self.momentum) * g
            # plateau rule on the minimised objective sign·loss over the last `plateau` estimates
            hist[act] = torch.cat([hist[act, 1:], (sign * mean_loss)[:, None]], 1)
            seen[act] += 1
            anneal = (seen[act] >= self.plateau) & (hist[act, -1] > hist[act, 0])
            lr[act[anneal]] = (lr[act[anneal]] / self.drop).clamp_min(self.lr_min)
            seen[act[anneal]] = 0
            step = ctx.ops.direction(m[act]) * per_example(lr[act], xc[act])
            xc[act] = ctx.project(xc[act] - sign * step, x[act])
        return found.x_adv, found.success

    def _loss(self, ctx: Context, y: torch.Tensor) -> ProbeLoss:
        def loss(probes: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            z = ctx.oracle.scores(probes, idx)
            labels = ctx.target[idx] if ctx.threat.targeted and ctx.target is not None else y[idx]
            return F.cross_entropy(z, labels, reduction="none")

        return loss
