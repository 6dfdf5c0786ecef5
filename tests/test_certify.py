"""Randomized smoothing against closed forms (test-oracles A.12)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import nn

from robustaudit.certify.run import certify_dataset
from robustaudit.certify.smoothing import ABSTAIN, Smoothed, lower_confidence_bound, radius
from robustaudit.models import TorchModel, as_label_only
from robustaudit.oracle import Oracle
from robustaudit.stats import clopper_pearson


class HalfSpace(nn.Module):
    """Two classes split by the hyperplane x_0 = 0.5 (class 1 above): the distance of x is |x_0 - 0.5|."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1)[:, :1] - 0.5
        return torch.cat([-s, s], 1)


def test_clopper_pearson_bound_and_the_largest_radius() -> None:
    p = lower_confidence_bound(100_000, 100_000, 0.001)
    assert p == pytest.approx(0.999931, abs=1e-6)
    assert radius(p, 1.0) == pytest.approx(3.811, abs=1e-3)
    assert radius(lower_confidence_bound(10_000, 10_000, 0.001), 1.0) == pytest.approx(3.20, abs=0.01)
    for n_a, n in [(7, 10), (950, 1000), (5000, 10_000)]:
        assert lower_confidence_bound(n_a, n, 0.001) == pytest.approx(clopper_pearson(n_a, n, 1 - 0.002)[0])
    assert lower_confidence_bound(0, 10, 0.001) == 0.0


def test_linear_model_radius_matches_the_closed_form() -> None:
    """p_A = Phi(d / sigma): with many samples the certified radius approaches d from below."""
    sigma, d = 0.25, 0.2
    x = torch.full((1, 4), 0.5)
    x[0, 0] += d
    oracle = Oracle(as_label_only(TorchModel(HalfSpace())), 1)
    s = Smoothed(oracle, sigma, batch_size=5000, seed=0)
    label, r = s.certify(x[0], 0, n0=100, n=100_000, alpha=0.001)
    assert label == 1
    p_a = norm.cdf(d / sigma)
    assert r <= d and r == pytest.approx(d, abs=0.02)
    assert r == pytest.approx(sigma * norm.ppf(lower_confidence_bound(round(p_a * 100_000), 100_000, 0.001)),
                              abs=0.01)
    assert int(oracle.queries[0]) == 100 + 100_000


def test_abstain_rules() -> None:
    oracle = Oracle(as_label_only(TorchModel(HalfSpace())), 2)
    s = Smoothed(oracle, 0.5, seed=1)
    on_plane = torch.full((3,), 0.5)  # p_A = 1/2: p_lo < 1/2, and the two classes are not told apart
    assert s.certify(on_plane, 0, 100, 2000, 0.001) == (ABSTAIN, 0.0)
    assert s.predict(on_plane, 0, 2000, 0.001) == ABSTAIN
    far = torch.tensor([1.0, 0.5, 0.5])  # p_A = Phi(1) ≈ 0.84
    assert s.predict(far, 1, 2000, 0.001) == 1
    label, r = s.certify(far, 1, 100, 2000, 0.001)
    assert label == 1 and 0 < r < 0.5


def test_wrong_certificates_are_rarer_than_alpha() -> None:
    """Over many seeds, the certified radius exceeds the true distance in at most about an alpha share of runs."""
    sigma, d, alpha, runs = 0.5, 0.3, 0.05, 300
    x = torch.tensor([0.5 + d, 0.0])
    oracle = Oracle(as_label_only(TorchModel(HalfSpace())), runs)
    wrong = 0
    for seed in range(runs):
        label, r = Smoothed(oracle, sigma, batch_size=500, seed=seed).certify(x, seed, 20, 500, alpha)
        wrong += label == 1 and r > d
    assert wrong / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_certified_accuracy_uses_radius_at_least_r() -> None:
    x = torch.tensor([[0.9, 0.0], [0.6, 0.0], [0.5, 0.0], [0.2, 0.0]])
    y = torch.tensor([1, 1, 1, 0])
    rec = certify_dataset(as_label_only(TorchModel(HalfSpace())), x, y, sigma=0.25, n0=50, n=2000, alpha=0.001,
                          progress=False)
    assert rec.predictions[2] == ABSTAIN and rec.radii[2] == 0
    assert rec.certified_accuracy(0.0) == 0.75
    r = float(rec.radii[1])
    assert rec.certified_accuracy(r) >= 0.5 and rec.certified_accuracy(r + 1e-9) < rec.certified_accuracy(0)
    assert torch.equal(rec.queries, torch.full((4,), 2050))
    j = rec.to_json()
    assert j["certified_accuracy"]["0"]["certified_accuracy"] == 0.75 and j["abstained"] == 1  # type: ignore[index]
