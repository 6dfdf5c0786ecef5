"""FAB-T: the targeted Fast Adaptive Boundary attack (spec gradient-attacks.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustaudit.attacks.base import Attack, Context, Pair, over_targets
from robustaudit.ops.planes import step_onto_plane
from robustaudit.oracle import LossFn


@dataclass(frozen=True, kw_only=True)
class FABT(Attack):
    """FAB-T, Linf/L2, white box; Croce & Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive
    Boundary Attack", ICML 2020, as run by AutoAttack.

    For each of the n_targets most likely wrong classes, it repeatedly projects onto the linearised
    boundary between the true and target class, from the iterate and from the clean point, mixes the two
    (bias towards the clean point, at most alpha_max), overshoots by eta and steps back by beta after a
    success. A minimum-norm attack: success means its smallest adversarial point lies within eps.
    Cost: per example and target, 1 fwd + n_iter × (1 grad + 1 fwd); with `early_stop` an example leaves
    once within eps.

    >>> FABT()(model, x, y, ThreatModel(norm="linf", eps=8/255))  # doctest: +SKIP
    """

    name = "fab-t"
    n_iter: int = 100
    n_targets: int = 9
    restarts: int = 1
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    early_stop: bool = True  # leave once within eps (False: keep shrinking the norm, as a min-norm attack)

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def single_run(act: torch.Tensor, t: torch.Tensor, rank: int, restart: int) -> Pair:
            return self._single_run(ctx, x[act], y[act], t, act, restart, rank)

        return over_targets(ctx, x, self.n_targets, self.restarts, 3, single_run)

    def _single_run(
        self, ctx: Context, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, idx: torch.Tensor,
        restart: int, rank: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eps, bounds, ops, oracle = ctx.threat.eps, ctx.threat.bounds, ctx.ops, ctx.oracle
        n = len(x0)
        x1 = x0.clone()
        if restart > 0:
            noise = ctx.start_noise(x0, idx, self.name, rank, restart)
            x1 = (x0 + 0.5 * eps * ops.normalize(noise)).clamp(bounds.low, bounds.high)
        best = torch.full((n,), float("inf"), device=x0.device)
        adv = x0.clone()

        live = torch.arange(n, device=x0.device)
        for _ in range(self.n_iter):
            live = live[oracle.affordable(idx[live], 2)]
            if len(live) == 0:
                break
            _, val, g = oracle.value_and_grad(x1[live], idx[live], _target_minus_true(y[live], t[live]))
            xa, xo = x1[live].reshape(len(live), -1), x0[live].reshape(len(live), -1)
            w = g.reshape(len(live), -1)
            b = (w * xa).sum(1) - val  # the boundary z_t = z_y linearised at x1: <w, v> = b
            d1 = step_onto_plane(xa, w, b, bounds, ops.norm)
            d2 = step_onto_plane(xo, w, b, bounds, ops.norm)
            zero = torch.zeros_like(d1)
            a1 = ops.distance(d1, zero).clamp_min(1e-8)
            a2 = ops.distance(d2, zero).clamp_min(1e-8)
            alpha = (a1 / (a1 + a2)).clamp(0, self.alpha_max)[:, None]
            xn = ((1 - alpha) * (xa + self.eta * d1) + alpha * (xo + self.eta * d2)).clamp(bounds.low, bounds.high)
            x1[live] = xn.reshape(len(live), *x0.shape[1:])
            fooled = ctx.success(oracle.scores(x1[live], idx[live]), y[live], idx[live])
            dist = ops.distance(x1[live], x0[live])
            better = fooled & (dist < best[live])
            adv[live[better]], best[live[better]] = x1[live[better]], dist[better]
            back = live[fooled]
            x1[back] = x0[back] + self.beta * (x1[back] - x0[back])
            if self.early_stop:
                live = live[best[live] > eps]
        return adv, best <= eps


def _target_minus_true(y: torch.Tensor, t: torch.Tensor) -> LossFn:
    """z_t - z_y, whose zero set is the boundary between the true and the target class."""
    return lambda z: z.gather(1, t[:, None])[:, 0] - z.gather(1, y[:, None])[:, 0]
