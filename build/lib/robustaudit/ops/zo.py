"""Zeroth-order gradient estimation from mirrored probes, shared by NES and SPSA (spec black-box-attacks.md §4)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustaudit.types import Bounds

# loss(probes, idx) -> per-probe loss; every probe is one query of the example at idx
ProbeLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

MAX_ROWS = 4096  # probes per model call: examples are estimated in chunks so memory stays bounded


def probe_values(loss: ProbeLoss, probes: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """ℓ at probes [B, P, *shape] of the examples idx [B], in chunks of at most MAX_ROWS rows: [B, P]."""
    b, p = probes.shape[:2]
    per_chunk = max(1, MAX_ROWS // p)
    out = []
    for s in range(0, b, per_chunk):
        chunk = probes[s:s + per_chunk]
        values = loss(chunk.reshape(len(chunk) * p, *probes.shape[2:]), idx[s:s + per_chunk].repeat_interleave(p))
        out.append(values.reshape(len(chunk), p))
    return torch.cat(out)


def antithetic_gradient(
    loss: ProbeLoss, x: torch.Tensor, idx: torch.Tensor, u: torch.Tensor, delta: float, bounds: Bounds
) -> tuple[torch.Tensor, torch.Tensor]:
    """ĝ = 1/(2pδ) Σ_i [ℓ(x + δu_i) − ℓ(x − δu_i)]·u_i over p directions u: [B, p, *x.shape[1:]].

    Probes are clipped to the bounds before they are sent (2p queries per example). Returns (ĝ, mean probe loss).
    """
    p = u.shape[1]
    probes = torch.cat([x[:, None] + delta * u, x[:, None] - delta * u], 1).clamp(bounds.low, bounds.high)
    values = probe_values(loss, probes, idx)
    diff = (values[:, :p] - values[:, p:]).reshape(len(x), p, *([1] * (x.dim() - 1)))
    return (diff * u).sum(1) / (2 * p * delta), values.mean(1)


def random_gradient(loss: ProbeLoss, z: torch.Tensor, idx: torch.Tensor, q: int, mu: float,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """RGE: ĝ = (d/q) Σ_i [ℓ(z + μu_i) − ℓ(z)]/μ · u_i, u_i uniform on the unit sphere of R^d (q + 1 queries per
    example; spec certification-and-defences.md §2.2). z: [B, d]. Returns (ĝ, ℓ(z))."""
    b, d = z.shape
    u = torch.randn(b, q, d, generator=gen).to(z)
    u = u / u.norm(dim=2, keepdim=True).clamp_min(1e-12)
    values = probe_values(loss, torch.cat([z[:, None], z[:, None] + mu * u], 1), idx)
    return d / q * (((values[:, 1:] - values[:, :1]) / mu)[:, :, None] * u).sum(1), values[:, 0]


def coordinate_gradient(loss: ProbeLoss, z: torch.Tensor, idx: torch.Tensor, mu: float,
                        central: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CGE along every coordinate: central differences [ℓ(z + μe_j) − ℓ(z − μe_j)]/(2μ) (2d queries, as the
    official code) or forward differences [ℓ(z + μe_j) − ℓ(z)]/μ (d + 1 queries, the paper's formula).
    Returns (ĝ, ℓ(z)); the central form never queries z itself and gives the probes' mean (within O(μ²))."""
    b, d = z.shape
    e = mu * torch.eye(d, dtype=z.dtype, device=z.device).expand(b, d, d)
    if central:
        values = probe_values(loss, torch.cat([z[:, None] + e, z[:, None] - e], 1), idx)
        return (values[:, :d] - values[:, d:]) / (2 * mu), values.mean(1)
    values = probe_values(loss, torch.cat([z[:, None], z[:, None] + e], 1), idx)
    return (values[:, 1:] - values[:, :1]) / mu, values[:, 0]
