"""SurFree (spec black-box-attacks.md §7.2): circles through the clean input, no gradient estimation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from robustaudit.attacks.base import Context
from robustaudit.attacks.decision.boundary import Decision, bisect, blend
from robustaudit.attacks.decision.common import DecisionAttack
from robustaudit.ops.dct import as_image, dct2, idct2
from robustaudit.types import Norm


@dataclass(frozen=True, kw_only=True)
class SurFree(DecisionAttack):
    """SurFree, L2, decision-based (top-1 labels); Maho, Furon & Le Merrer, CVPR 2021.

    From the current adversarial x_b at distance d, draw a direction v from the low-frequency DCT content of
    the clean input (random {−1, 0, +1} weights on tanh of its first half of zig-zag coefficients),
    orthogonalise it against recent directions, and try the circle z(θ) = x + d·cos θ·(cos θ·u + sin θ·v)
    at ±θ_max: on success bisect θ (θ_max grows by 1/ρ), else θ_max shrinks by ρ. Any point on that circle
    is closer than x_b. Simplification: the bisection on θ probes the mid angle only, not its mirror.
    Cost: every label query, the noise search and clean check included; stops at the budget or after `steps`
    successful updates (directions that fail are redrawn, at most 100 per step).

    >>> SurFree()(as_label_only(model), x, y, ThreatModel(norm="l2", eps=1.5, max_queries=1000))  # doctest: +SKIP
    """

    name = "surfree"
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.L2})
    steps: int = 100
    theta_max: float = 30.0
    rho: float = 0.95
    n_ortho: int = 100
    bs_steps: int = 7
    bs_gamma: float = 0.01

    def noise_start(self, ctx: Context, phi: Decision, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x + 0.5·N(0, I), clipped, redrawn until adversarial."""
        return self.search_noise(ctx, phi, x, lambda idx, k: x[idx] + 0.5 * ctx.noise(
            "normal", x[idx], idx, self.name, "init", k))

    def search(self, ctx: Context, phi: Decision, x: torch.Tensor, start: torch.Tensor, act: torch.Tensor) -> None:
        x0 = x[act]
        d = x0[0].numel()
        xb = self._line_search(phi, x0, start[act], act, d)
        flat = lambda t: t.reshape(len(t), -1)  # noqa: E731
        history = [flat(xb - x0) / flat(xb - x0).norm(dim=1, keepdim=True).clamp_min(1e-12)]  # u_0 stays first
        theta_max = torch.full((len(act),), math.radians(self.theta_max), device=x.device, dtype=torch.float64)
        basis = _dct_basis(x0)
        updates = torch.zeros(len(act), dtype=torch.long, device=x.device)
        for step in range(self.steps * _DRAWS_PER_STEP):
            live = (ctx.oracle.affordable(act) & (updates < self.steps)).nonzero()[:, 0]
            if len(live) == 0:
                break
            dist = flat(xb[live] - x0[live]).norm(dim=1)
            u = flat(xb[live] - x0[live]) / dist.clamp_min(1e-12)[:, None]
            signs = ctx.noise("uniform", basis[live], act[live], self.name, step)
            v = flat(idct2(basis[live] * (signs * 1.5).round().clamp(-1, 1)).reshape_as(x0[live]))
            for h in [*(t[live] for t in history[:1] + history[1:][-self.n_ortho:]), u]:  # Gram-Schmidt
                v = v - (v * h).sum(1, keepdim=True) * h
            v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)

            def circle(a: torch.Tensor, th: torch.Tensor, live: torch.Tensor = live, u: torch.Tensor = u,
                       v: torch.Tensor = v, dist: torch.Tensor = dist) -> torch.Tensor:
                c, s = th.cos().to(x.dtype)[:, None], th.sin().to(x.dtype)[:, None]
                z = flat(x0[live[a]]) + dist[a, None] * c * (c * u[a] + s * v[a])
                return z.reshape(len(a), *x.shape[1:])

            ang = torch.full((len(live),), math.nan, device=x.device, dtype=torch.float64)
            for sign in (1.0, -1.0):  # +θ_max, then −θ_max where +θ_max failed
                todo = ang.isnan().nonzero()[:, 0]
                todo = todo[ctx.oracle.affordable(act[live[todo]])]
                if len(todo):
                    th = sign * theta_max[live[todo]]
                    adv = phi(circle(todo, th), act[live[todo]])
                    ang[todo[adv]] = th[adv]
            hit = (~ang.isnan()).nonzero()[:, 0]
            miss = ang.isnan().nonzero()[:, 0]
            theta_max[live[miss]] *= self.rho
            theta_max[live[hit]] /= self.rho
            updates[live[hit]] += 1
            if len(hit):
                lower = ang[hit]
                upper = lower + lower.sign() * theta_max[live[hit]]  # assumed clean, not queried
                tol = self.bs_gamma * torch.ones_like(lower)

                def on_arc(a: torch.Tensor, t: torch.Tensor, hit: torch.Tensor = hit, lower: torch.Tensor = lower,
                           upper: torch.Tensor = upper, circle=circle) -> torch.Tensor:
                    return circle(hit[a], upper[a] + (lower[a] - upper[a]) * t)

                # t = 0: the upper angle (clean), t = 1: the adversarial one; stop on the gap in 1 − cos θ
                _, hi = bisect(phi, act[live[hit]], on_arc, torch.zeros_like(lower), torch.ones_like(lower),
                               tol / (upper - lower).abs().clamp_min(1e-12), self.bs_steps)
                xb[live[hit]] = on_arc(torch.arange(len(hit), device=x.device), hi).clamp(
                    ctx.threat.bounds.low, ctx.threat.bounds.high)
            new_dir = torch.zeros(len(act), d, device=x.device, dtype=x.dtype)
            new_dir[live] = v
            history.append(new_dir)
        live = ctx.oracle.affordable(act).nonzero()[:, 0]
        self._line_search(phi, x0[live], xb[live], act[live], d)

    def _line_search(self, phi: Decision, x0: torch.Tensor, xb: torch.Tensor, idx: torch.Tensor, d: int
                     ) -> torch.Tensor:
        """The boosted line search: bisect the blend from x towards x_b (tolerance γ/d^1.5)."""
        n = len(idx)
        seg = blend(x0, xb)
        _, hi = bisect(phi, idx, seg, torch.zeros(n, device=x0.device), torch.ones(n, device=x0.device),
                       torch.full((n,), self.bs_gamma / d**1.5, device=x0.device), self.bs_steps)
        return seg(torch.arange(n, device=x0.device), hi)


_DRAWS_PER_STEP = 100


def _dct_basis(x: torch.Tensor) -> torch.Tensor:
    """tanh of the clean inputs' DCT coefficients, kept on the first half in zig-zag order (others zero)."""
    c, h, w = as_image(x.shape[1:])
    coef = dct2(x.reshape(len(x), c, h, w))
    i = torch.arange(h, device=x.device)[:, None].expand(h, w)
    j = torch.arange(w, device=x.device)[None, :].expand(h, w)
    diag = (i + j).flatten()
    order = torch.argsort(diag * (h + w) + torch.where(diag % 2 == 0, j.flatten(), i.flatten()), stable=True)
    keep = torch.zeros(h * w, dtype=torch.bool, device=x.device)
    keep[order[: (h * w + 1) // 2]] = True
    return torch.tanh(coef) * keep.reshape(h, w)
