"""Zeroth-order gradient estimation from mirrored probes, shared by NES and SPSA (spec black-box-attacks.md §4)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustaudit.types import Bounds

# loss(probes, idx) -> per-probe loss; every probe is one query of the example at idx
ProbeLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

MAX_ROWS = 4096  # probes per model call: examples are estimated in chunks so memory stays bounded


def antithetic_gradient(
    loss: ProbeLoss, x: torch.Tensor, idx: torch.Tensor, u: torch.Tensor, delta: float, bounds: Bounds
) -> tuple[torch.Tensor, torch.Tensor]:
    """ĝ = 1/(2pδ) Σ_i [ℓ(x + δu_i) − ℓ(x − δu_i)]·u_i over p directions u: [B, p, *x.shape[1:]].

    Probes are clipped to the bounds before they are sent (2p queries per example). Returns (ĝ, mean probe loss).
    """
    b, p = u.shape[:2]
    grads, means = [], []
    per_chunk = max(1, MAX_ROWS // (2 * p))
    for s in range(0, b, per_chunk):
        xs, us, ids = x[s:s + per_chunk], u[s:s + per_chunk], idx[s:s + per_chunk]
        n = len(xs)
        probes = torch.cat([xs[:, None] + delta * us, xs[:, None] - delta * us], 1).clamp(bounds.low, bounds.high)
        values = loss(probes.reshape(n * 2 * p, *xs.shape[1:]), ids.repeat_interleave(2 * p)).reshape(n, 2 * p)
        diff = (values[:, :p] - values[:, p:]).reshape(n, p, *([1] * (xs.dim() - 1)))
        grads.append((diff * us).sum(1) / (2 * p * delta))
        means.append(values.mean(1))
    return torch.cat(grads), torch.cat(means)
