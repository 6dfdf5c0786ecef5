"""Projected Gradient Descent (Linf, L2) and its L0 form over pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from robustaudit.attacks.base import Attack, Context, FirstSuccess
from robustaudit.types import Norm


@dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    """PGD, Linf/L2, white box; Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
    ICLR 2018.

    Cost: 1 fwd (clean) + restarts × (steps grads + 1 fwd) per example that stays robust; a fooled example
    leaves the batch at once and keeps its first adversarial iterate.

    >>> PGD(steps=20)(model, x, y, ThreatModel(norm="linf", eps=0.1))  # doctest: +SKIP
    """

    name = "pgd"
    steps: int = 10
    rel_stepsize: float = 2.5  # alpha = rel_stepsize * eps / steps (the MadryLab/robustness rule)
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    early_stop: bool = True  # a fooled example leaves the batch at once (off: cost grows, result unchanged)

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps, bounds = ctx.threat.eps, ctx.threat.bounds
        alpha = self.step_size(ctx)
        found = FirstSuccess(x, early_stop=self.early_stop)
        for restart in range(self.restarts):
            act = found.remaining()
            xi = x[act]
            if self.random_start:
                xi = ctx.ops.sample_in_ball(xi, eps, ctx.start_noise(xi, act, self.name, restart), bounds)
            for i in range(self.steps + 1):
                live = ctx.oracle.affordable(act)
                act, xi = act[live], xi[live]
                if len(act) == 0:
                    break
                if i == self.steps:  # the last iterate is only evaluated
                    found.update(ctx, ctx.oracle.scores(xi, act), xi, act, y)
                    break
                z, _, g = ctx.oracle.value_and_grad(xi, act, ctx.loss(self.loss, y[act], act))
                keep = found.update(ctx, z, xi, act, y)
                act, xi, g = act[keep], xi[keep], g[keep]
                xi = ctx.project(xi + alpha * ctx.ops.direction(g), x[act])
        return found.x_adv, found.success

    def step_size(self, ctx: Context) -> float:
        return self.rel_stepsize * ctx.threat.eps / self.steps


@dataclass(frozen=True, kw_only=True)
class PGDL0(PGD):
    """PGD over pixels, L0, white box: the gradient reference of the L0 cascade (Croce & Hein, "Sparse and
    Imperceivable Adversarial Attacks", ICCV 2019, their L0-PGD). Each step moves along the gradient scaled to a
    largest entry of `rel_stepsize` × the box width, then projects onto {at most eps pixels changed} ∩ box (the
    eps pixels of largest change kept). Cost as PGD.

    >>> PGDL0()(model, x, y, ThreatModel(norm="l0", eps=10))  # doctest: +SKIP
    """

    name = "pgd-l0"
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.L0})
    steps: int = 50
    rel_stepsize: float = 1.0
    restarts: int = 5

    def step_size(self, ctx: Context) -> float:
        return self.rel_stepsize * ctx.threat.bounds.width
