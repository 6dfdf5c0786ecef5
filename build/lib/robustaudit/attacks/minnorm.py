"""Minimum-norm bookkeeping: each example's closest adversarial point so far, and when it was found.

Decision-based attacks return the smallest perturbation found within the budget (spec black-box-attacks.md §1,
"Reporting"); the tracker also answers "how small was it after B queries" for the norm-versus-queries curves.
"""

from __future__ import annotations

import torch

from robustaudit.ops.lp import NormOps

#: Query budgets at which the median minimum norm is reported (examples not yet broken count as infinite).
CURVE_BUDGETS = (100, 250, 500, 1000, 2500)


class MinNorm:
    """Per example (positions 0..n-1 of an attack's batch): best adversarial point, its distance, the history."""

    def __init__(self, x: torch.Tensor, ops: NormOps) -> None:
        self.x = x
        self.ops = ops
        self.best = x.clone()
        self.dist = torch.full((len(x),), float("inf"), dtype=torch.float64, device=x.device)
        self._events: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (idx, queries, distance)

    def update(self, points: torch.Tensor, idx: torch.Tensor, queries: torch.Tensor) -> None:
        """Offer adversarial `points` of the examples at idx (repeats allowed); `queries` is what each example
        had spent once they were known adversarial. Keeps, per example, the closest one if it improves."""
        if len(idx) == 0:
            return
        d = self.ops.distance(points.double(), self.x[idx].double())
        low = torch.full_like(self.dist, float("inf")).scatter_reduce(0, idx, d, "amin")
        pos = torch.arange(len(idx), device=idx.device)
        hit = d == low[idx]
        first = torch.full((len(self.dist),), len(idx), dtype=torch.long, device=idx.device)
        first = first.scatter_reduce(0, idx[hit], pos[hit], "amin")  # one point per example: the first closest
        better = (first < len(idx)) & (low < self.dist)
        rows = first[better]
        self.best[better] = points[rows].to(self.best.dtype)
        self.dist[better] = low[better]
        self._events.append((idx[rows].cpu(), queries[rows.cpu()].cpu(), low[better].cpu()))

    def replace(self, idx: torch.Tensor, points: torch.Tensor) -> None:
        """Swap the best points of the examples at idx for confirmed ones (the history keeps the original)."""
        self.best[idx] = points.to(self.best.dtype)
        self.dist[idx] = self.ops.distance(points.double(), self.x[idx].double())

    def forget(self, idx: torch.Tensor) -> None:
        """Drop the examples at idx: their best point could not be confirmed adversarial."""
        self.best[idx] = self.x[idx]
        self.dist[idx] = float("inf")

    def found(self) -> torch.Tensor:
        return torch.isfinite(self.dist)

    def at_budgets(self, budgets: tuple[int, ...] = CURVE_BUDGETS) -> dict[int, torch.Tensor]:
        """Each example's best distance among the points found within B queries, for every budget B (never below
        its final distance: a point replaced after confirmation, or dropped, counts as it ended)."""
        n = len(self.dist)
        out = {}
        idx = torch.cat([e[0] for e in self._events]) if self._events else torch.zeros(0, dtype=torch.long)
        q = torch.cat([e[1] for e in self._events]) if self._events else torch.zeros(0, dtype=torch.long)
        d = torch.cat([e[2] for e in self._events]) if self._events else torch.zeros(0, dtype=torch.float64)
        for b in budgets:
            keep = q <= b
            found = torch.full((n,), float("inf"), dtype=torch.float64).scatter_reduce(0, idx[keep], d[keep], "amin")
            out[b] = torch.maximum(found, self.dist.cpu())
        return out
