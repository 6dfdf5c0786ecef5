"""Randomized smoothing (Cohen, Rosenfeld, Kolter, ICML 2019; spec certification-and-defences.md §1): CERTIFY and
PREDICT for the smoothed classifier g(x) = argmax_c P[f(x + N(0, σ²I)) = c].

Threat model: any classifier reachable through top-1 labels; the guarantee is that g(x + δ) = g(x) for every
||δ||₂ < R, with probability at least 1 − α over the sampling. Every noisy sample is one counted query of f.

    CERTIFY: ĉ = argmax SAMPLE(n0); n_A = SAMPLE(n)[ĉ] (fresh draws);
             p_lo = BetaQuantile(α; n_A, n − n_A + 1); abstain if p_lo < ½, else R = σ·Φ⁻¹(p_lo)
    PREDICT: the two largest counts of SAMPLE(n); abstain if the two-sided binomial p-value of
             (n_A, n_A + n_B, ½) exceeds α
"""

from __future__ import annotations

import math

import torch
from scipy.stats import beta, binomtest, norm

from robustaudit.errors import InputError
from robustaudit.ops.rng import generator
from robustaudit.oracle import Oracle

ABSTAIN = -1


def lower_confidence_bound(n_a: int, n: int, alpha: float) -> float:
    """One-sided (1 − α) Clopper–Pearson lower bound on p_A (the lower end of the two-sided 1 − 2α interval)."""
    return 0.0 if n_a == 0 else float(beta.ppf(alpha, n_a, n - n_a + 1))


def radius(p_lower: float, sigma: float) -> float:
    """σ·Φ⁻¹(p_lo), the certified L2 radius (0 at p_lo = ½)."""
    return sigma * float(norm.ppf(p_lower))


def _check(sigma: float, n0: int, n: int, alpha: float) -> None:
    if not (math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma must be > 0, got {sigma}")
    if n0 < 1 or n < 1:
        raise InputError(f"n0 and n must be >= 1, got {n0} and {n}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")


class Smoothed:
    """The smoothed classifier of the model behind `oracle` (which counts every noisy query)."""

    def __init__(self, oracle: Oracle, sigma: float, *, batch_size: int = 400, seed: int = 0) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.oracle, self.sigma, self.batch, self.seed = oracle, sigma, batch_size, seed

    def sample(self, x: torch.Tensor, i: int, num: int, stream: str) -> torch.Tensor:
        """Counts of f's labels over `num` draws of x + N(0, σ²I); noise keyed by (seed, stream, example i)."""
        gen = generator(self.seed, "smoothing", stream, i)
        counts = torch.zeros(2, dtype=torch.long)
        left = num
        while left > 0:
            m = min(self.batch, left)
            noise = torch.randn((m, *x.shape), generator=gen).to(x) * self.sigma
            labels = self.oracle.labels(x[None] + noise, torch.full((m,), i, dtype=torch.long)).cpu().long()
            if int(labels.min()) < 0:
                raise InputError(f"the model returned a negative label ({int(labels.min())})")
            found = torch.bincount(labels)
            if len(found) > len(counts):
                counts = torch.cat([counts, torch.zeros(len(found) - len(counts), dtype=torch.long)])
            counts[: len(found)] += found
            left -= m
        return counts

    def certify(self, x: torch.Tensor, i: int, n0: int, n: int, alpha: float) -> tuple[int, float]:
        """(class or ABSTAIN, certified radius) for example i."""
        _check(self.sigma, n0, n, alpha)
        guess = int(self.sample(x, i, n0, "select").argmax())
        n_a = int(self.sample(x, i, n, "estimate")[guess])
        p_lo = lower_confidence_bound(n_a, n, alpha)
        if p_lo < 0.5:
            return ABSTAIN, 0.0
        return guess, radius(p_lo, self.sigma)

    def predict(self, x: torch.Tensor, i: int, n: int, alpha: float) -> int:
        """The smoothed prediction, or ABSTAIN when the top two classes are not told apart at level α."""
        _check(self.sigma, 1, n, alpha)
        counts = self.sample(x, i, n, "predict")
        top = counts.topk(2)
        n_a, n_b = int(top.values[0]), int(top.values[1])
        if binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
            return ABSTAIN
        return int(top.indices[0])
