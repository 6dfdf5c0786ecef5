"""Sparse-RS for L0 over pixels (Croce, Andriushchenko, Singh, Flammarion, Hein, AAAI 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from robustaudit.attacks.base import Attack, Context
from robustaudit.ops.lp import pixels
from robustaudit.ops.schedules import square_p
from robustaudit.types import Access, Norm


@dataclass(frozen=True, kw_only=True)
class SparseRS(Attack):
    """Sparse-RS, L0 (pixels), score-based black box; Croce et al., AAAI 2022.

    Random search over sets M of k = eps pixels, each set to a random vertex of the box (every channel at its
    lower or upper bound). Each iteration swaps α(i)·k pixels of M for as many pixels outside it, with fresh random
    vertices, and keeps the proposal when the margin loss does not increase (the paper's acceptance rule: ties
    move). α(i) follows Square's piecewise halving schedule from `p_init`, rescaled to the iterations the budget
    allows. Cost: 1 query for the initial set and 1 per iteration, up to `n_queries`; a fooled example stops.

    >>> SparseRS(n_queries=1000)(as_score_only(model), x, y, ThreatModel(norm="l0", eps=10))  # doctest: +SKIP
    """

    name = "sparse-rs"
    requires = Access.SCORES
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.L0})
    n_queries: int = 10_000
    p_init: float = 0.3

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = ctx.threat.bounds
        n, c = len(x), pixels(x).shape[1]
        n_pix = pixels(x).shape[2]
        k = min(int(ctx.threat.eps), n_pix)
        everyone = torch.arange(n, device=x.device)
        # per example (noise keyed by its id): a random order of the pixels, the first k being M, and a random
        # vertex per pixel
        order = ctx.noise("uniform", torch.empty(n, n_pix, device=x.device), everyone, "order").argsort(1)
        colour = (ctx.noise("uniform", torch.empty(n, c, n_pix, device=x.device), everyone, "colour") > 0).to(x.dtype)
        loss_name = "ce" if ctx.threat.targeted else "margin"

        def make(perm: torch.Tensor, col: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            flat = pixels(x[rows]).clone()
            chosen = perm[:, :k]
            vertex = b.low + b.width * col.gather(2, chosen[:, None].expand(-1, c, -1))
            flat.scatter_(2, chosen[:, None].expand(-1, c, -1), vertex)
            return flat.reshape(x[rows].shape)

        loss = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        x_adv = x.clone()
        act = everyone[ctx.oracle.affordable(everyone)]
        if len(act):
            cand = make(order[act], colour[act], act)
            z = ctx.oracle.scores(cand, act)
            loss[act] = -ctx.loss(loss_name, y[act], act)(z).double()
            success[act] = ctx.success(z, y[act], act)
            x_adv[act] = cand
        budget = self.n_queries if ctx.oracle.max_queries is None else \
            min(self.n_queries, int(ctx.oracle.max_queries.max()))
        for it in range(1, max(budget, 1)):
            act = everyone[~success]
            act = act[ctx.oracle.affordable(act)]
            if len(act) == 0 or k == 0 or it >= self.n_queries:
                break
            m = max(1, round(square_p(it - 1, self.p_init, budget) * k))
            m = min(m, k, n_pix - k) if n_pix > k else 0
            perm, col = order[act].clone(), colour[act].clone()
            u = ctx.noise("uniform", torch.empty(len(act), n_pix + c * max(m, k), device=x.device), act, "it", it)
            fresh = (u[:, n_pix:].reshape(len(act), c, -1) > 0).to(x.dtype)
            if m:
                inside = u[:, :k].argsort(1)[:, :m]
                outside = k + u[:, k:n_pix].argsort(1)[:, :m]
                a, o = perm.gather(1, inside), perm.gather(1, outside)
                perm.scatter_(1, inside, o)
                perm.scatter_(1, outside, a)
                col.scatter_(2, o[:, None].expand(-1, c, -1), fresh[:, :, :m])
            else:  # every pixel is in M: new random vertices for all of them
                col.scatter_(2, perm[:, None, :k].expand(-1, c, -1), fresh[:, :, :k])
            cand = make(perm, col, act)
            z = ctx.oracle.scores(cand, act)
            new = -ctx.loss(loss_name, y[act], act)(z).double()
            fooled = ctx.success(z, y[act], act)
            better = (new <= loss[act]) | fooled
            rows = act[better]
            order[rows], colour[rows], loss[rows] = perm[better], col[better], new[better]
            x_adv[rows] = cand[better]
            success[rows] = fooled[better]
        return x_adv, success
