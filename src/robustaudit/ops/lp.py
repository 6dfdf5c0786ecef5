"""Per-norm mechanics, written once: distances, projection onto ball ∩ box, starts, step directions.

Each norm fills the same small set of hooks (Foolbox's template method); attacks call `ops_for(norm)`.
Norms are per example over all non-batch dimensions.
"""

from __future__ import annotations

import math

import torch

from robustaudit.types import Bounds, Norm

_TINY = 1e-12


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1)


def _per_example(v: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example vector (or scalar) to broadcast against `like` (masks stay boolean)."""
    if not torch.is_tensor(v):
        return torch.as_tensor(v, dtype=like.dtype, device=like.device)
    v = v.reshape(-1, *([1] * (like.dim() - 1)))
    return v if v.dtype == torch.bool else v.to(like.dtype)


class NormOps:
    """The hooks of one norm. `eps` may be a float or a per-example tensor."""

    norm: Norm

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def normalize(self, t: torch.Tensor) -> torch.Tensor:
        """t scaled to unit norm per example."""
        return t / _per_example(self.distance(t, torch.zeros_like(t)) + _TINY, t)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent direction of unit norm for a gradient g (sign for Linf, g/||g|| for L2)."""
        raise NotImplementedError

    def project(
        self, u: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor, bounds: Bounds
    ) -> torch.Tensor:
        """A point inside the eps-ball around x and inside the bounds (the APGD/Madry convention)."""
        raise NotImplementedError

    def sample_in_ball(self, x: torch.Tensor, eps: float, noise: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """PGD's random start from raw noise (uniform in [-1,1] for Linf, Gaussian for L2)."""
        raise NotImplementedError


class LinfOps(NormOps):
    norm = Norm.LINF

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _flat(a - b).abs().amax(1)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        return g.sign()

    def project(
        self, u: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor, bounds: Bounds
    ) -> torch.Tensor:
        e = _per_example(eps, x)
        return torch.minimum(torch.maximum(u, x - e), x + e).clamp(bounds.low, bounds.high)

    def sample_in_ball(self, x: torch.Tensor, eps: float, noise: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        return (x + eps * noise).clamp(bounds.low, bounds.high)


class L2Ops(NormOps):
    norm = Norm.L2

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _flat(a - b).norm(dim=1)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        return self.normalize(g)

    def project(
        self, u: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor, bounds: Bounds
    ) -> torch.Tensor:
        d = u - x
        n = self.distance(u, x)
        e = eps if torch.is_tensor(eps) else torch.full_like(n, float(eps))
        scale = torch.minimum(e.to(n.dtype), n) / (n + _TINY)
        return (x + d * _per_example(scale, d)).clamp(bounds.low, bounds.high)

    def sample_in_ball(self, x: torch.Tensor, eps: float, noise: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        # A point on the sphere of radius eps (Madry/APGD convention), then clipped to the bounds.
        return (x + eps * self.normalize(noise)).clamp(bounds.low, bounds.high)


def pixels(t: torch.Tensor) -> torch.Tensor:
    """N × channels × pixels view of a batch: an image N×C×H×W has H·W pixels of C channels; any other input
    (tables, N×D) has one channel per feature."""
    per_pixel = t.shape[1] if t.dim() == 4 else 1
    return t.reshape(len(t), per_pixel, math.prod(t.shape[1:]) // per_pixel)


class L0Ops(NormOps):
    """L0 over pixels (Sparse-RS, Wicker et al.): the number of pixels that differ in any channel."""

    norm = Norm.L0

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (pixels(a - b) != 0).any(1).sum(1).to(a.dtype if a.is_floating_point() else torch.float64)

    def normalize(self, t: torch.Tensor) -> torch.Tensor:
        """t scaled to unit largest entry per example (the L0 ball has no scale)."""
        return t / _per_example(_flat(t).abs().amax(1) + _TINY, t)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        return self.normalize(g)

    def project(
        self, u: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor, bounds: Bounds
    ) -> torch.Tensor:
        """Clip to the bounds, then keep the eps pixels whose change is largest (squared, summed over channels):
        the Euclidean projection onto {at most eps pixels changed} ∩ box (Croce & Hein's L0-PGD)."""
        u = u.clamp(bounds.low, bounds.high)
        d = pixels(u - x)
        score = d.pow(2).sum(1)
        k = (eps if torch.is_tensor(eps) else torch.full((len(x),), float(eps))).to(score.device).long()
        k = k.clamp(0, score.shape[1])
        rank = score.argsort(1, descending=True).argsort(1)
        keep = rank < k[:, None]
        return x + (d * keep[:, None]).reshape(x.shape)

    def sample_in_ball(self, x: torch.Tensor, eps: float, noise: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """eps pixels (those of largest noise) set to x + width·noise, clipped."""
        return self.project(x + bounds.width * noise, x, eps, bounds)


_OPS: dict[Norm, NormOps] = {Norm.LINF: LinfOps(), Norm.L2: L2Ops(), Norm.L0: L0Ops()}


def ops_for(norm: Norm) -> NormOps:
    return _OPS[Norm.parse(norm)]


def per_example(v: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Public form of the broadcasting helper."""
    return _per_example(v, like)
