"""Mechanics shared by the decision-based attacks (spec black-box-attacks.md §5-§7): the counted adversarial
test φ, lockstep bisection, Monte Carlo estimation of the boundary normal, and starting points.

Everything works on the examples of an attack's batch in lockstep: each call carries the positions `idx` of
the examples its points belong to, examples whose budget runs out simply drop out of the next call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustaudit.attacks.base import Context
from robustaudit.attacks.minnorm import MinNorm
from robustaudit.ops.lp import per_example

PointFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (positions in the active set, parameter) -> points
DirectionFn = Callable[[torch.Tensor, int, int], torch.Tensor]  # (example positions, probes, chunk key) -> unit dirs


class Decision:
    """φ: is each point adversarial? One counted label query per point; adversarial points feed the tracker."""

    def __init__(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> None:
        self.ctx, self.y = ctx, y
        self.track = MinNorm(x, ctx.ops)
        ctx.min_norm = self.track

    def __call__(self, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        b = self.ctx.threat.bounds
        points = points.clamp(b.low, b.high)
        adv = self._query(points, idx)
        self.track.update(points[adv], idx[adv], self.ctx.oracle.queries[idx[adv].cpu()])
        return adv

    def test(self, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """φ without the tracker: one counted label query per point (clipped to the bounds)."""
        b = self.ctx.threat.bounds
        return self._query(points.clamp(b.low, b.high), idx)

    def _query(self, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        labels = self.ctx.oracle.labels(points, idx)
        t = None if self.ctx.target is None else self.ctx.target[idx]
        return self.ctx.threat.success_of_labels(labels, self.y[idx], t)


def bisect(
    phi: Decision, idx: torch.Tensor, point: PointFn, lo: torch.Tensor, hi: torch.Tensor, tol: torch.Tensor,
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoint bisection of a scalar parameter, per example: point(hi) adversarial, point(lo) not; stops when
    hi - lo <= tol, after max_steps probes, or when the example's budget is spent. Returns (lo, hi)."""
    lo, hi = lo.clone(), hi.clone()
    for _ in range(max_steps):
        act = ((hi - lo) > tol).nonzero()[:, 0]
        act = act[phi.ctx.oracle.affordable(idx[act])]
        if len(act) == 0:
            break
        mid = (lo[act] + hi[act]) / 2
        adv = phi(point(act, mid), idx[act])
        hi[act[adv]] = mid[adv]
        lo[act[~adv]] = mid[~adv]
    return lo, hi


def blend(x0: torch.Tensor, x1: torch.Tensor) -> PointFn:
    """Points (1 - a)·x0 + a·x1 on the segments between rows of x0 and x1."""
    return lambda act, a: x0[act] + per_example(a, x0[act]).to(x0.dtype) * (x1[act] - x0[act])


def boundary_normal(
    phi: Decision, idx: torch.Tensor, xb: torch.Tensor, counts: torch.Tensor, delta: torch.Tensor,
    directions: DirectionFn, *, baseline: bool, chunk: int = 32,
) -> torch.Tensor:
    """Monte Carlo estimate of the boundary normal at the points xb: mean of φ(xb + δu)·u over counts[i]
    random unit directions u per example (probes clipped to the bounds, u recomputed after clipping).
    With `baseline`, HSJA's variance reduction: subtract the mean of φ, or use ±mean(u) when all φ agree.
    Probes go in chunks of `chunk` per example (noise keyed by chunk), so results do not depend on the batch."""
    b = phi.ctx.threat.bounds
    n = len(idx)
    s_phi_u = torch.zeros_like(xb)
    s_u = torch.zeros_like(xb)
    s_phi = torch.zeros(n, device=xb.device)
    for k in range(0, int(counts.max()) if n else 0, chunk):
        rows = (counts > k).nonzero()[:, 0]
        take = (counts[rows] - k).clamp(max=chunk)
        u = directions(rows, chunk, k // chunk)  # [rows, chunk, *shape], unit norm
        keep = torch.arange(chunk, device=xb.device)[None, :] < take[:, None]
        r, j = keep.nonzero(as_tuple=True)
        d = per_example(delta[rows][r], u[r, j])
        probe = (xb[rows][r] + d * u[r, j]).clamp(b.low, b.high)
        uu = (probe - xb[rows][r]) / d
        sign = phi(probe, idx[rows][r]).to(xb.dtype) * 2 - 1
        pos = rows[r]
        s_phi_u.index_add_(0, pos, per_example(sign, uu) * uu)
        s_u.index_add_(0, pos, uu)
        s_phi.index_add_(0, pos, sign)
    m = counts.clamp(min=1).to(xb.dtype)
    mean_phi_u = s_phi_u / per_example(m, xb)
    if not baseline:
        return mean_phi_u
    mean_u, mean_phi = s_u / per_example(m, xb), s_phi / m
    g = mean_phi_u - per_example(mean_phi, xb) * mean_u
    all_same = mean_phi.abs() >= 1 - 1e-9
    return torch.where(per_example(all_same, xb), per_example(mean_phi, xb) * mean_u, g)


def start_from_pool(
    phi: Decision, x: torch.Tensor, need: torch.Tensor, pool: tuple[torch.Tensor, torch.Tensor], tries: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Starting points for the examples at `need` taken from a pool of inputs (the user's `--starts`, or the
    batch itself): candidates whose label differs from the example's (untargeted) or equals its target are
    queried (1 query each) until one is adversarial. Returns (points, found) for `need`."""
    px, py = pool
    ctx = phi.ctx
    out = x[need].clone()
    found = torch.zeros(len(need), dtype=torch.bool, device=x.device)
    for i, e in enumerate(need.tolist()):
        if ctx.target is not None:
            cand = (py == ctx.target[e].to(py.device)).nonzero()[:, 0]
        else:
            cand = (py != phi.y[e].to(py.device)).nonzero()[:, 0]
        for c in cand[:tries].tolist():
            one = torch.tensor([e], device=x.device)
            if not bool(phi.ctx.oracle.affordable(one)):
                break
            if bool(phi(px[c:c + 1].to(x.device, x.dtype), one)):
                out[i], found[i] = px[c].to(x.device, x.dtype), True
                break
    return out, found
