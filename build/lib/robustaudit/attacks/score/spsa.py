"""SPSA: Rademacher antithetic estimates of the margin's gradient driving Adam (spec black-box-attacks.md §4.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustaudit.attacks.base import Attack, Context, FirstSuccess
from robustaudit.ops import losses
from robustaudit.ops.zo import ProbeLoss, antithetic_gradient
from robustaudit.types import Access


@dataclass(frozen=True, kw_only=True)
class SPSA(Attack):
    """SPSA, Linf/L2, score-based black box; Uesato et al., "Adversarial Risk and the Dangers of Evaluating
    Against Weak Attacks", ICML 2018.

    Minimises the logit margin (z_y - max_{k!=y} z_k; targeted: max_{k!=t} z_k - z_t) with Adam on mirrored
    Rademacher estimates, projecting after each step, from a random start.
    Cost: 2·pairs + 1 queries per iteration (probes + success check), at most n_queries per example; a fooled
    example stops at once.

    >>> SPSA(n_queries=2000)(as_score_only(model), x, y, ThreatModel(eps=0.05))  # doctest: +SKIP
    """

    name = "spsa"
    requires = Access.SCORES
    n_queries: int = 10_000
    pairs: int = 64  # 128 evaluations per step
    delta: float = 0.01
    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-9

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        oracle, eps, bounds = ctx.oracle, ctx.threat.eps, ctx.threat.bounds
        oracle.limit(self.n_queries)
        found = FirstSuccess(x)
        act = torch.arange(len(x), device=x.device)
        xc = ctx.ops.sample_in_ball(x, eps, ctx.start_noise(x, act, self.name), bounds)
        m1, m2 = torch.zeros_like(x), torch.zeros_like(x)
        t = torch.zeros(len(x), device=x.device)
        loss = self._margin(ctx, y)
        for it in range(self.n_queries):
            act = act[oracle.affordable(act, 2 * self.pairs + 1)]
            if len(act) == 0:
                break
            v = ctx.noise("uniform", torch.empty(len(act), self.pairs, *x.shape[1:], device=x.device), act,
                          self.name, it).sign()
            v[v == 0] = 1.0
            g, _ = antithetic_gradient(loss, xc[act], act, v, self.delta, bounds)
            t[act] += 1
            m1[act] = self.beta1 * m1[act] + (1 - self.beta1) * g
            m2[act] = self.beta2 * m2[act] + (1 - self.beta2) * g * g
            shape = (-1, *([1] * (x.dim() - 1)))
            m_hat = m1[act] / (1 - self.beta1 ** t[act]).reshape(shape)
            v_hat = m2[act] / (1 - self.beta2 ** t[act]).reshape(shape)
            xc[act] = ctx.project(xc[act] - self.lr * m_hat / (v_hat.sqrt() + self.adam_eps), x[act])
            act = act[found.update(ctx, oracle.scores(xc[act], act), xc[act], act, y)]
        return found.x_adv, found.success

    def _margin(self, ctx: Context, y: torch.Tensor) -> ProbeLoss:
        def loss(probes: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            z = ctx.oracle.scores(probes, idx)
            if ctx.threat.targeted and ctx.target is not None:
                return -losses.margin(z, ctx.target[idx])  # max_{k != t} z_k - z_t
            return losses.margin(z, y[idx])

        return loss
