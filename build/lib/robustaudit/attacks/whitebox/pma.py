"""The Probability Margin Attack (spec gradient-attacks.md §5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustaudit.attacks.base import Attack, Context, FirstSuccess
from robustaudit.ops.schedules import pma_step
from robustaudit.oracle import LossFn


@dataclass(frozen=True, kw_only=True)
class PMA(Attack):
    """PMA, Linf (L2 by the same steps), white box; Xie et al., "Towards Million-Scale Adversarial Robustness
    Evaluation With Stronger Individual Attacks", CVPR 2025.

    Sign-gradient ascent on the probability margin p_m - p_y with two sub-runs per restart (exploring
    with -p_y, then with p_m, each finishing on the full margin) and a cosine step restarted at K/2.
    Cost: 1 fwd (clean) + restarts × 2 × (steps grads + 1 fwd) per example that stays robust; a fooled
    example leaves the batch at once.

    >>> PMA()(model, x, y, ThreatModel(norm="linf", eps=8/255))  # doctest: +SKIP
    """

    name = "pma"
    steps: int = 100
    restarts: int = 1
    first_step_reverse: bool = True  # the official code's first step ascends p_y; kept for fidelity
    early_stop: bool = True  # a fooled example leaves the batch at once (off: cost grows, result unchanged)

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps, bounds = ctx.threat.eps, ctx.threat.bounds
        found = FirstSuccess(x, early_stop=self.early_stop)
        for restart in range(self.restarts):
            for sub_run in (0, 1):
                act = found.remaining()
                if len(act) == 0:
                    return found.x_adv, found.success
                xc = ctx.ops.sample_in_ball(x[act], eps, ctx.start_noise(x[act], act, self.name, restart, sub_run),
                                            bounds)  # clamped start (the official code's is not)
                for i in range(self.steps + 1):
                    live = ctx.oracle.affordable(act)
                    act, xc = act[live], xc[live]
                    if len(act) == 0:
                        break
                    if i == self.steps:
                        found.update(ctx, ctx.oracle.scores(xc, act), xc, act, y)
                        break
                    loss_fn = self._stage_loss(ctx, i, sub_run, y[act], act)
                    z, _, g = ctx.oracle.value_and_grad(xc, act, loss_fn)
                    keep = found.update(ctx, z, xc, act, y)
                    step = pma_step(i, self.steps, eps)
                    act, xc = act[keep], ctx.project(xc + step * ctx.ops.direction(g), x[act])[keep]
        return found.x_adv, found.success

    def _stage_loss(self, ctx: Context, i: int, sub_run: int, y: torch.Tensor, idx: torch.Tensor) -> LossFn:
        """i = 0: +p_y (reversed first step); i < K/2: -p_y (sub-run 0) or p_m (sub-run 1); then p_m - p_y."""
        t = ctx.target[idx] if ctx.threat.targeted and ctx.target is not None else None

        def parts(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p = z.softmax(1)
            py = p.gather(1, y[:, None])[:, 0]
            pm = p.gather(1, t[:, None])[:, 0] if t is not None else p.scatter(1, y[:, None], -1.0).amax(1)
            return pm, py

        if i == 0 and self.first_step_reverse:
            return lambda z: parts(z)[1]
        if i < self.steps / 2:
            return (lambda z: parts(z)[0]) if sub_run == 1 else (lambda z: -parts(z)[1])
        return ctx.loss("pm", y, idx)
