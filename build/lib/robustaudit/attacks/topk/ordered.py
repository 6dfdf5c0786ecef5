"""Ordered top-K targeted attacks: the shared outer optimisation of QuadAttack and its baselines (spec
gradient-attacks.md §8.3, as in the official code), and the success test.

Threat model: white-box (gradients); no eps-ball — a minimum-norm attack inside the input bounds, reported by the
l1 / l2 / linf size of its successful perturbations. Success: the K largest logits are exactly t_1..t_K, in order.

    δ ~ N(0, 2e-3²); λ = (λ_lo + λ_hi)/2 per example (binary search over S rounds)
    T AdamW steps on  Σ λ·L(h, z) + ||δ||²  (optimiser re-created after `warmup` steps),
    keeping the smallest successful δ; λ *= 0.75 where a new best success was found; δ = clip(x + δ) − x
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from robustaudit.attacks.topk.split import FeatureSplit
from robustaudit.errors import InputError
from robustaudit.ops.rng import per_example_noise
from robustaudit.types import Bounds


def ordered_topk_success(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """True where the K highest logits are exactly `targets`, in that order (ties count as failures)."""
    k = targets.shape[1]
    top = logits.topk(k + (1 if k < logits.shape[1] else 0), dim=1)
    ordered = (top.indices[:, :k] == targets).all(1)
    strict = (top.values[:, :-1] > top.values[:, 1:]).all(1)
    return ordered & strict


@dataclass(frozen=True)
class TopKResult:
    x_adv: torch.Tensor  # the smallest successful input per example (x itself where none succeeded)
    success: torch.Tensor
    gradients: torch.Tensor  # per example
    unsolved: torch.Tensor  # per example: iterations whose QP had no solution (QuadAttack only)

    def norms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        d = (self.x_adv - x).flatten(1)
        return {"l1": d.abs().sum(1), "l2": d.norm(dim=1), "linf": d.abs().amax(1)}


@dataclass(frozen=True, kw_only=True)
class OrderedTopKAttack:
    """The shared S × T optimisation; subclasses give the loss L(h, z) per example."""

    name: ClassVar[str] = ""
    search_steps: int = 1  # S
    steps: int = 60  # T
    lr: float = 0.01  # the official base_config has 0.0022, tuned for 224-px ImageNet inputs; small inputs need more
    lambda_high: float = 20.0
    warmup: int = 5
    init_std: float = 2e-3

    def __post_init__(self) -> None:
        if self.search_steps < 1 or self.steps < 1:
            raise InputError("search_steps and steps must be >= 1")

    def prepare(self, split: FeatureSplit, targets: torch.Tensor) -> Any:
        """Per-batch state computed once (e.g. the QP problems)."""
        return None

    def loss(self, h: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, state: Any,
             unsolved: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, split: FeatureSplit, x: torch.Tensor, targets: torch.Tensor, *, seed: int = 0,
                 bounds: Bounds | None = None, ids: torch.Tensor | None = None) -> TopKResult:
        b = bounds or Bounds()
        n, k = targets.shape
        if len(x) != n:
            raise InputError(f"{len(x)} inputs but {n} target lists")
        classes = split.linear.out_features
        if k < 1 or k > classes or int(targets.max()) >= classes or int(targets.min()) < 0:
            raise InputError(f"targets must be K <= {classes} class indices of the model")
        if any(len(set(t)) != k for t in targets.tolist()):
            raise InputError("each target list must hold distinct classes")
        ids = torch.arange(n) if ids is None else ids
        delta = (self.init_std * per_example_noise("normal", x, ids, seed, "topk", self.name).to(x)).requires_grad_()
        lo, hi = torch.zeros(n, device=x.device), torch.full((n,), self.lambda_high, device=x.device)
        best, best_energy = torch.zeros_like(x), torch.full((n,), float("inf"), device=x.device)
        grads, unsolved = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
        state = self.prepare(split, targets)
        for _ in range(self.search_steps):
            lam = (lo + hi) / 2
            won = torch.zeros(n, dtype=torch.bool, device=x.device)
            opt = torch.optim.AdamW([delta], lr=self.lr)
            for it in range(self.steps):
                if it == self.warmup:
                    opt = torch.optim.AdamW([delta], lr=self.lr)
                with torch.enable_grad():
                    h, z = split.features_and_logits(x + delta)
                    success = ordered_topk_success(z.detach(), targets)
                    energy = delta.detach().flatten(1).norm(dim=1)
                    better = success & (energy <= best_energy)
                    best[better], best_energy[better] = (x + delta.detach())[better], energy[better]
                    won |= success
                    total = (lam * self.loss(h, z, targets, state, unsolved)).sum() + (delta**2).sum()
                    opt.zero_grad()
                    total.backward()
                opt.step()
                grads += 1
                lam = torch.where(better, lam * 0.75, lam)
                with torch.no_grad():
                    delta.copy_((x + delta).clamp(b.low, b.high) - x)
            lo, hi = torch.where(won, lo, lam), torch.where(won, lam, hi)
        success = torch.isfinite(best_energy)
        return TopKResult(x_adv=torch.where(success.view(-1, *[1] * (x.dim() - 1)), best, x), success=success.cpu(),
                          gradients=grads, unsolved=unsolved)
