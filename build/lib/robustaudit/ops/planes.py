"""Minimal steps onto a hyperplane inside a box (FAB's projections, spec gradient-attacks.md §4).

For a point u, a normal w and an offset b, the step d moves u onto {v : <w, v> = b} while u + d stays in
[low, high]^D, with the smallest Linf (every free coordinate moves by the same amount until it hits the
box) or L2 norm (d_i proportional to |w_i| until it hits the box). Both reduce to finding the root of a
non-decreasing piecewise-linear function, solved exactly by sorting its breakpoints.
"""

from __future__ import annotations

import torch

from robustaudit.types import Bounds, Norm


def step_onto_plane(
    u: torch.Tensor, w: torch.Tensor, b: torch.Tensor, bounds: Bounds, norm: Norm
) -> torch.Tensor:
    """Batched minimal-norm step (u, w: [B, D]; b: [B]). If the plane misses the box, go to the closest corner."""
    r = (u * w).sum(1) - b
    side = torch.where(r >= 0, 1.0, -1.0).to(u.dtype)
    need = r.abs()
    direction = -side[:, None] * w.sign()
    cap = torch.where(direction > 0, bounds.high - u, u - bounds.low).clamp_min(0)
    aw = w.abs()
    cap = torch.where(aw > 0, cap, torch.zeros_like(cap))
    # g(λ) = Σ_i aw_i · min(λ·m_i, cap_i), with m_i = 1 (Linf) or aw_i (L2): breakpoints λ_i = cap_i / m_i.
    mult = torch.ones_like(aw) if norm == Norm.LINF else aw
    slope = aw * mult
    brk = torch.where(mult > 0, cap / mult.clamp_min(1e-30), torch.zeros_like(cap))
    brk_sorted, order = brk.sort(1)
    slope_sorted = slope.gather(1, order)
    sat_sorted = (aw * cap).gather(1, order)
    cum_sat = sat_sorted.cumsum(1)
    tail = slope.sum(1, keepdim=True) - slope_sorted.cumsum(1)
    g_at = cum_sat + brk_sorted * tail  # g at each breakpoint (non-decreasing)
    j = torch.searchsorted(g_at.contiguous(), need[:, None].contiguous())[:, 0]
    feasible = j < u.shape[1]
    jm1 = (j - 1).clamp_min(0)[:, None]
    prev_sat = torch.where(j > 0, cum_sat.gather(1, jm1)[:, 0], torch.zeros_like(need))
    prev_tail = torch.where(j > 0, tail.gather(1, jm1)[:, 0], slope.sum(1))
    lam = ((need - prev_sat) / prev_tail.clamp_min(1e-30)).clamp_min(0)
    move = torch.minimum(lam[:, None] * mult, cap)
    move = torch.where(feasible[:, None], move, cap)
    return direction * move
