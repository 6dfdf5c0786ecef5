"""RayS (spec black-box-attacks.md §7.3), the batched `RayS.py` variant, in lockstep across examples."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from robustaudit.attacks.base import Context
from robustaudit.attacks.decision.boundary import Decision, bisect
from robustaudit.attacks.decision.common import DecisionAttack
from robustaudit.ops.lp import per_example
from robustaudit.types import Norm


@dataclass(frozen=True, kw_only=True)
class RayS(DecisionAttack):
    """RayS, Linf, decision-based (top-1 labels); Chen & Gu, KDD 2020.

    Searches sign vectors s ∈ {−1, +1}^D for the ray x + r·s/√D that leaves the class soonest: flips blocks
    of the best direction, hierarchically (level L: 2^L contiguous blocks), one query to test a candidate at
    the current best radius and a bisection (tol 1e-3 in radius) for one that passes. No gradient, no noise
    search: the start is the saturated image along the first direction (all −1), as `RayS.py` does.
    Cost: 1 query per candidate plus its bisection; no early stop (the leaderboard protocol): it keeps
    shrinking until the budget, or `max_queries` per example when the threat sets none.

    >>> RayS()(as_label_only(model), x, y, ThreatModel(norm="linf", eps=8 / 255, max_queries=10_000))  # doctest: +SKIP
    """

    name = "rays"
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.LINF})
    max_queries: int | None = 10_000
    tol: float = 1e-3

    @property
    def terminates(self) -> bool:
        return False

    def noise_start(self, ctx: Context, phi: Decision, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """No noise search: RayS finds its first adversarial ray itself (every example goes to `search`)."""
        return x.clone(), torch.ones(len(x), dtype=torch.bool, device=x.device)

    def search(self, ctx: Context, phi: Decision, x: torch.Tensor, start: torch.Tensor, act: torch.Tensor) -> None:
        b = ctx.threat.bounds
        n, dim = len(act), x[0].numel()
        shape = x.shape[1:]
        x0 = x[act]
        best_dir = torch.ones(n, dim, device=x.device, dtype=x.dtype)
        radius = torch.full((n,), math.inf, device=x.device, dtype=torch.float64)
        level, block = 0, 0
        while True:
            live = ctx.oracle.affordable(act).nonzero()[:, 0]
            if len(live) == 0:
                return
            size = math.ceil(dim / 2**level)
            cand = best_dir[live].clone()
            cand[:, block * size:(block + 1) * size] *= -1

            def point(a: torch.Tensor, r: torch.Tensor, cand: torch.Tensor = cand, live: torch.Tensor = live
                      ) -> torch.Tensor:
                step = per_example(r / math.sqrt(dim), x0[live[a]]).to(x.dtype) * cand[a].reshape(-1, *shape)
                return (x0[live[a]] + step).clamp(b.low, b.high)

            # a finite best radius is tested as is; while there is none, the saturated image (radius √D)
            test_r = torch.where(radius[live].isinf(), torch.full_like(radius[live], math.sqrt(dim)), radius[live])
            adv = phi(point(torch.arange(len(live), device=x.device), test_r), act[live])
            ok = adv.nonzero()[:, 0]
            if len(ok):

                def at_ok(a: torch.Tensor, r: torch.Tensor, ok: torch.Tensor = ok) -> torch.Tensor:
                    return point(ok[a], r)

                _, hi = bisect(phi, act[live[ok]], at_ok,
                               torch.zeros(len(ok), device=x.device, dtype=torch.float64), test_r[ok].clone(),
                               torch.full((len(ok),), self.tol, device=x.device, dtype=torch.float64), 64)
                better = hi < radius[live[ok]]
                rows = live[ok[better]]
                radius[rows], best_dir[rows] = hi[better], cand[ok[better]]
            block += 1
            if block * size >= dim:  # next level; after single coordinates, start over from the whole vector
                level, block = (level + 1, 0) if size > 1 else (0, 0)
