"""The microbial GA: exact budgets, vertices of the Linf ball, and a free surrogate that makes it cheaper."""

from __future__ import annotations

import pytest
import torch
from test_square import Constant

from robustaudit.attacks.score.genetic import Genetic
from robustaudit.errors import AccessError
from robustaudit.models import TorchModel, as_score_only
from robustaudit.threat import ThreatModel
from robustaudit.types import Access


def test_budget_and_cost_per_generation() -> None:
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(6, dtype=torch.long)
    res = Genetic(n_queries=30)(as_score_only(TorchModel(Constant())), x, y, ThreatModel(eps=0.1))
    spent = res.queries - 1  # minus the clean check
    assert not bool(res.success.any())
    assert bool((spent <= 30).all()) and bool((spent >= 29).all())  # stops only when a generation can't be paid


def test_surrogate_seeding_is_free_and_helps(digits8, trained_cnn) -> None:
    x, y = digits8
    x, y = x[1600:1660], y[1600:1660]
    target = as_score_only(TorchModel(trained_cnn))
    threat = ThreatModel(eps=0.15, max_queries=20)
    seeded = Genetic(n_queries=20, surrogate=TorchModel(trained_cnn))(target, x, y, threat, seed=0)
    random = Genetic(n_queries=20)(target, x, y, threat, seed=0)
    assert int(seeded.gradients.sum()) == 0  # surrogate passes are never charged to the target
    assert int(seeded.success.sum()) > int(random.success.sum())
    assert int(seeded.queries.max()) <= 20 + 2
    d = (seeded.x_adv - x).abs()[seeded.success]
    inside = ((x - 0.15 >= 0) & (x + 0.15 <= 1))[seeded.success]
    assert torch.allclose(d[inside], torch.full_like(d[inside], 0.15), atol=1e-6)  # every pixel at x ± eps


class Interpretable:
    """An interpretable system: the digits CNN plus a Grad×Input interpreter, both from one forward pass."""

    access = Access.SCORES
    device = torch.device("cpu")

    def __init__(self, net: torch.nn.Module) -> None:
        self.net, self.rows = net, 0

    def predict_scores_and_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.rows += len(x)
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            z = self.net(xg)
            (g,) = torch.autograd.grad(z.max(1).values.sum(), xg)
        return z.detach(), (g * x).detach()

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_scores_and_maps(x)[0]

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_scores(x).argmax(1)


def test_map_term_steers_the_search_and_every_query_is_counted_once(digits8, trained_cnn) -> None:
    """With the map term the fitness changes, so the search does (same seed); scores and map come from one
    query, counted once. (On 8×8 digits a ±eps sign genome leaves Grad×Input maps uncorrelated either way, so
    the closeness of the maps is not a usable oracle here.)"""
    x, y = digits8
    x, y = x[1600:1640], y[1600:1640]
    threat = ThreatModel(eps=0.15, max_queries=300)
    plain_sys, map_sys = Interpretable(trained_cnn), Interpretable(trained_cnn)
    plain = Genetic(n_queries=300)(plain_sys, x, y, threat, seed=0)
    guided = Genetic(n_queries=300, map_weight=50.0)(map_sys, x, y, threat, seed=0)
    assert int(guided.queries.sum()) == map_sys.rows and int(plain.queries.sum()) == plain_sys.rows
    assert int(guided.queries.max()) <= 300 + 2
    assert not torch.equal(guided.x_adv, plain.x_adv)


def test_map_term_needs_an_interpretable_system(digits8, trained_cnn) -> None:
    x, y = digits8
    with pytest.raises(AccessError, match="attribution maps"):
        Genetic(n_queries=20, map_weight=1.0)(as_score_only(TorchModel(trained_cnn)), x[:4], y[:4],
                                              ThreatModel(eps=0.3))
