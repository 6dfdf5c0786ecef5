"""The frame every decision-based (minimum-norm) attack shares: start points, then the attack's own search."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from robustaudit.attacks.base import Attack, Context
from robustaudit.attacks.decision.boundary import Decision, DirectionFn, start_from_pool
from robustaudit.errors import InputError
from robustaudit.types import Access


@dataclass(frozen=True, kw_only=True)
class DecisionAttack(Attack):
    """Label-only, minimum-norm: run() finds a first adversarial point per example, then `search()` shrinks it.

    Every adversarial point the attack queries is offered to the tracker (`Decision`), so the result is each
    example's closest adversarial point found, and success means it lies within the threat's eps.
    Starting points: the attack's own noise search (untargeted), then inputs from the `starts` pool (or the
    batch itself) whose label differs from the example's, or is its target class.
    """

    requires: ClassVar[Access] = Access.LABELS
    init_tries: int = 100
    max_queries: int | None = None  # the attack's own cap per example, under the threat's budget

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.max_queries is not None:
            ctx.oracle.limit(self.max_queries)
        elif ctx.oracle.max_queries is None and not self.terminates:
            raise InputError(f"{self.name} runs until its query budget: give the threat model max_queries "
                             "(--budget) or the attack max_queries")
        phi = Decision(ctx, x, y)
        start = x.clone()
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        if not ctx.threat.targeted:
            start, found = self.noise_start(ctx, phi, x)
        need = (~found).nonzero()[:, 0]
        if len(need):
            pool = ctx.starts if ctx.starts is not None else (x, y)
            pts, ok = start_from_pool(phi, x, need, pool)
            start[need[ok]], found[need[ok]] = pts[ok], True
        act = found.nonzero()[:, 0]
        if len(act):
            with ctx.oracle.reserved(1):
                self.search(ctx, phi, x, start, act)
        self._confirm(ctx, phi, x)
        return phi.track.best, phi.track.dist <= ctx.threat.eps

    def _confirm(self, ctx: Context, phi: Decision, x: torch.Tensor) -> None:
        """Re-query each example's best point (1 query, kept in reserve during the search): a point within float
        noise of the boundary can flip with the batch it is evaluated in. One that flips is pushed outwards
        along its ray, 0.1% at a time, while budget lasts; one never confirmed is dropped."""
        pending = phi.track.found().nonzero()[:, 0]
        for k in range(_CONFIRMATIONS):
            pending = pending[ctx.oracle.affordable(pending)]
            if len(pending) == 0:
                break
            pts = x[pending] + (1 + 1e-3 * k) * (phi.track.best[pending] - x[pending])
            ok = phi.test(pts, pending)
            phi.track.replace(pending[ok], pts[ok].clamp(ctx.threat.bounds.low, ctx.threat.bounds.high))
            pending = pending[~ok]
        phi.track.forget(pending)

    def noise_start(self, ctx: Context, phi: Decision, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Untargeted start: x + k·0.02·N(0, I), k = 1, 2, ..., until adversarial (CGBA's and GeoDA's search;
        the unperturbed input is not probed again: the clean check already did)."""
        return self.search_noise(ctx, phi, x, lambda idx, k: x[idx] + 0.02 * (k + 1) * ctx.noise(
            "normal", x[idx], idx, self.name, "init", k))

    def search_noise(
        self, ctx: Context, phi: Decision, x: torch.Tensor, draw: Callable[[torch.Tensor, int], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw k = 0, 1, ... candidates `draw(idx, k)` (clipped to the bounds) for the examples at idx still
        without one, until adversarial, `init_tries` draws or the budget. Returns (start, found)."""
        b = ctx.threat.bounds
        start, found = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for k in range(self.init_tries):
            idx = (~found).nonzero()[:, 0]
            idx = idx[ctx.oracle.affordable(idx)]
            if len(idx) == 0:
                break
            cand = draw(idx, k).clamp(b.low, b.high)
            adv = phi(cand, idx)
            start[idx[adv]], found[idx[adv]] = cand[adv], True
        return start, found

    @property
    def terminates(self) -> bool:
        """Whether the search ends by itself (a number of iterations) rather than only at a query budget."""
        return True

    @abstractmethod
    def search(self, ctx: Context, phi: Decision, x: torch.Tensor, start: torch.Tensor, act: torch.Tensor) -> None:
        """Shrink the perturbation of the examples at `act`, which start from the adversarial `start[act]`."""


_CONFIRMATIONS = 3


def unit_directions(ctx: Context, idx: torch.Tensor, x: torch.Tensor, kind: str, *keys: object) -> DirectionFn:
    """Random probe directions of unit L2 norm for the examples at idx ('normal' or 'uniform' noise)."""

    def draw(rows: torch.Tensor, chunk: int, key: int) -> torch.Tensor:
        like = torch.empty(len(rows), chunk, *x.shape[1:], device=x.device, dtype=x.dtype)
        u = ctx.noise(kind, like, idx[rows], *keys, key)
        norms = u.flatten(2).norm(dim=2).clamp_min(1e-12)
        return u / norms.view(*norms.shape, *([1] * (u.dim() - 2)))

    return draw
