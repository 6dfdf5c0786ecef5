"""Zeroth-order estimators and the score-based attacks: closed-form gradients, linear models, exact query costs."""

from __future__ import annotations

import pytest
import torch
from conftest import linear_model
from test_linear_oracle import make_problem, minimal_distance
from test_square import Constant

from robustaudit.attacks.score.nes import NES
from robustaudit.attacks.score.spsa import SPSA
from robustaudit.attacks.score.square import Square
from robustaudit.models import TorchModel, as_score_only
from robustaudit.ops.zo import antithetic_gradient
from robustaudit.threat import ThreatModel
from robustaudit.types import Bounds


@pytest.mark.parametrize("kind", ["normal", "rademacher"])
def test_antithetic_estimate_of_a_linear_function(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    d, p = 20, 4000
    w = torch.randn(d, generator=g, dtype=torch.float64)
    x = torch.full((3, d), 0.5, dtype=torch.float64)
    u = torch.randn(3, p, d, generator=g, dtype=torch.float64)
    if kind == "rademacher":
        u = u.sign()
    calls = []

    def loss(probes: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        calls.append(idx)
        return probes @ w

    est, mean = antithetic_gradient(loss, x, torch.arange(3), u, 1e-3, Bounds())
    # exact for a linear loss: (1/p) Σ (w·u_i) u_i, and an unbiased estimate of w
    closed = ((u @ w)[..., None] * u).mean(1)
    assert torch.allclose(est, closed, atol=1e-8)
    cos = torch.nn.functional.cosine_similarity(est, w.expand(3, d), dim=1)
    assert bool((cos > 0.97).all())
    assert torch.allclose(mean, x @ w)
    assert sum(len(c) for c in calls) == 3 * 2 * p  # every probe is one query


@pytest.mark.parametrize(
    "attack,norm",
    [(NES(n_queries=3000), "linf"), (NES(n_queries=3000), "l2"), (SPSA(n_queries=3000, pairs=16), "linf"),
     (SPSA(n_queries=3000, pairs=16), "l2"), (Square(n_queries=3000), "linf")],
)
def test_linear_model_examples_well_below_eps_are_broken(attack, norm: str) -> None:
    """(Square's L2 proposals need an image: on a 20-feature table its windows shrink to one feature.)"""
    lin, x, y = make_problem(2)
    with torch.no_grad():
        d = minimal_distance(lin, x, y, norm)
    eps = float(d.median())
    res = attack(as_score_only(TorchModel(lin)), x, y, ThreatModel(norm=norm, eps=eps), seed=0)
    assert bool(res.success[d < 0.7 * eps].all())
    assert not bool(res.success[d > eps].any())
    assert int(res.gradients.sum()) == 0


def test_query_costs_are_exact() -> None:
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(4, dtype=torch.long)
    model = as_score_only(TorchModel(Constant()))
    # NES: (check + 10 probes) per iteration; it stops when the next iteration would pass 61
    nes = NES(n_queries=61, samples=10)(model, x, y, ThreatModel(eps=0.1))
    assert nes.queries.tolist() == [1 + 5 * 11 + 1] * 4
    # SPSA: (8 probes + check) per iteration
    spsa = SPSA(n_queries=60, pairs=4)(model, x, y, ThreatModel(eps=0.1))
    assert spsa.queries.tolist() == [1 + 6 * 9] * 4


def test_nes_respects_a_tighter_threat_budget() -> None:
    lin = linear_model(20, 10, seed=3)
    x = torch.rand(8, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = lin(x).argmax(1)
    res = NES(n_queries=1000, samples=10)(as_score_only(TorchModel(lin)), x, y, ThreatModel(eps=0.01, max_queries=30))
    assert int(res.queries.max()) <= 30 + 2
