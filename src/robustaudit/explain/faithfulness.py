"""Which explanation to trust: each attribution read as a local linear model g on the neighbourhood the user names,
its LFA loss on fresh samples from it, and the perturbation tests PGI / PGU (Han, Srinivas & Lakkaraju 2022).

A neighbourhood maps random interpretable vectors to inputs x' and to the design U with g(x') = b + U·a (a: the
attribution, per element):
- "gaussian:σ": x' = x + ε, ε ~ N(0, σ²) per element, U = ε (the additive view: gradient-like methods fit it);
- "removal": each feature kept or set to the baseline with probability ½, U = the kept indicator per element
  (the binary view of LIME and KernelSHAP);
- "scaling": x' = baseline + α·(x − baseline), α ~ U(0, 1), U = α·1 (the path of IG and Gradient × Input).
The loss is min_b mean (f(x') − b − U·a)², the model's score of the explained class. PGI perturbs the k most
important features (by |sum of a over the feature|) the neighbourhood's way and measures mean |f(x) − f(x')| (higher
is more faithful); PGU the k least important (lower is better).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from robustaudit.errors import InputError
from robustaudit.explain.features import per_feature

Scores = Callable[[torch.Tensor], torch.Tensor]  # inputs -> the explained class's score, one per row


@dataclass(frozen=True)
class Neighbourhood:
    kind: str
    sigma: float = 0.1
    baseline: float = 0.0

    @staticmethod
    def parse(text: str, baseline: float = 0.0) -> Neighbourhood:
        name, _, arg = text.strip().lower().partition(":")
        if name == "gaussian":
            try:
                sigma = float(arg) if arg else 0.1
            except ValueError:
                raise InputError(f"gaussian:σ needs a number, got {arg!r}") from None
            if not sigma > 0:
                raise InputError(f"gaussian:σ needs σ > 0, got {arg}")
            return Neighbourhood("gaussian", sigma, baseline)
        if name in ("removal", "scaling") and not arg:
            return Neighbourhood(name, baseline=baseline)
        raise InputError(f"unknown neighbourhood {text!r}: use gaussian:SIGMA, removal or scaling")

    def __str__(self) -> str:
        return f"gaussian:{self.sigma:g}" if self.kind == "gaussian" else self.kind

    def sample(self, x: torch.Tensor, mask: torch.Tensor, n: int, g: torch.Generator) -> tuple[torch.Tensor,
                                                                                                torch.Tensor]:
        """(n perturbed inputs, n × elements design U) around one input x (no batch dimension)."""
        if self.kind == "gaussian":
            eps = torch.randn(n, *x.shape, generator=g, dtype=torch.float64) * self.sigma
            return (x.double() + eps).to(x.dtype), eps.flatten(1)
        if self.kind == "removal":
            keep = torch.rand(n, int(mask.max()) + 1, generator=g) < 0.5
            kept = keep[:, mask.flatten()].reshape(n, *x.shape)
            return torch.where(kept, x, torch.full_like(x, self.baseline)), kept.flatten(1).double()
        alpha = torch.rand(n, generator=g, dtype=torch.float64)
        xs = self.baseline + alpha.reshape(-1, *[1] * x.dim()) * (x.double() - self.baseline)
        return xs.to(x.dtype), alpha[:, None].expand(n, x.numel()).clone()

    def perturb_features(self, x: torch.Tensor, mask: torch.Tensor, chosen: torch.Tensor, draws: int,
                         g: torch.Generator) -> torch.Tensor:
        """`draws` inputs with the chosen features perturbed the neighbourhood's way (removal: one input)."""
        sel = torch.isin(mask, chosen)
        if self.kind == "removal":
            return torch.where(sel, torch.full_like(x, self.baseline), x)[None]
        if self.kind == "gaussian":
            eps = torch.randn(draws, *x.shape, generator=g, dtype=x.dtype) * self.sigma
            return x + eps * sel
        alpha = torch.rand(draws, generator=g, dtype=x.dtype).reshape(-1, *[1] * x.dim())
        return torch.where(sel, self.baseline + alpha * (x - self.baseline), x)


def lfa_loss(f: torch.Tensor, u: torch.Tensor, a: torch.Tensor) -> float:
    """min over b of the mean squared residual of f ≈ b + U·a."""
    r = f.double() - u.double() @ a.flatten().double()
    return float(((r - r.mean()) ** 2).mean())


def evaluate(scores: Scores, x: torch.Tensor, f0: float, mask: torch.Tensor, attributions: dict[str, torch.Tensor],
             nb: Neighbourhood, *, n: int, k: int, draws: int, g: torch.Generator) -> dict[str, dict[str, float]]:
    """Per method (f0: the explained score at x): LFA loss on n fresh samples (the same samples for every method),
    PGI and PGU at k features."""
    xs, u = nb.sample(x, mask, n, g)
    f = scores(xs)
    out: dict[str, dict[str, float]] = {}
    n_features = int(mask.max()) + 1
    k = max(1, min(k, n_features))
    for name, a in attributions.items():
        order = per_feature(a, mask).abs().argsort(descending=True)
        top, bottom = order[:k], order[-k:]
        pgi = float((scores(nb.perturb_features(x, mask, top, draws, g)) - f0).abs().mean())
        pgu = float((scores(nb.perturb_features(x, mask, bottom, draws, g)) - f0).abs().mean())
        out[name] = {"lfa_loss": lfa_loss(f, u, a), "pgi": pgi, "pgu": pgu}
    return out
