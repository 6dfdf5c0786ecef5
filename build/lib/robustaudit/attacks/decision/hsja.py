"""HopSkipJumpAttack (spec black-box-attacks.md §5), batched in lockstep across examples."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from robustaudit.attacks.base import Context
from robustaudit.attacks.decision.boundary import Decision, bisect, blend, boundary_normal
from robustaudit.attacks.decision.common import DecisionAttack, unit_directions
from robustaudit.ops.lp import per_example
from robustaudit.types import Norm


@dataclass(frozen=True, kw_only=True)
class HopSkipJump(DecisionAttack):
    """HopSkipJumpAttack, L2/Linf, decision-based (top-1 labels); Chen, Jordan & Wainwright, IEEE S&P 2020.

    Minimum-norm: walks along the decision boundary, estimating its normal from the labels of B_t = 100·√t
    random probes, stepping along it with a geometric step-size search and returning to the boundary by
    bisection. Returns each example's smallest adversarial perturbation found; success where it is within eps.
    Cost: every label query is charged (start search, probes, step search, bisections); an example stops at
    its budget or after `iterations`; the last estimate uses what is left of the budget.

    >>> HopSkipJump()(as_label_only(model), x, y, ThreatModel(norm="l2", eps=1.5, max_queries=1000))  # doctest: +SKIP
    """

    name = "hsja"
    iterations: int = 64
    gamma: float = 1.0
    init_evals: int = 100
    max_evals: int = 10_000

    def noise_start(self, ctx: Context, phi: Decision, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform noise in the bounds until adversarial, then 10 bisection steps on the blend towards x."""
        b = ctx.threat.bounds
        start, found = self.search_noise(ctx, phi, x, lambda idx, k: b.low + (b.high - b.low) * (
            ctx.noise("uniform", x[idx], idx, self.name, "init", k) + 1) / 2)
        idx = found.nonzero()[:, 0]
        seg = blend(x[idx], start[idx])
        n = len(idx)
        _, hi = bisect(phi, idx, seg, torch.zeros(n, device=x.device), torch.ones(n, device=x.device),
                       torch.full((n,), 1e-3, device=x.device), 10)
        start[idx] = seg(torch.arange(n, device=x.device), hi)
        return start, found

    def search(self, ctx: Context, phi: Decision, x: torch.Tensor, start: torch.Tensor, act: torch.Tensor) -> None:
        linf = ctx.ops.norm == Norm.LINF
        d = x[0].numel()
        theta = self.gamma / d**2 if linf else self.gamma / d**1.5
        b = ctx.threat.bounds
        x0 = x[act]
        xt, dtilde = self._to_boundary(phi, x0, start[act], act, theta, linf)
        dist = ctx.ops.distance(xt, x0)
        for t in range(1, self.iterations + 1):
            live = ctx.oracle.affordable(act).nonzero()[:, 0]
            if len(live) == 0:
                return
            idx = act[live]
            if t == 1:
                delta = torch.full((len(live),), 0.1 * (b.high - b.low), device=x.device, dtype=x.dtype)
            else:
                delta = (d * theta if linf else math.sqrt(d) * theta) * dtilde[live]
            cap = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            counts = ctx.oracle.remaining(idx).clamp(max=cap).to(x.device)
            kind = "uniform" if linf else "normal"
            g = boundary_normal(phi, idx, xt[live], counts, delta, unit_directions(ctx, idx, x, kind, self.name, t),
                                baseline=True)
            v = g.sign() if linf else g / per_example(g.flatten(1).norm(dim=1).clamp_min(1e-12), g)
            # geometric progression: halve the step until the stepped point is adversarial
            xi = dist[live] / math.sqrt(t)
            stepped = torch.zeros(len(live), dtype=torch.bool, device=x.device)
            for _ in range(_MAX_HALVINGS):
                todo = (~stepped).nonzero()[:, 0]
                todo = todo[ctx.oracle.affordable(idx[todo])]
                if len(todo) == 0:
                    break
                adv = phi(xt[live[todo]] + per_example(xi[todo], v[todo]) * v[todo], idx[todo])
                stepped[todo[adv]] = True
                xi[todo[~adv]] /= 2
            ok = live[stepped]
            cand = (xt[ok] + per_example(xi[stepped], v[stepped]) * v[stepped]).clamp(b.low, b.high)
            xt[ok], dtilde[ok] = self._to_boundary(phi, x0[ok], cand, act[ok], theta, linf)
            dist[ok] = ctx.ops.distance(xt[ok], x0[ok])

    def _to_boundary(
        self, phi: Decision, x0: torch.Tensor, xs: torch.Tensor, idx: torch.Tensor, theta: float, linf: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """BIN_SEARCH(x0, xs) for the examples at idx: the boundary point, and d̃ = the distance of xs."""
        dtilde = phi.ctx.ops.distance(xs, x0).to(x0.dtype)
        n, dev = len(idx), x0.device
        if linf:

            def point(a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
                rr = per_example(r, xs[a]).to(x0.dtype)
                return torch.minimum(torch.maximum(xs[a], x0[a] - rr), x0[a] + rr)

            tol = torch.minimum(dtilde * theta, torch.full_like(dtilde, theta))
            _, hi = bisect(phi, idx, point, torch.zeros_like(dtilde), dtilde.clone(), tol, _MAX_BISECTIONS)
            return point(torch.arange(n, device=dev), hi), dtilde
        seg = blend(x0, xs)
        _, hi = bisect(phi, idx, seg, torch.zeros(n, device=dev), torch.ones(n, device=dev),
                       torch.full((n,), theta, device=dev), _MAX_BISECTIONS)
        return seg(torch.arange(n, device=dev), hi), dtilde


_MAX_HALVINGS = 40  # the official code has no cap; 2^-40 of the distance is far below float32 resolution
_MAX_BISECTIONS = 60
