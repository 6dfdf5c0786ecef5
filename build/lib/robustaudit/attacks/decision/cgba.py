"""CGBA and CGBA-H (spec black-box-attacks.md §6): boundary search along a semicircular path."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from robustaudit.attacks.base import Context
from robustaudit.attacks.decision.boundary import Decision, DirectionFn, bisect, blend, boundary_normal
from robustaudit.attacks.decision.common import DecisionAttack
from robustaudit.ops.dct import as_image, idct2
from robustaudit.ops.lp import per_example
from robustaudit.types import Norm


@dataclass(frozen=True, kw_only=True)
class CGBA(DecisionAttack):
    """CGBA, L2, decision-based (top-1 labels); Reza, Rahmati, Wu & Dai, ICCV 2023. `cgba-h` for targeted.

    At the boundary point x_b, estimate the normal η from q_i = ⌊N₀√(i+1)⌋ probes in low-frequency DCT
    directions, then search the semicircle whose diameter is [x, x_b] in the plane of η and x_b − x: any
    boundary point found there is strictly closer to x. CGBA rotates towards η until a point is not
    adversarial, then bisects the angle; CGBA-H (high curvature, targeted) halves the angle towards x_b until
    a point is adversarial, then bisects radially from x.
    Units: σ and tol are the paper's normalised-ImageNet values converted to [0, 1] pixels (÷ ≈ 4.4).
    Cost: every label query (start search, probes, semicircle, bisections); stops at the budget or after
    `iterations`. The untargeted start search does not re-probe the clean input (the clean check did).

    >>> CGBA()(as_label_only(model), x, y, ThreatModel(norm="l2", eps=1.5, max_queries=1000))  # doctest: +SKIP
    """

    name = "cgba"
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.L2})
    high_curvature: ClassVar[bool] = False
    iterations: int = 93
    n0: int = 30
    sigma: float = 4.5e-5
    tol: float = 2.3e-5
    dim_reduction: int = 4
    max_probes: int = 39
    max_bisections: int = 100

    def search(self, ctx: Context, phi: Decision, x: torch.Tensor, start: torch.Tensor, act: torch.Tensor) -> None:
        xs = x[act]
        b = ctx.threat.bounds
        xb = self._radial(phi, xs, start[act], act)
        for i in range(self.iterations):
            live = ctx.oracle.affordable(act).nonzero()[:, 0]
            if len(live) == 0:
                return
            idx = act[live]
            counts = ctx.oracle.remaining(idx).clamp(max=int(self.n0 * math.sqrt(i + 1))).to(x.device)
            sigma = torch.full((len(live),), self.sigma, device=x.device, dtype=x.dtype)
            eta = boundary_normal(phi, idx, xb[live], counts, sigma, self._directions(ctx, idx, x, i),
                                  baseline=False)
            circle, theta = _semicircle(xs[live], xb[live], eta)
            if self.high_curvature:
                new, ok = self._halve_towards_boundary(phi, idx, circle, theta)
            else:
                new, ok = self._rotate_towards_normal(phi, idx, circle, xb[live])
            xb[live[ok]] = new[ok].clamp(b.low, b.high)

    def _rotate_towards_normal(
        self, phi: Decision, idx: torch.Tensor, circle: _Circle, xb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CGBA: β_k = (π/2)(1 − 2^−k) until a point is not adversarial, then bisect the angle from β = 0."""
        n, dev = len(idx), xb.device
        clean = self._probe(phi, idx, circle, lambda todo, k: torch.full((len(todo),), math.pi / 2 * (1 - 2.0**-k),
                                                                         device=dev), want_adversarial=False)
        ok = (clean > 0).nonzero()[:, 0]
        beta_c = clean[ok]
        dist = circle.diameter[ok]

        def point(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # t = 0: the clean probe; t = β_c: x_b
            return circle(ok[a], beta_c[a] - t)

        _, hi = bisect(phi, idx[ok], point, torch.zeros_like(beta_c), beta_c.clone(),
                       self.tol / dist.clamp_min(1e-12), self.max_bisections + 1)
        new = xb.clone()
        new[ok] = point(torch.arange(len(ok), device=dev), hi)
        found = torch.zeros(n, dtype=torch.bool, device=dev)
        found[ok] = True
        return new, found

    def _halve_towards_boundary(
        self, phi: Decision, idx: torch.Tensor, circle: _Circle, theta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CGBA-H: β_k = θ/2^k until a point is adversarial, then a radial bisection from x to it."""
        n, dev = len(idx), theta.device
        hit = self._probe(phi, idx, circle, lambda todo, k: theta[todo] / 2**k, want_adversarial=True)
        ok = (hit > 0).nonzero()[:, 0]
        b = phi.ctx.threat.bounds
        p = circle(ok, hit[ok]).clamp(b.low, b.high)
        new = circle.xs.clone()
        new[ok] = self._radial(phi, circle.xs[ok], p, idx[ok])
        found = torch.zeros(n, dtype=torch.bool, device=dev)
        found[ok] = True
        return new, found

    def _probe(
        self, phi: Decision, idx: torch.Tensor, circle: _Circle, beta_at: Callable[[torch.Tensor, int], torch.Tensor],
        *, want_adversarial: bool,
    ) -> torch.Tensor:
        """Probe circle(β_k), k = 1..max_probes, per example until the answer is `want_adversarial`; the β
        where it was (−1: never, or out of budget)."""
        found = torch.full((len(idx),), -1.0, device=idx.device)
        for k in range(1, self.max_probes + 1):
            todo = (found < 0).nonzero()[:, 0]
            todo = todo[phi.ctx.oracle.affordable(idx[todo])]
            if len(todo) == 0:
                break
            beta = beta_at(todo, k)
            adv = phi(circle(todo, beta), idx[todo])
            hit = adv if want_adversarial else ~adv
            found[todo[hit]] = beta[hit].to(found.dtype)
        return found

    def _radial(self, phi: Decision, xs: torch.Tensor, xr: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """BIN_SEARCH(x, x_r): midpoint bisection on the segment until ‖adv − cln‖ < tol or the call cap."""
        n, dev = len(idx), xs.device
        seg = blend(xs, xr)
        length = phi.ctx.ops.distance(xr, xs).to(dev).clamp_min(1e-12)
        _, hi = bisect(phi, idx, seg, torch.zeros(n, device=dev), torch.ones(n, device=dev), self.tol / length,
                       self.max_bisections)
        return seg(torch.arange(n, device=dev), hi)

    def _directions(self, ctx: Context, idx: torch.Tensor, x: torch.Tensor, it: int) -> DirectionFn:
        """RANDOM_DIRECTION(): N(0, 1) on the lowest 1/r of the DCT frequencies per axis, inverse DCT. Feature
        vectors (N×D inputs) have no spatial frequencies: there every direction is N(0, I)."""
        c, h, w = as_image(x.shape[1:])
        r = self.dim_reduction if x.dim() == 4 else 1
        bh, bw = max(h // r, 1), max(w // r, 1)

        def draw(rows: torch.Tensor, chunk: int, key: int) -> torch.Tensor:
            like = torch.empty(len(rows), chunk, c, bh, bw, device=x.device, dtype=x.dtype)
            z = ctx.noise("normal", like, idx[rows], self.name, it, key)  # the low-frequency block only
            return idct2(z, size=(h, w)).reshape(len(rows), chunk, *x.shape[1:])

        return draw


@dataclass(frozen=True, kw_only=True)
class CGBAH(CGBA):
    """CGBA-H: the high-curvature search of CGBA, for targeted attacks (see `CGBA`)."""

    name = "cgba-h"
    high_curvature: ClassVar[bool] = True


class _Circle:
    """point(β) = x + D·cos β·(cos β·v + sin β·w): the semicircle with diameter [x, x_b] in span(v, η)."""

    def __init__(self, xs: torch.Tensor, v: torch.Tensor, w: torch.Tensor, diameter: torch.Tensor) -> None:
        self.xs, self.v, self.w, self.diameter = xs, v, w, diameter

    def __call__(self, rows: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        xs = self.xs[rows]
        cb, sb = per_example(beta.cos(), xs).to(xs.dtype), per_example(beta.sin(), xs).to(xs.dtype)
        return xs + per_example(self.diameter[rows], xs).to(xs.dtype) * cb * (cb * self.v[rows] + sb * self.w[rows])


def _semicircle(xs: torch.Tensor, xb: torch.Tensor, eta: torch.Tensor) -> tuple[_Circle, torch.Tensor]:
    """The semicircle of CGBA and θ = angle(η, x_b − x). w is η's component orthogonal to v, normalised:
    the same plane and orientation as the paper's ζ = normalise(η̂ + μv), μ = sin θ·cot β − cos θ."""
    flat = (xb - xs).flatten(1)
    diameter = flat.norm(dim=1)
    v = (flat / diameter.clamp_min(1e-12)[:, None]).reshape_as(xs)
    e = eta.flatten(1)
    e = e / e.norm(dim=1).clamp_min(1e-12)[:, None]
    cos_t = (e * v.flatten(1)).sum(1).clamp(-1, 1)
    w = e - cos_t[:, None] * v.flatten(1)
    w = (w / w.norm(dim=1).clamp_min(1e-12)[:, None]).reshape_as(xs)
    return _Circle(xs, v, w, diameter), cos_t.acos()
